"""Commands about the photos themselves: audit, split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from castinspect.cli.app import app, say, user_errors
from castinspect.cli.render import print_counts, print_pairs

AUDIT_ROWS = ("images", "unreadable", "exact_cross_split", "near_cross_split", "near_within_split", "groups",
              "group_size_median", "group_size_max", "label_conflicts", "class_counts", "sizes", "modes")


@app.command()
def audit(
    data_root: Annotated[Path, typer.Argument(help="Dataset root: ROOT/<split>/<class>/ or ROOT/<class>/.")],
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the findings (with every pair) here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write an HTML report with the closest pairs side by side.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Aligned detail correlation that marks a near-duplicate (default 0.90).")] = None,
) -> None:
    """Find exact and near-duplicate photos within and across splits, unreadable files, class
    balance, sizes and modes. Leaks are findings: the exit code is 0 when the audit completes.

    Example: castinspect audit ../shared/data/casting_data --json audit.json --report audit.html
    """
    from castinspect.core.provenance import provenance
    from castinspect.data.audit import audit as run_audit
    from castinspect.data.audit import summarize
    from castinspect.data.parts import DEFAULT_THRESHOLD
    from castinspect.evaluation.evaluate import write_metrics

    with user_errors():
        summary = summarize(run_audit(data_root, threshold=threshold or DEFAULT_THRESHOLD))
    print_pairs(f"audit of {data_root}", ((key, len(summary[key]) if key == "unreadable" else summary[key])
                                          for key in AUDIT_ROWS))
    if json_path:
        write_metrics(json_path, {"provenance": provenance(), **summary})
    if report:
        from castinspect.evaluation.audit_report import write_audit_report
        write_audit_report(report, summary)
        say(f"report: {report}")


@app.command()
def split(
    data_root: Annotated[Path, typer.Argument(help="Dataset root: every photo under it is pooled.")],
    manifest: Annotated[Path, typer.Option("--manifest", "--out", help="The manifest CSV to write (--out: the older spelling).")] = Path("split.csv"),
    val: Annotated[float, typer.Option(help="Share of photos for validation.")] = 0.15,
    test: Annotated[float, typer.Option(help="Share of photos for test.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a leak-free train/val/test manifest: photos of one part (near-duplicates) stay on one
    side. `train` and `evaluate` accept the manifest in place of a folder.

    Example: castinspect split ../shared/data/casting_data --manifest split.csv
    """
    from castinspect.data.split import make_split

    with user_errors():
        result = make_split(data_root, manifest, val, test, seed)
    print_counts(f"{result['manifest']}: {result['groups']} groups of photos of one part", result["counts"])
