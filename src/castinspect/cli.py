"""The ``castinspect`` command: each command parses, calls one library function, prints.

Parsed arguments never leave this module; results go to stdout, progress and warnings to stderr.
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from castinspect import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Visual inspection of metal castings: train, evaluate, predict.")
out = Console()
err = Console(stderr=True, soft_wrap=True)  # no hard wraps: messages stay greppable

ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="Checkpoint or exported .onnx (default: the bundled model).")]
BackendOpt = Annotated[str, typer.Option(help="auto (ONNX Runtime where installed), pytorch, onnxruntime, openvino or openvino-bf16 (faster on CPUs with AMX; probabilities ~3e-3 off).")]
ThresholdOpt = Annotated[Optional[float], typer.Option(help="Override the model's decision threshold.")]
ReviewOpt = Annotated[Optional[tuple[float, float]], typer.Option(
    help="Send parts with LO <= p(defect) < HI to a person: decision 'review'.")]


def _version(value: bool) -> None:
    if value:
        print(f"castinspect {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Visual inspection of metal castings: train, evaluate, predict."""


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


class BarProgress:
    """Training progress on stderr: a bar per epoch with loss, accuracy and ETA."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f}"),
                            TimeRemainingColumn(), console=err)
        self.task = None
        self.epoch_no = 0

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("train", total=epochs * steps_per_epoch, epoch=1, loss=0.0, acc=0.0)

    def step(self, loss: float, acc: float) -> None:
        self.bar.update(self.task, advance=1, loss=loss, acc=acc)

    def epoch(self, row: dict) -> None:
        self.bar.update(self.task, epoch=row["epoch"] + 1)
        self.bar.console.print(
            f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}  ({row['seconds']:.1f}s)", highlight=False)

    def message(self, text: str) -> None:
        self.bar.console.print(text, highlight=False, markup=False)

    def close(self) -> None:
        self.bar.stop()


@app.command()
def train(
    data_root: Annotated[Path, typer.Argument(help="ROOT/train/<class>/ (Kaggle layout), ROOT/<class>/, or a split manifest.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/<time>).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML config; options below override it.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    size: Annotated[Optional[str], typer.Option(help="Size of the compact CNN: tiny, small, base (implies --backbone castnet).")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="efficientnet_lite0 (ImageNet-pretrained; the default) or castnet (the compact CNN from scratch: faster, less robust).")] = None,
    target_recall: Annotated[Optional[float], typer.Option(help="Choose the threshold on validation for this defect recall.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.ckpt.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable image.")] = False,
) -> None:
    """Train a model on DATA_ROOT and write a run directory.

    Example: castinspect train ../shared/data/casting_data --out runs/first
    """
    import dataclasses

    from castinspect.config import MODEL_PRESETS, Config, with_backbone
    from castinspect.train import train_and_evaluate

    cfg = Config.load(config) if config else Config()
    if resume and out_dir and (out_dir / "config.yaml").exists() and not config:
        cfg = Config.load(out_dir / "config.yaml")
    try:
        if size:
            if size not in MODEL_PRESETS:
                raise ValueError(f"unknown model size {size!r}; choose from {sorted(MODEL_PRESETS)}")
            cfg.model = dataclasses.replace(cfg.model, size=size, **MODEL_PRESETS[size])
            backbone = backbone or "castnet"  # the sizes are the compact CNN's
        if backbone:
            cfg = with_backbone(cfg, backbone)
    except ValueError as exc:
        _fail(str(exc))
    if epochs is not None:
        cfg.train.epochs = epochs
    if seed is not None:
        cfg.train.seed = seed
    if target_recall is not None:
        cfg.train.target_recall = target_recall
    cfg.data.strict = cfg.data.strict or strict
    run_dir = out_dir or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        result, metrics = train_and_evaluate(cfg, data_root, run_dir, resume=resume, progress=BarProgress())
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        _fail(str(exc))
    info = result.checkpoint.info
    err.print(f"trained in {result.seconds:.0f}s, {info['epochs_run']} epochs (best {info['best_epoch']}); "
              f"{info['parameters']:,} parameters, {info['flops'] / 1e6:.1f} MFLOPs", highlight=False)
    if result.skipped:
        err.print(f"skipped {len(result.skipped)} unreadable image(s)", highlight=False)
    _print_metrics(metrics, [k for k in ("validation", "test") if k in metrics])
    out.print(f"run directory: {run_dir}", highlight=False)


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
    split_name: Annotated[str, typer.Option("--split", help="With a manifest: which split to evaluate.")] = "test",
    robustness: Annotated[bool, typer.Option(help="Also judge every photo under the line-variation suite.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the line-variation suite.")] = 0,
    backend: BackendOpt = "auto",
) -> None:
    """Judge every image in DATA_DIR/<class>/ and report accuracy, escapes, false rejects, AUCs.
    With --train-root, also the leak-free subset: photos with no near-copy in the training data.
    With --robustness, also accuracy, escapes and false rejects under each line variation
    (light, contrast, gamma, uneven light, blur, noise, JPEG, rotation, shift, scale).

    Example: castinspect evaluate ../shared/data/casting_data/test --train-root ../shared/data/casting_data
    """
    from castinspect.evaluate import evaluate as run_evaluation, write_metrics
    from castinspect.predict import Predictor

    try:
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band, backend=backend)
        result = run_evaluation(predictor, data_dir, strict=strict, train_root=train_root, split=split_name)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))
    for e in result.errors:
        err.print(f"skipped {e}", highlight=False, markup=False)
    metrics = {"model": predictor.model_id, "threshold": predictor.threshold, "data": str(data_dir),
               "evaluation": result.metrics}
    if "leak_free" in result.metrics:
        metrics["leak_free"] = result.metrics.pop("leak_free")
        err.print(f"leak-free subset: {metrics['leak_free']['n']} photos; "
                  f"{metrics['leak_free']['removed_as_copies']} set aside as copies of training photos",
                  highlight=False)
    _print_metrics(metrics, [k for k in ("evaluation", "leak_free") if k in metrics])
    samples = None
    if robustness:
        from castinspect.data import ImageSet
        from castinspect.robustness import run_suite, sample_views, worst

        images = ImageSet([i.source for i in result.inspections], result.labels, predictor.classes)
        metrics["robustness"], _ = run_suite(predictor, images, seed=seed)
        metrics["robustness_summary"] = worst(metrics["robustness"])
        _print_robustness(metrics["robustness"], metrics["robustness_summary"])
        samples = sample_views(_sample_photo(images, predictor.ok_index), predictor.input_size, seed) \
            if len(images) else None
    if json_path:
        write_metrics(json_path, metrics)
    if report:
        from castinspect.report import write_report
        write_report(report, [result], predictor, robustness=metrics.get("robustness"), samples=samples)
        err.print(f"report: {report}", highlight=False)


def _sample_photo(images, ok_index: int) -> str:
    """The report's sample for the variation suite: a defective part when there is one."""
    defective = [p for p, y in zip(images.paths, images.labels) if y != ok_index]
    return (defective or images.paths)[0]


