"""Commands that judge photos: predict, explain, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from castinspect.cli.app import (
    Backend,
    BackendOpt,
    ModelOpt,
    RecordFormat,
    RecursiveOpt,
    ReviewOpt,
    Split,
    ThresholdOpt,
    UnfamiliarOpt,
    app,
    err,
    fail,
    say,
    user_errors,
)
from castinspect.cli.render import (
    PREDICT_CSV_FIELDS,
    Tally,
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
    paths: Annotated[list[str], typer.Argument(metavar="PHOTO", help="Image files, folders or globs.")],
    model: ModelOpt = None,
    threshold: ThresholdOpt = None,
    review_band: ReviewOpt = None,
    on_unfamiliar: UnfamiliarOpt = "review",
    fmt: Annotated[RecordFormat, typer.Option("--format", help="How the records are written on stdout.")] = RecordFormat.table,
    annotate: Annotated[Optional[Path], typer.Option(help="Write an annotated PNG per image into this folder.")] = None,
    backend: BackendOpt = Backend.auto,
    recursive: RecursiveOpt = False,
) -> None:
    """Judge photos: label, p(defective) and decision for each, then a one-line summary on stderr.
    Exit 1 if any file was not judged.

    Example: castinspect predict photos/ --format json > verdicts.json
    """
    from castinspect.inference.predict import Predictor

    with user_errors():
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band, backend=backend.value,
                                   on_unfamiliar=on_unfamiliar)
    files = image_files(paths, recursive)
    tally = Tally()
    results = predictor.predict(files, keep_photos=annotate is not None)
    columns = ["path", "decision", "label", "p_defect", "error"]
    for insp in write_records(results, fmt.value, lambda i: i.to_public(), PREDICT_CSV_FIELDS, table_columns=columns):
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
    over it side by side, with the decision, label, p(defect) and threshold. Exit 1 if any file
    was not judged.

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
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write an HTML report here.")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable image.")] = False,
    train_root: Annotated[Optional[Path], typer.Option(help="Training photos: also report the subset of parts not among them.")] = None,
    split_name: Annotated[Split, typer.Option("--split", help="With a manifest: which split to evaluate.")] = Split.test,
    robustness: Annotated[bool, typer.Option(help="Also judge every photo under the line-variation suite.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the line-variation suite.")] = 0,
    backend: BackendOpt = Backend.auto,
) -> None:
    """Judge every image in DATA_DIR/<class>/ and report accuracy, escapes, false rejects, AUCs.
    With --train-root, also the leak-free subset: photos with no near-copy in the training data.
    With --robustness, also accuracy, escapes and false rejects under each line variation
    (light, contrast, gamma, uneven light, blur, noise, JPEG, rotation, shift, scale).

    Example: castinspect evaluate ../shared/data/casting_data/test --train-root ../shared/data/casting_data
    """
    from castinspect.core.provenance import provenance
    from castinspect.evaluation.evaluate import evaluate as run_evaluation
    from castinspect.evaluation.evaluate import evaluate_robustness, write_metrics
    from castinspect.evaluation.robustness import has_review_band
    from castinspect.inference.predict import Predictor

    with user_errors():
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band, backend=backend.value)
        result = run_evaluation(predictor, data_dir, strict=strict, train_root=train_root, split=split_name.value)
    for e in result.errors:
        say(f"skipped {shown(str(e))}")
    metrics = {"provenance": provenance(), "model": predictor.model_id, "threshold": predictor.threshold,
               "data": str(data_dir), "evaluation": result.metrics}
    if "leak_free" in result.metrics:
        metrics["leak_free"] = result.metrics.pop("leak_free")
        say(f"leak-free subset: {metrics['leak_free']['n']} photos; "
            f"{metrics['leak_free']['removed_as_copies']} set aside as copies of training photos")
    print_metrics(metrics, [k for k in ("evaluation", "leak_free") if k in metrics])
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
                     samples=suite.samples if suite else None)
        err.print(f"report: {report}", highlight=False, markup=False)
