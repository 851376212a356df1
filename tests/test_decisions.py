"""Reports a quality manager can act on: rates with honest intervals, the overlap with the
training photos said up front, and the threshold as a cost decision."""

from __future__ import annotations

import csv
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from test_cli import cli

from castinspect.evaluation.rates import clopper_pearson, rate
from castinspect.evaluation.thresholds import (
    Costs,
    cost_optimal,
    cost_per_1000,
    outcomes,
)


@pytest.mark.parametrize("k, n, low, high", [
    (0, 453, 0.0, 1 - 0.025 ** (1 / 453)),  # closed forms at the ends: 0.00811
    (10, 10, 0.025 ** (1 / 10), 1.0),
    (1, 2, 1 - 0.975 ** 0.5, 0.975 ** 0.5),
    (5, 100, 0.01643188, 0.11283491),  # R: binom.test(5, 100)$conf.int
])
def test_clopper_pearson_against_known_values(k, n, low, high):
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(low, abs=2e-7) and hi == pytest.approx(high, abs=2e-7)


@pytest.mark.parametrize("k, n", [(707, 715), (3, 40), (12, 453)])
def test_clopper_pearson_bounds_are_where_the_binomial_tails_hold_two_and_a_half_percent(k, n):
    from scipy.stats import binom

    lo, hi = clopper_pearson(k, n)
    assert binom.sf(k - 1, n, lo) == pytest.approx(0.025, abs=1e-9)  # P(X >= k) at the low end
    assert binom.cdf(k, n, hi) == pytest.approx(0.025, abs=1e-9)  # P(X <= k) at the high end


def test_a_rate_names_its_counts_and_an_empty_one_is_unknown():
    assert rate(0, 453) == {"value": 0.0, "low": 0.0, "high": pytest.approx(0.0081102, abs=1e-6), "n": 453, "k": 0}
    assert rate(0, 0)["value"] is None and rate(0, 0)["low"] is None
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


@pytest.mark.parametrize("seed, band", [(0, None), (1, None), (2, (0.3, 0.6)), (3, (0.1, 0.9))])
def test_the_cost_optimal_threshold_is_the_brute_force_minimum(seed, band):
    rng = np.random.default_rng(seed)
    y = (rng.random(400) < 0.4).astype(int)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1).round(3)  # ties on purpose
    costs = Costs(escape=float(rng.integers(5, 50)), false_reject=float(rng.integers(1, 10)), review=2.0)
    best = cost_optimal(y, p, costs, band)
    grid = np.unique(np.concatenate([np.linspace(0, 1, 10001), p]))
    brute = min(cost_per_1000(outcomes(y, p, t, band), len(p), costs) for t in grid)
    assert best["cost_per_1000"] == pytest.approx(brute)
    assert cost_per_1000(outcomes(y, p, best["threshold"], band), len(p), costs) == pytest.approx(brute)


class Page(HTMLParser):
    """The report's warnings (``p.warning``) and table headings, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings, self.headings, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "p" and "warning" in (a.get("class") or ""):
            self._in = "warnings"
            self.warnings.append("")
        elif tag in ("th", "h2", "h3"):
            self._in = "headings"
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag in ("p", "th", "h2", "h3"):
            self._in = None

    def handle_data(self, data):
        if self._in:
            getattr(self, self._in)[-1] += data


def test_a_report_on_training_photos_says_so_first(model_path, tmp_path):
    """Photos the model was trained on, evaluated: the JSON counts them (``overlap``), the
    terminal warns, and the HTML opens with the warning and shows the overlap-free numbers."""
    with open(model_path.parent / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = tmp_path / "mixed"
    for split, n in (("train", 20), ("val", 10)):  # per class; the validation photos were never fitted
        for label in ("def_front", "ok_front"):
            (data / label).mkdir(parents=True, exist_ok=True)
            for i, r in enumerate([r for r in rows if r["split"] == split and r["label"] == label][:n]):
                shutil.copy(r["path"], data / label / f"{split}_{i}.jpeg")
    out = cli("evaluate", str(data), "--model", str(model_path), "--json", str(tmp_path / "m.json"),
              "--report", str(tmp_path / "r.html"), "--cost-escape", "50", "--cost-false-reject", "5")
    assert out.returncode == 0, out.stderr
    assert "WARNING: 40 of the 60 photos" in out.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["overlap"]["count"] == 40 and m["overlap"]["of"] == 60 and "split.csv" in m["overlap"]["source"]
    assert m["leak_free"]["n"] == 20
    esc = m["evaluation"]["rates"]["escape_rate"]
    assert set(esc) == {"value", "low", "high", "n", "k"} and esc["low"] <= esc["value"] <= esc["high"]
    assert esc["n"] == sum(r["true"] == "def_front" for r in m["photos"])
    for key in ("false_reject_rate", "accuracy", "recall"):
        assert 0 <= m["evaluation"]["rates"][key]["low"] <= m["evaluation"]["rates"][key]["high"] <= 1
    prov = m["provenance"]
    assert prov["model"] == m["model"] and len(prov["model_sha256"]) == 64 and prov["photos"] == 60
    assert "evaluate" in prov["command"] and prov["date"] and prov["castinspect"]
    assert len(m["photos"]) == 60 and sum(r["copy_of_training"] for r in m["photos"]) == 40
    best = m["decision"]["cost_optimal"]
    assert 0 <= best["threshold"] <= 1 and m["decision"]["warning"] is None  # not a test split

    page = Page()
    page.feed((tmp_path / "r.html").read_text())
    assert page.warnings and "40 of the 60 photos" in page.warnings[0]
    assert any(h.startswith("without the 40 copies") for h in page.headings)  # the overlap-free numbers
    assert "escape rate, 95% interval" in page.headings and "The threshold as a decision" in page.headings
    assert "model file SHA-256" in page.headings and "command" in page.headings


def test_a_report_on_unseen_photos_has_no_warning_and_says_what_was_checked(model_path, synth_root, tmp_path):
    out = cli("evaluate", str(synth_root / "test"), "--model", str(model_path), "--json", str(tmp_path / "m.json"),
              "--report", str(tmp_path / "r.html"), "--cost-escape", "50", "--cost-false-reject", "5")
    assert out.returncode == 0, out.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["overlap"]["count"] == 0 and "leak_free" not in m
    assert m["decision"]["warning"] and "test split" in m["decision"]["warning"]  # chosen where it is measured
    page = Page()
    page.feed((tmp_path / "r.html").read_text())
    assert len(page.warnings) == 1 and "test split" in page.warnings[0]


def test_threshold_writes_the_cost_optimal_threshold_into_a_copy(model_path, tmp_path):
    from castinspect.models.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(model_path.parent, run)
    before = (run / "model.ckpt").read_bytes()
    out = cli("threshold", str(run), "--cost-escape", "100", "--cost-false-reject", "1")
    assert out.returncode == 0, out.stderr
    assert (run / "model.ckpt").read_bytes() == before  # the run's own model untouched
    copy = load_checkpoint(run / "model-cost.ckpt")
    rule = copy.info["threshold_rule"]
    assert rule["rule"] == "cost-optimal on validation" and rule["escape"] == 100 and rule["validation_photos"] > 0
    assert f"threshold {copy.threshold:.4f}" in out.stdout