def _print_robustness(results: dict, summary: dict) -> None:
    from castinspect.robustness import has_review_band

    band = has_review_band(results)
    # With a review band, short headers so that eight columns fit 80 characters.
    table = Table(title="line variations", caption=(
        "esc.: defects passed; FR: OK parts rejected; auto: decided without review" if band else None))
    counts = ("esc.", "FR", "review", "auto esc.", "auto FR") if band else ("escapes", "false rejects")
    for col in ("variation", "kind", "accuracy", *counts):
        table.add_column(col, justify="left" if col in ("variation", "kind") else "right",
                         no_wrap=col in ("variation", "kind", "accuracy"))
    for name, r in results.items():
        review = (str(r["reviewed"]), str(r["auto_escapes"]), str(r["auto_false_rejects"])) if band else ()
        table.add_row(name, r["kind"], _fmt(r["accuracy"], "{:.4f}"), str(r["escapes"]), str(r["false_rejects"]),
                      *review)
    out.print(table)
    for path, names in summary["photometric_escaped_photos"].items():  # the parts to look at first
        out.print(f"passed under {', '.join(names)}: {path}", highlight=False)
    for path, names in summary.get("photometric_passed_unreviewed", {}).items():
        out.print(f"passed without review under {', '.join(names)}: {path}", highlight=False)


