"""The recipe search and the time budget: end to end on tiny synthetic data, in seconds."""

import csv
import time

import pytest
from conftest import tiny_config

from castinspect.core.config import Config
from castinspect.training.run import train_and_evaluate
from castinspect.training.schedule import Schedule
from castinspect.training.search import GEOMETRIC, apply, base_params


def test_a_schedule_is_cut_to_the_time_left():
    s = Schedule(steps_per_epoch=10, total_steps=100, warmup=10, patience=4)
    s.fit_time(seconds_left=1000, step_seconds=1.0, val_seconds=5.0, done=6)
    assert not s.cut and s.total_steps == 100  # 94 steps + 10 validations fit in 1000 s
    s.fit_time(seconds_left=60, step_seconds=1.0, val_seconds=5.0, done=6)
    assert s.cut and s.total_steps <= 50
    steps_left, evals = s.total_steps - 6, -(-s.total_steps // 10)
    assert steps_left * 1.0 + evals * 5.0 <= 60
    assert s.total_steps % 10 == 0 or s.total_steps % 10 >= 10 / 4  # no sliver of an epoch at the end
    assert 1 <= s.warmup < 10 and 1 <= s.patience <= 4 and s.lr(s.total_steps) == pytest.approx(0)
    s.fit_time(seconds_left=0.1, step_seconds=1.0, val_seconds=5.0, done=6)
    assert s.total_steps == 7  # never below one more step


def test_a_time_limited_fit_ends_by_its_deadline(synth_root, tmp_path):
    from castinspect.training.train import fit

    cfg = tiny_config(400)  # ~3,000 steps: far more than 4 s allow
    t = time.perf_counter()
    result = fit(cfg, synth_root, tmp_path, deadline=t + 4.0)
    assert result.checkpoint.info["schedule_cut_to_time"] is True
    assert result.checkpoint.info["steps"] < 400 * 8
    assert time.perf_counter() - t < 4.0 + 3.0  # the deadline, plus the operating point and the save


def test_the_configured_recipe_is_trial_zero():
    cfg = Config()
    params = base_params(cfg, locate_choice=False)
    again = apply(cfg, params)
    assert again.augment == cfg.augment and again.model.input_size == cfg.model.input_size
    assert params["geometric"] == "any_rotation" and "backbone" in params
    flips = apply(cfg, {"geometric": "flips", "photometric": "none", "framing": "moved"})
    assert (flips.augment.flips, flips.augment.quarter_turns, flips.augment.rotate_deg) == GEOMETRIC["flips"]
    assert flips.augment.brightness == 0 and flips.augment.jpeg_prob == 0 and flips.augment.scale == 0.3


def test_search_runs_end_to_end_within_its_budget(synth_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    (root / "train" / "ok_front" / "zz_broken.jpeg").write_bytes(b"\xff\xd8 not a photo")
    budget = 45.0
    t = time.perf_counter()
    result, metrics = train_and_evaluate(tiny_config(4), root, tmp_path / "run", budget=budget, search=True)
    seconds = time.perf_counter() - t
    assert seconds <= budget * 1.15, seconds
    rows = list(csv.DictReader(open(tmp_path / "run" / "search.csv")))
    assert len(rows) >= 2 and rows[0]["trial"] == "0"
    assert {r["state"] for r in rows} <= {"complete", "pruned", "fail"}
    chosen = [r for r in rows if r["chosen"] == "True"]
    assert len(chosen) == 1 and chosen[0]["state"] == "complete"
    # the chosen recipe is the run's config and the model's: the chosen trial's input size
    size = int(chosen[0]["params"].split("input_size ")[1].split(",")[0])
    assert result.checkpoint.config.model.input_size == size
    assert f"input_size: {size}" in (tmp_path / "run" / "config.yaml").read_text()
    assert metrics["search"] and metrics["run_seconds"] <= budget * 1.15
    assert "Recipe search" in (tmp_path / "run" / "report.html").read_text()
    skipped = result.checkpoint.info["data"]["skipped"]  # a bad photo is listed and skipped, as without a search
    assert len(skipped) == 1 and "zz_broken.jpeg" in skipped[0]


def test_a_lead_within_one_validation_photo_keeps_the_configured_recipe():
    import optuna

    from castinspect.training.search import choose_trial

    def study(*values: float) -> "optuna.Study":
        s = optuna.create_study()
        for v in values:
            s.add_trial(optuna.trial.create_trial(params={"x": v}, value=v,
                                                  distributions={"x": optuna.distributions.FloatDistribution(0, 1)}))
        return s

    assert choose_trial(study(0.050, 0.045), n_val=100).number == 0  # 0.005 < 1/100: noise
    assert choose_trial(study(0.050, 0.030), n_val=100).number == 1
    assert choose_trial(optuna.create_study(), n_val=100) is None


def test_an_interrupted_search_resumes(synth_root, tmp_path):
    import optuna

    from castinspect.training.inputs import TrainingData
    from castinspect.training.search import search

    cfg = tiny_config(2)
    data = TrainingData(cfg, synth_root)
    data.decoded(cfg.model.input_size, False)
    first = search(cfg, data, tmp_path, seconds=12.0)
    resumed = search(cfg, data, tmp_path, seconds=24.0, resume=True)
    assert len(resumed.trials) > len(first.trials)
    def kept(rows):
        return [{k: v for k, v in r.items() if k != "chosen"} for r in rows]

    assert kept(resumed.trials[:len(first.trials)]) == kept(first.trials)  # the trials run before are kept
    study = optuna.load_study(study_name="recipe", storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert len(study.trials) == len(resumed.trials)


def test_budget_option_reads_durations():
    import typer

    from castinspect.cli.app import duration

    assert duration("10m") == 600 and duration("90s") == 90 and duration("1h30m") == 5400 and duration("45") == 45
    for bad in ("soon", "", "0", "10x"):
        with pytest.raises(typer.BadParameter):
            duration(bad)
