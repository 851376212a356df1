"""Commands that judge photos: predict, explain, evaluate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from castinspect.cli.app import (
    AnomalyOpt,
    Backend,
    BackendOpt,
    CostEscapeOpt,
    CostFalseRejectOpt,
    CostReviewOpt,
    ModelOpt,
    RecordFormat,
    RecursiveOpt,
    ReviewOpt,
    Split,
    ThresholdOpt,
    UnfamiliarOpt,
    anomaly_model,
    app,
    err,
    fail,
    say,
    user_errors,
)
from castinspect.cli.render import (
    PREDICT_CSV_FIELDS,
    Tally,
    print_decision,
    print_metrics,
    print_robustness,
    shown,
    write_records,
)


def image_files(paths: list[str], recursive: bool) -> list[str]:
    """Files, folders and globs expanded in order; stops the command when nothing matches."""
    from castinspect.core.io import expand_paths

    files = expand_paths(paths, recursive)
    empty = [p for p in paths if Path(p).is_dir() and not expand_paths([p], recursive)]
    hint = "" if recursive else "; did you mean --recursive?"
    if not files:
        fail(f"no images found in {', '.join(empty) if empty else ' '.join(paths)}{hint}")
    for folder in empty:
        say(f"warning: no images found in {shown(folder)}{hint}")
    return files


def _print_error(insp) -> None:
    say(f"error: {shown(insp.source)}: {insp.error}")


@app.command()
def predict(
    paths: Annotated[Optional[list[str]], typer.Argument(metavar="PHOTO", help="Image files, folders or globs.")] = None,
    model: ModelOpt = None,
    threshold: ThresholdOpt = None,
    review_band: ReviewOpt = None,
    on_unfamiliar: UnfamiliarOpt = "review",
    fmt: Annotated[RecordFormat, typer.Option("--format", help="How the records are written on stdout.")] = RecordFormat.table,
    annotate: Annotated[Optional[Path], typer.Option(help="Write an annotated PNG per image into this folder.")] = None,
    backend: BackendOpt = Backend.auto,
    recursive: RecursiveOpt = False,
    files_from: Annotated[Optional[Path], typer.Option(metavar="FILE", help="Also the photos listed in FILE, one path per line ('-': standard input).")] = None,
    anomaly: AnomalyOpt = None,
) -> None:
    """Judge photos: label, p(defective) and decision for each, then a one-line summary on stderr.
    Exit 1 if any file was not judged.

    Example: castinspect predict photos/ --format json > verdicts.json
    """
    from castinspect.inference.predict import Predictor

    paths = list(paths or [])
    if files_from is not None:
        with user_errors(OSError):
            text = sys.stdin.read() if str(files_from) == "-" else files_from.read_text()
        paths += [line for line in text.splitlines() if line.strip()]
    if not paths:
        raise typer.BadParameter("name photos, folders or globs, or --files-from FILE", param_hint="PHOTO")

    with user_errors():
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band, backend=backend.value,
                                   on_unfamiliar=on_unfamiliar, anomaly=anomaly_model(anomaly))
    files = image_files(paths, recursive)
    tally = Tally()
    results = predictor.predict(files, keep_photos=annotate is not None)
    columns = ["path", "decision", "label", "p_defect", "error"]
    fields = PREDICT_CSV_FIELDS
    if predictor.anomaly is not None:  # the pair's second score, beside the classifier's
        fields = fields[:fields.index("model")] + ["anomaly"] + fields[fields.index("model"):]
        columns = columns[:-1] + ["anomaly", "error"]
    for insp in write_records(results, fmt.value, lambda i: i.to_public(), fields, table_columns=columns):
        tally.add(insp.decision)
        if insp.error:
            _print_error(insp)
        elif annotate:
            from castinspect.inference.annotate import write_annotated
            write_annotated(insp.photo, insp, annotate)
    say(tally.line())
    raise typer.Exit(1 if tally.failed else 0)


@app.command()
def explain(
    paths: Annotated[list[str], typer.Argument(metavar="PHOTO", help="Image files, folders or globs.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Checkpoint (default: the bundled model); heatmaps need a .ckpt.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for one PNG per photo.")] = Path("explained"),
    threshold: ThresholdOpt = None,
    review_band: ReviewOpt = None,
    recursive: RecursiveOpt = False,
) -> None:
    """Grad-CAM heatmaps: for each photo a PNG named after it in --out, the photo and the heatmap
    over it side by side with its colour scale, under the decision (review with --review-band,
    as predict), label, p(defect) and threshold. The heatmap is scaled by p(defect): a confident
    OK part shows no colour. Exit 1 if any file was not judged.

    Example: castinspect explain photos/ --out heatmaps/
    """
    from castinspect.inference.annotate import write_annotated
    from castinspect.inference.explain import side_by_side
    from castinspect.inference.predict import Predictor

    with user_errors():
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band)
        predictor.require_checkpoint()
    failed = 0
    for f in image_files(paths, recursive):
        insp = predictor.predict_one(f, heatmap=True)
        if insp.error:
            failed += 1
            _print_error(insp)
            continue
        png = write_annotated(insp.photo, insp, out_dir, picture=side_by_side(insp.photo, insp.heatmap, insp))
        typer.echo(f"{shown(str(png))}  {insp.decision}  p(defect)={insp.p_defect:.4f}")
    raise typer.Exit(1 if failed else 0)


@app.command()
def evaluate(
    data_dir: Annotated[Path, typer.Argument(help="Folder of class folders (e.g. casting_data/test) or a split manifest.")],
    model: ModelOpt = None,
    threshold: ThresholdOpt = None,
    review_band: ReviewOpt = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics, and every photo's score, here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write an HTML report here.")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable image.")] = False,
    train_root: Annotated[Optional[Path], typer.Option(help="The model's training photos (default: its run's split.csv, or the training data it records, where they are here): photos among them are counted and set aside.")] = None,
    split_name: Annotated[Split, typer.Option("--split", help="With a manifest: which split to evaluate.")] = Split.test,
    robustness: Annotated[bool, typer.Option(help="Also judge every photo under the line-variation suite.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the line-variation suite.")] = 0,
    backend: BackendOpt = Backend.auto,
    cost_escape: CostEscapeOpt = None,
    cost_false_reject: CostFalseRejectOpt = None,
    cost_review: CostReviewOpt = 0.0,
) -> None:
    """Judge every image in DATA_DIR/<class>/ and report accuracy, escapes, false rejects (each
    rate with its 95% interval), AUCs. Photos that are training photos or near-copies of them are
    counted and the numbers without them shown beside. With costs, the expected cost per 1,000
    parts at each threshold and the cheapest. With --robustness, also accuracy, escapes and false
    rejects under each line variation (light, contrast, gamma, uneven light, blur, noise, JPEG,
    rotation, shift, scale).

    Example: castinspect evaluate ../shared/data/casting_data/test --cost-escape 500 --cost-false-reject 20 --report test.html
    """
    from castinspect.evaluation.evaluate import evaluate as run_evaluation
    from castinspect.evaluation.evaluate import (
        evaluate_robustness,
        training_photos,
        write_metrics,
    )
    from castinspect.evaluation.results import evaluation_summary, overlap_warning
    from castinspect.evaluation.results import split_name as split_name_of
    from castinspect.evaluation.robustness import has_review_band
    from castinspect.inference.predict import Predictor

    with user_errors():
        costs = cost_model(cost_escape, cost_false_reject, cost_review)
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band, backend=backend.value)
        training = training_photos(model, predictor.checkpoint, train_root)
        result = run_evaluation(predictor, data_dir, strict=strict, split=split_name.value, training=training)
    for e in result.errors:
        say(f"skipped {shown(str(e))}")
    result.name = split_name_of(data_dir, split_name.value)
    metrics = evaluation_summary(predictor, result, model, data_dir, split_name.value, costs)
    warning = overlap_warning(metrics["overlap"])
    say(f"WARNING: {warning}" if warning else "overlap with the training photos: "
        + (f"none ({metrics['overlap']['source']})" if metrics["overlap"]["count"] == 0 else metrics["overlap"]["reason"]))
    print_metrics(metrics, [k for k in ("evaluation", "leak_free") if k in metrics])
    print_decision(metrics["decision"])
    suite = None
    if robustness:
        suite = evaluate_robustness(predictor, result, seed)
        metrics["robustness"], metrics["robustness_summary"] = suite.results, suite.summary
        print_robustness(suite.results, suite.summary, has_review_band(suite.results))
    if json_path:
        write_metrics(json_path, metrics)
    if report:
        from castinspect.evaluation.report import write_report
        write_report(report, [result], predictor, robustness=suite.results if suite else None,
                     samples=suite.samples if suite else None, provenance=metrics["provenance"], costs=costs)
        err.print(f"report: {report}", highlight=False, markup=False)


def cost_model(escape: float | None, false_reject: float | None, review: float):
    from castinspect.evaluation.thresholds import Costs

    if (escape is None) != (false_reject is None):
        raise ValueError("give both --cost-escape and --cost-false-reject (and optionally --cost-review)")
    return None if escape is None else Costs(escape, false_reject, review)