def _print_metrics(metrics: dict, sections: list[str]) -> None:
    table = Table(title=f"model {metrics['model']}  threshold {metrics['threshold']:.4f}")
    table.add_column("metric")
    for s in sections:
        table.add_column(s, justify="right")
    rows = [("images", "n", "{}"), ("accuracy", "accuracy", "{:.4f}"), ("errors", "errors", "{}"),
            ("escapes (defects passed)", "escapes", "{}"), ("false rejects (OK scrapped)", "false_rejects", "{}"),
            ("defect recall", "defect_recall", "{:.4f}"), ("false-reject rate", "false_reject_rate", "{:.4f}"),
            ("ROC-AUC", "roc_auc", "{:.5f}"), ("PR-AUC", "pr_auc", "{:.5f}"), ("Brier", "brier", "{:.5f}"),
            ("ECE", "ece", "{:.5f}"), ("share sent to review", "review_share", "{:.4f}"),
            ("escapes outside review", "auto_escapes", "{}"), ("false rejects outside review", "auto_false_rejects", "{}")]
    for label, key, fmt in rows:
        if any(key in metrics[s] for s in sections):
            table.add_row(label, *[_fmt(metrics[s].get(key), fmt) for s in sections])
    out.print(table)


def _fmt(v, fmt: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else fmt.format(v)


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or globs.")],
    model: ModelOpt = None,
    threshold: ThresholdOpt = None,
    review_band: ReviewOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    annotate: Annotated[Optional[Path], typer.Option(help="Write an annotated PNG per image into this folder.")] = None,
    backend: BackendOpt = "auto",
) -> None:
    """Judge photos: label, p(defective) and decision for each. Exit 1 if any file was not judged.

    Example: castinspect predict photos/ --format json > verdicts.json
    """
    from castinspect.predict import Predictor

    if fmt not in ("table", "csv", "json"):
        _fail(f"--format must be table, csv or json, not {fmt!r}")
    try:
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band, backend=backend)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))
    failed = 0
    for insp in _emit(predictor.iter_predict(_image_files(paths)), fmt):
        failed += insp.error is not None
        if insp.error:
            _print_error(insp)
        elif annotate:
            from castinspect.annotate import write_annotated
            from castinspect.io import read_image
            write_annotated(read_image(insp.source), insp, annotate)
    raise typer.Exit(1 if failed else 0)


def _image_files(paths: list[str]) -> list[str]:
    """Files, folders and globs expanded in order; stops the command when nothing matches."""
    from castinspect.io import expand_paths

    files = expand_paths(paths)
    if not files:
        _fail("no images found in the given paths")
    return files


def _print_error(insp) -> None:
    err.print(f"error: {insp.source}: {insp.error}", highlight=False, markup=False)


