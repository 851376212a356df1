"""How the commands print: records as a table, CSV, a JSON array or JSON lines; metrics and
results as tables. Nothing here computes a number."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Callable, Iterable, Iterator, TypeVar

from rich.table import Table

from castinspect.cli.app import out
from castinspect.core import sinks

T = TypeVar("T")

PREDICT_CSV_FIELDS = ["path", "label", "score", "decision", "p_defect", "threshold", "reasons", "familiarity",
                      "familiar", "model", "error"]


def shown(text: str) -> str:
    """A file name as printed: control characters escaped, so a name cannot rewrite the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def write_records(records: Iterable[T], fmt: str, as_dict: Callable[[T], dict], fields: list[str],
                  stream: IO[str] | None = None, table_columns: list[str] | None = None) -> Iterator[T]:
    """``core.sinks.write_records``, or a table drawn once at the end. Yields the records on."""
    if fmt != "table":
        yield from sinks.write_records(records, fmt, stream or sys.stdout, fields, as_dict)
        return
    table = Table()
    columns = table_columns or fields
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in records:
        d = as_dict(r)
        table.add_row(*(_cell(d.get(c)) for c in columns))
        yield r
    out.print(table)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return shown(str(v))


class Tally:
    """predict's closing line: how many were judged and decided how, how many failed, how fast."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.counts = {"ok": 0, "defective": 0, "review": 0}
        self.failed = 0

    def add(self, decision: str | None) -> None:
        if decision is None:
            self.failed += 1
        else:
            self.counts[decision] = self.counts.get(decision, 0) + 1

    def line(self) -> str:
        judged = sum(self.counts.values())
        rate = (judged + self.failed) / max(time.perf_counter() - self.start, 1e-9)
        return (f"{judged} judged, {self.counts['ok']} ok, {self.counts['defective']} defective, "
                f"{self.counts['review']} review, {self.failed} failed, {rate:.1f} photos/s")


def fmt(v, pattern: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else pattern.format(v)


METRIC_ROWS = [("images", "n", "{}"), ("accuracy", "accuracy", "{:.4f}"), ("errors", "errors", "{}"),
               ("escapes (defects passed)", "escapes", "{}"), ("false rejects (OK scrapped)", "false_rejects", "{}"),
               ("defect recall", "defect_recall", "{:.4f}"), ("false-reject rate", "false_reject_rate", "{:.4f}"),
               ("ROC-AUC", "roc_auc", "{:.5f}"), ("PR-AUC", "pr_auc", "{:.5f}"), ("Brier", "brier", "{:.5f}"),
               ("ECE", "ece", "{:.5f}"), ("share sent to review", "review_share", "{:.4f}"),
               ("escapes outside review", "auto_escapes", "{}"),
               ("false rejects outside review", "auto_false_rejects", "{}"),
               ("unfamiliar photos", "unfamiliar", "{}"), ("unlike training (any reason)", "unlike_training", "{}"),
               ("accuracy like training", "accuracy_like_training", "{:.4f}"),
               ("accuracy unlike training", "accuracy_unlike_training", "{:.4f}"),
               ("silent errors (wrong, not flagged)", "silent_errors", "{}")]


def print_metrics(metrics: dict, sections: list[str]) -> None:
    threshold = metrics["threshold"]
    table = Table(title=f"model {metrics['model']}  " + ("no OK class: defect types" if threshold is None
                                                         else f"threshold {threshold:.4f}"))
    table.add_column("metric")
    for s in sections:
        table.add_column(s, justify="right")
    for label, key, pattern in METRIC_ROWS:
        if any(key in metrics[s] for s in sections):
            table.add_row(label, *[fmt(metrics[s].get(key), pattern) for s in sections])
    for label, key in RATE_ROWS:
        if any(key in metrics[s].get("rates", {}) for s in sections):
            table.add_row(label, *[interval(metrics[s].get("rates", {}).get(key)) for s in sections])
    if any("rates" in metrics[s] for s in sections):
        table.caption = f"intervals: {next(metrics[s]['interval'] for s in sections if 'interval' in metrics[s])}"
    out.print(table)


RATE_ROWS = [("accuracy, 95% interval", "accuracy"), ("escape rate, 95% interval", "escape_rate"),
             ("false-reject rate, 95% interval", "false_reject_rate"), ("defect recall, 95% interval", "recall")]


def interval(r: dict | None) -> str:
    return "-" if not r or r["value"] is None else f"[{r['low']:.4f}, {r['high']:.4f}] ({r['k']}/{r['n']})"


def print_decision(decision: dict | None) -> None:
    """The model's threshold in line terms, and the cost-optimal one where costs were given."""
    if not decision:
        return
    at = decision["at_threshold"]
    line = (f"at threshold {at['threshold']:.4f}: {at['escapes']} escapes, {at['false_rejects']} false rejects, "
            f"{at['reviewed']} to review")
    if "cost_per_1000" in at:
        line += f"; expected cost {at['cost_per_1000']:.2f} per 1,000 parts"
    out.print(line, highlight=False)
    best = decision.get("cost_optimal")
    if best:
        out.print(f"cost-optimal threshold on these photos: {best['threshold']:.4f} ({best['escapes']} escapes, "
                  f"{best['false_rejects']} false rejects, {best['reviewed']} to review; "
                  f"{best['cost_per_1000']:.2f} per 1,000 parts)", highlight=False)
    if decision.get("warning"):
        out.print(f"warning: {decision['warning']}", highlight=False)