def _emit(results, fmt: str):
    """Write each Inspection as it comes (CSV rows, JSON array items), so a folder of a million
    photos streams out with bounded memory; the table is drawn once at the end. Yields them on."""
    if fmt == "table":
        table = Table()
        for col in ("path", "decision", "label", "p(defect)", "error"):
            table.add_column(col, justify="right" if col == "p(defect)" else "left", overflow="fold")
        for r in results:
            table.add_row(r.source, r.decision or "-", r.label or "-",
                          "-" if r.p_defect is None else f"{r.p_defect:.4f}", r.error or "")
            yield r
        out.print(table)
        return
    writer = None
    if fmt == "csv":
        fields = ["path", "label", "score", "decision", "p_defect", "threshold", "model", "error"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
    else:
        sys.stdout.write("[")
    for n, r in enumerate(results):
        if writer:
            writer.writerow(r.to_public())
        else:
            sys.stdout.write(("," if n else "") + "\n  " + json.dumps(r.to_public()))
        sys.stdout.flush()
        yield r
    if not writer:
        sys.stdout.write("\n]\n")


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
    from castinspect.audit import DEFAULT_THRESHOLD, audit as run_audit, summarize
    from castinspect.evaluate import write_metrics

    try:
        summary = summarize(run_audit(data_root, threshold=threshold or DEFAULT_THRESHOLD))
    except FileNotFoundError as exc:
        _fail(str(exc))
    table = Table(title=f"audit of {data_root}")
    table.add_column("finding")
    table.add_column("value", justify="right")
    for key in ("images", "unreadable", "exact_cross_split", "near_cross_split", "near_within_split",
                "groups", "group_size_median", "group_size_max", "label_conflicts", "class_counts", "sizes", "modes"):
        value = summary[key]
        table.add_row(key, str(len(value) if key == "unreadable" else value))
    out.print(table)
    if json_path:
        write_metrics(json_path, summary)
    if report:
        from castinspect.report import write_audit_report
        write_audit_report(report, summary)
        err.print(f"report: {report}", highlight=False)


@app.command()
def split(
    data_root: Annotated[Path, typer.Argument(help="Dataset root: every photo under it is pooled.")],
    out_path: Annotated[Path, typer.Option("--out", help="Manifest CSV to write.")] = Path("split.csv"),
    val: Annotated[float, typer.Option(help="Share of photos for validation.")] = 0.15,
    test: Annotated[float, typer.Option(help="Share of photos for test.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a leak-free train/val/test manifest: photos of one part (near-duplicates) stay on one
    side. `train` and `evaluate` accept the manifest in place of a folder.

    Example: castinspect split ../shared/data/casting_data --out split.csv
    """
    from castinspect.split import make_split

    try:
        result = make_split(data_root, out_path, val, test, seed)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    table = Table(title=f"{result['manifest']}: {result['groups']} groups of photos of one part")
    table.add_column("split")
    classes = list(next(iter(result["counts"].values())))
    for c in classes:
        table.add_column(c, justify="right")
    for name, counts in result["counts"].items():
        table.add_row(name, *[str(counts[c]) for c in classes])
    out.print(table)


@app.command()
def explain(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or globs.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Checkpoint (default: the bundled model); heatmaps need a .ckpt.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for one PNG per photo.")] = Path("explained"),
    threshold: ThresholdOpt = None,
) -> None:
    """Grad-CAM heatmaps: for each photo a PNG named after it in --out, the photo and the heatmap
    over it side by side, with label, p(defect) and threshold. Exit 1 if any file was not judged.

    Example: castinspect explain photos/ --out heatmaps/
    """
    from castinspect.annotate import write_annotated
    from castinspect.explain import side_by_side
    from castinspect.predict import Predictor

    try:
        predictor = Predictor.load(model, threshold=threshold)
        predictor.require_checkpoint()
    except (FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))
    failed = 0
    for f in _image_files(paths):
        insp, gray, heat = predictor.explain_one(f)
        if insp.error:
            failed += 1
            _print_error(insp)
            continue
        png = write_annotated(gray, insp, out_dir, picture=side_by_side(gray, heat, insp))
        out.print(f"{png}  {insp.decision}  p(defect)={insp.p_defect:.4f}", highlight=False)
    raise typer.Exit(1 if failed else 0)


@app.command()
def export(
    model: Annotated[Optional[Path], typer.Argument(help="Checkpoint (default: the bundled model).")] = None,
    onnx_path: Annotated[Path, typer.Option("--onnx", help="Write the ONNX graph here.")] = Path("model.onnx"),
    int8: Annotated[bool, typer.Option(help="Quantise to INT8, calibrated on training photos.")] = False,
    calibration: Annotated[Optional[Path], typer.Option(help="Training photos for INT8 calibration: a dataset root, class folders or a manifest (default: the data the model was trained on).")] = None,
    calibration_images: Annotated[int, typer.Option(help="How many training photos calibrate INT8.")] = 256,
) -> None:
    """Export a model to ONNX: decoded uint8 image in, calibrated probabilities out, with classes,
    threshold and input size in the metadata, so `--model x.onnx` judges like the checkpoint.

    Example: castinspect export --onnx castinspect.onnx
    """
    from castinspect.checkpoint import load_checkpoint
    from castinspect.export import export_onnx
    from castinspect.predict import bundled_model_path

    try:
        ckpt = load_checkpoint(model or bundled_model_path())
        images = None
        if int8:
            from castinspect.export import calibration_set
            source = calibration or ckpt.info.get("data", {}).get("root")
            if not source:
                raise ValueError("--int8 needs --calibration: the model does not record its training data")
            images = calibration_set(source, ckpt.config.model.input_size, calibration_images)
        path = export_onnx(ckpt, onnx_path, int8=int8, calibration=images)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))
    extra = f", INT8 calibrated on {len(images)} training photos" if int8 else ""
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB{extra}); model {ckpt.model_id}", highlight=False)


@app.command()
def bench(
    data_root: Annotated[Path, typer.Argument(help="Dataset root with train/ and test/ class folders.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Checkpoint (default: the bundled model).")] = None,
    backends: Annotated[Optional[list[str]], typer.Option("--backend", help="Backends to measure (repeat; default: every installed one).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write every number here.")] = None,
    reference: Annotated[bool, typer.Option(help="Also train and measure the seeds' CNN (about 15 minutes on 2 cores).")] = True,
    reference_epochs: Annotated[int, typer.Option(help="The reference's epoch limit (early stopping on validation loss).")] = 12,
    reference_steps: Annotated[Optional[int], typer.Option(help="Cut the reference's training after this many steps (a quick look).")] = None,
    latency_n: Annotated[int, typer.Option(help="Photos judged one at a time for the latency percentiles.")] = 200,
    robustness: Annotated[bool, typer.Option(help="Also judge both models under the line-variation suite.")] = True,
) -> None:
    """Measure decode-only throughput, end-to-end throughput and latency per backend, training
    throughput, and the same for a reproduction of the seeds' CNN, in one run; print the ratios.

    Example: castinspect bench ../shared/data/casting_data --json bench.json
    """
    from castinspect.backends import installed_backends
    from castinspect.bench import run_bench
    from castinspect.checkpoint import load_checkpoint
    from castinspect.evaluate import write_metrics
    from castinspect.predict import bundled_model_path

    backends = backends or installed_backends()
    try:
        ckpt = load_checkpoint(model or bundled_model_path())
        result = run_bench(str(data_root), ckpt, backends, reference=reference, reference_epochs=reference_epochs,
                           reference_steps=reference_steps, latency_n=latency_n, robustness=robustness,
                           report=lambda s: err.print(s, highlight=False, markup=False))
    except (FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))
    table = Table(title=f"{result['photos']} test photos; decode-only limit {result['decode_images_per_s']:.0f} photos/s")
    for col in ("model / backend", "photos/s end-to-end", "model-only photos/s", "latency p50 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "model / backend" else "right")
    rows = [(f"castinspect {b['backend']}", b) for b in result["backends"]]
    if "reference" in result:
        rows.append(("seeds' CNN (pytorch)", result["reference"]))
    for name, b in rows:
        table.add_row(name, f"{b['images_per_s']:.0f}", f"{b['model_only_images_per_s']:.0f}",
                      f"{b['p50_ms']:.2f}", f"{b['p99_ms']:.2f}")
    out.print(table)
    if robustness:
        out.print(_robustness_comparison(result))
    out.print_json(json.dumps(result["ratios"]))
    if json_path:
        write_metrics(json_path, result)


def _robustness_comparison(result: dict) -> Table:
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


@app.command("learning-curve")
def learning_curve_command(
    data_root: Annotated[Path, typer.Argument(help="Dataset root (any splits are pooled) or a folder of class folders.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where the runs, curve.json, curve.csv and curve.png go.")] = Path("runs/learning-curve"),
    sizes: Annotated[Optional[list[int]], typer.Option("--size", help="Training photos per point (repeat; 0 = all).")] = None,
    backbones: Annotated[Optional[list[str]], typer.Option("--backbone", help="castnet and/or efficientnet_lite0 (repeat; default: both).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per point at small sizes.")] = 3,
    small: Annotated[int, typer.Option(help="Sizes up to this many photos get several seeds.")] = 200,
    config: Annotated[Optional[Path], typer.Option(help="YAML config: the recipe to measure.")] = None,
    pretrained_seeds: Annotated[Optional[int], typer.Option(help="Seeds per small size for efficientnet_lite0 (default: --seeds).")] = None,
    pretrained_max: Annotated[int, typer.Option(help="Largest subset for efficientnet_lite0 (0: all).")] = 0,
) -> None:
    """Train the default recipe on growing subsets of the training photos (50 to all) and judge
    each on one fixed set of unseen parts: accuracy, escapes and false rejects per size, with a plot.
    Runs already in --out are read back, so an interrupted curve goes on where it stopped.

    Example: castinspect learning-curve ../shared/data/casting_data --out runs/curve --backbone castnet --backbone efficientnet_lite0
    """
    from castinspect.config import Config
    from castinspect.learning_curve import DEFAULT_SIZES, learning_curve

    try:
        curve = learning_curve(data_root, out_dir, tuple(sizes or DEFAULT_SIZES), tuple(backbones or ("castnet", "efficientnet_lite0")),
                               seeds=seeds, small=small, base=Config.load(config) if config else None,
                               report=lambda s: err.print(s, highlight=False, markup=False),
                               pretrained_seeds=pretrained_seeds, pretrained_max=pretrained_max)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))
    table = Table(title=f"learning curve: {curve['test_photos']} test photos of unseen parts")
    for col in ("backbone", "photos", "seeds", "accuracy", "min", "escapes", "false rejects", "train s"):
        table.add_column(col, justify="left" if col == "backbone" else "right")
    for r in curve["mean"]:
        table.add_row(r["backbone"], str(r["photos"]), str(r["seeds"]), f"{r['accuracy']:.4f}",
                      f"{r['accuracy_min']:.4f}", f"{r['escapes']:.1f}", f"{r['false_rejects']:.1f}",
                      f"{r['train_seconds']:.0f}")
    out.print(table)
    out.print(f"curve: {out_dir / 'curve.png'}", highlight=False)


@app.command()
def serve(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: Annotated[str, typer.Option(help="Inspection log: a file path, sqlite:///FILE or postgresql://user@host:port/name.")] = "castinspect.db",
    token: Annotated[Optional[str], typer.Option(envvar="CASTINSPECT_TOKEN", help="Bearer token required on the API (better set through CASTINSPECT_TOKEN: a command line is visible to other users).")] = None,
    threshold: ThresholdOpt = None,
    review_band: ReviewOpt = None,
    backend: BackendOpt = "auto",
    max_upload_mb: Annotated[float, typer.Option(help="Largest accepted request body, in MiB.")] = 20.0,
    store_images: Annotated[bool, typer.Option(help="Keep each inspected photo in the log for audit (stored once per content).")] = False,
    station: Annotated[Optional[str], typer.Option(help="This station's name, written with each record (several stations, one log).")] = None,
) -> None:
    """Serve the inspection API and the operator page; every judgement is committed to the log
    before its answer is sent.

    Example: castinspect serve --db sqlite:///line1.db   then open http://127.0.0.1:8000/
    """
    from castinspect.inspection_log import InspectionLog
    from castinspect.predict import Predictor
    from castinspect.server import check_binding, serve as run_server

    try:
        check_binding(host, token)
        predictor = Predictor.load(model, threshold=threshold, review_band=review_band, backend=backend)
        log = InspectionLog.open(db, station=station)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError, OSError) as exc:
        _fail(str(exc))
    except Exception as exc:  # a database that cannot be reached: say which and why, no traceback
        _fail(f"cannot open the inspection log {db}: {exc}")
    err.print(f"castinspect serving model {predictor.model_id} on http://{host}:{port}/  "
              f"(log: {log.target.describe()}, schema v{log.schema_version()})", highlight=False, markup=False)
    try:
        run_server(predictor, log, host=host, port=port, token=token,
                   max_upload=int(max_upload_mb * 1024 * 1024), store_images=store_images)
    finally:
        log.close()


log_app = typer.Typer(no_args_is_help=True, help="The inspection log written by castinspect serve.")
app.add_typer(log_app, name="log")


@log_app.command("export")
def log_export(
    db: Annotated[str, typer.Option(help="The log: a file path, sqlite:///FILE or postgresql://...")] = "castinspect.db",
    as_csv: Annotated[bool, typer.Option("--csv/--jsonl", help="CSV (default) or one JSON object per line.")] = True,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write here (default: stdout).")] = None,
) -> None:
    """Every inspection in the log, oldest first.

    Example: castinspect log export --db sqlite:///line1.db --csv --out inspections.csv
    """
    from castinspect.inspection_log import InspectionLog, parse_url

    try:
        target = parse_url(db)
        if target.dialect == "sqlite" and not Path(target.location).is_file():
            raise FileNotFoundError(f"{target.location}: no such inspection log")
        log = InspectionLog(target)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as exc:
        _fail(str(exc))
    import contextlib

    with log, (open(out_path, "w", newline="") if out_path else contextlib.nullcontext(sys.stdout)) as fh:
        n = log.export_csv(fh) if as_csv else log.export_jsonl(fh)
    err.print(f"{n} inspections exported", highlight=False)


@app.command()
def info(model: Annotated[Optional[Path], typer.Argument(help="Checkpoint (default: the bundled model).")] = None) -> None:
    """Show a model's classes, threshold, input size, size, training data and metrics.

    Example: castinspect info runs/first/model.ckpt
    """
    from castinspect.checkpoint import load_checkpoint
    from castinspect.model import count_flops
    from castinspect.predict import bundled_model_path

    try:
        ckpt = load_checkpoint(model or bundled_model_path())
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    net = ckpt.build_model()
    summary = {
        "model": ckpt.model_id,
        "file": str(model or bundled_model_path()),
        "classes": ckpt.classes,
        "ok_class": ckpt.classes[ckpt.ok_index],
        "threshold": ckpt.threshold,
        "temperature": ckpt.temperature,
        "input_size": ckpt.config.model.input_size,
        "backbone": ckpt.config.model.backbone,
        **({"size": ckpt.config.model.size} if ckpt.config.model.backbone == "castnet" else {}),
        "mirror_averaging": net.flip_average,  # each photo judged with its mirror image (flops count both)
        "parameters": sum(p.numel() for p in net.parameters()),
        "flops": count_flops(net, ckpt.config.model.input_size),
        **{k: v for k, v in ckpt.info.items() if k not in ("parameters", "flops", "history")},
        "epochs_in_history": len(ckpt.info.get("history", [])),
    }
    out.print_json(json.dumps(summary))


@app.command()
def demo(out_dir: Annotated[Path, typer.Option("--out", help="Where to write the demo report.")] = Path("castinspect-demo")) -> None:
    """Judge the bundled sample photos with the bundled model and write an annotated report.

    Example: castinspect demo --out demo
    """
    from castinspect.demo import run_demo

    results, report = run_demo(out_dir)
    for _ in _emit(results, "table"):
        pass
    out.print(f"report: {report}", highlight=False)


if __name__ == "__main__":
    app()