def print_robustness(results: dict, summary: dict, band: bool) -> None:
    # With a review band, short headers so that eight columns fit 80 characters.
    checked = all("silent_errors" in r for r in results.values())
    table = Table(title="line variations", caption=(
        ("esc.: defects passed; FR: OK parts rejected; auto: decided without review" if band else "")
        + ("; unlike: flagged unlike the training photos; silent: wrong and not flagged" if checked else "")
    ).strip("; ") or None)
    counts = ("esc.", "FR", "review", "auto esc.", "auto FR") if band else ("escapes", "false rejects")
    counts += ("unlike", "silent") if checked else ()
    for col in ("variation", "kind", "accuracy", *counts):
        table.add_column(col, justify="left" if col in ("variation", "kind") else "right",
                         no_wrap=col in ("variation", "kind", "accuracy"))
    for name, r in results.items():
        review = (str(r["reviewed"]), str(r["auto_escapes"]), str(r["auto_false_rejects"])) if band else ()
        review += (str(r["unlike_training"]), str(r["silent_errors"])) if checked else ()
        table.add_row(name, r["kind"], fmt(r["accuracy"], "{:.4f}"), str(r["escapes"]), str(r["false_rejects"]),
                      *review)
    out.print(table)
    for path, names in summary["photometric_escaped_photos"].items():  # the parts to look at first
        out.print(f"passed under {', '.join(names)}: {shown(path)}", highlight=False)
    for path, names in summary.get("photometric_passed_unreviewed", {}).items():
        out.print(f"passed without review under {', '.join(names)}: {shown(path)}", highlight=False)


def print_pairs(title: str, rows: Iterable[tuple[str, object]], value_header: str = "value") -> None:
    """A two-column table of findings."""
    table = Table(title=title)
    table.add_column("finding")
    table.add_column(value_header, justify="right")
    for key, v in rows:
        table.add_row(key, str(v))
    out.print(table)


def print_counts(title: str, counts: dict[str, dict[str, int]]) -> None:
    """Rows of per-class counts (e.g. a split's train / val / test)."""
    table = Table(title=title)
    table.add_column("split")
    classes = list(next(iter(counts.values())))
    for c in classes:
        table.add_column(c, justify="right")
    for name, row in counts.items():
        table.add_row(name, *[str(row[c]) for c in classes])
    out.print(table)


def print_bench(result: dict, robustness: bool) -> None:
    table = Table(title=f"{result['photos']} test photos; decode-only limit {result['decode_images_per_s']:.0f} photos/s")
    for col in ("model / backend", "photos/s end-to-end", "model-only photos/s", "latency p50 ms", "p99 ms",
                "decisions changed"):
        table.add_column(col, justify="left" if col == "model / backend" else "right")
    rows = [(f"castinspect {b['backend']}", b) for b in result["backends"]]
    if "reference" in result:
        rows.append(("seeds' CNN (pytorch)", result["reference"]))
    for name, b in rows:
        d = b.get("decisions")
        table.add_row(name, f"{b['images_per_s']:.0f}", f"{b['model_only_images_per_s']:.0f}",
                      f"{b['p50_ms']:.2f}", f"{b['p99_ms']:.2f}", f"{d['changed']} of {d['photos']}" if d else "-")
    table.caption = "decisions changed: against PyTorch fp32 on the same decoded photos"
    out.print(table)
    if robustness:
        out.print(robustness_comparison(result))
    out.print_json(json.dumps(result["ratios"]))


def robustness_comparison(result: dict) -> Table:
    """Accuracy and escapes per variation: ours at its threshold and at 0.5, the reference at 0.5."""
    columns = {f"ours @{result['threshold']:.3f}": result["robustness"], "ours @0.5": result["robustness_at_0.5"]}
    if "robustness" in result.get("reference", {}):
        columns["seeds' CNN @0.5"] = result["reference"]["robustness"]
    table = Table(title="Line variations: accuracy % (escapes / false rejects)")
    table.add_column("variation")
    for name in columns:
        table.add_column(name, justify="right")
    for v in result["robustness"]:
        table.add_row(v, *(f"{r[v]['accuracy'] * 100:.1f} ({r[v]['escapes']}/{r[v]['false_rejects']})"
                           for r in columns.values()))
    return table


def print_curve(curve: dict) -> None:
    table = Table(title=f"learning curve: {curve['test_photos']} test photos of unseen parts")
    for col in ("backbone", "photos", "seeds", "accuracy", "min", "escapes", "false rejects", "train s"):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    for r in curve["mean"]:
        table.add_row(r["backbone"], str(r["photos"]), str(r["seeds"]), f"{r['accuracy']:.4f}",
                      f"{r['accuracy_min']:.4f}", f"{r['escapes']:.1f}", f"{r['false_rejects']:.1f}",
                      f"{r['train_seconds']:.0f}")
    out.print(table)
