"""Commands that make and describe models: train, export, info, demo."""

from __future__ import annotations

import json
import os
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from castinspect.cli.app import (
    BackboneChoice,
    CheckpointArg,
    Device,
    ReviewOpt,
    SizeChoice,
    app,
    duration,
    err,
    out,
    say,
    user_errors,
    value,
)
from castinspect.cli.render import print_metrics, write_records


class TrainMode(str, Enum):
    classify = "classify"
    anomaly = "anomaly"


class BarProgress:
    """Training progress on stderr: a bar per epoch with loss, accuracy and ETA."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f}"),
                            TimeRemainingColumn(), console=err)
        self.task = None

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("train", total=epochs * steps_per_epoch, epoch=1, loss=0.0, acc=0.0)

    def replan(self, total_steps: int) -> None:
        self.bar.update(self.task, total=total_steps)

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


def main_progress() -> BarProgress | None:
    """A progress bar, in rank 0 of a torchrun only (the others train silently)."""
    return BarProgress() if os.environ.get("RANK", "0") == "0" else None


@app.command()
def train(
    data_root: Annotated[Path, typer.Argument(help="ROOT/train/<class>/ (Kaggle layout), ROOT/<class>/, or a split manifest; with --mode anomaly also a folder of good photos alone.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/<time>).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML config; options below override it.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    size: Annotated[Optional[SizeChoice], typer.Option(help="Size of the compact CNN (implies --backbone castnet).")] = None,
    backbone: Annotated[Optional[BackboneChoice], typer.Option(help="efficientnet_lite0: ImageNet-pretrained, the default; castnet: the compact CNN from scratch, faster, less robust.")] = None,
    target_recall: Annotated[Optional[float], typer.Option(help="Choose the threshold on validation for this defect recall.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.ckpt.")] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first unreadable image.")] = False,
    device: Annotated[Optional[Device], typer.Option(help="Where to train: auto is a CUDA GPU when PyTorch sees one, else the CPU.")] = None,
    budget: Annotated[float, typer.Option(parser=duration, metavar="DURATION", help="Time for the whole command: recipe search, final fit, evaluation (e.g. 10m, 90s, 1h).")] = "10m",
    no_search: Annotated[bool, typer.Option("--no-search", help="Train the configured recipe as it is, within the budget, without searching.")] = False,
    mode: Annotated[TrainMode, typer.Option(help="classify: learn the labelled classes; anomaly: fit on the good photos alone (PatchCore), defect photos only judged on validation.")] = TrainMode.classify,
) -> None:
    """Search a training recipe on DATA_ROOT's validation photos within a time budget, train the
    model with it, and write a run directory.

    Example: castinspect train ../shared/data/casting_data --out runs/first --budget 10m

    On several processes or machines: torchrun --standalone --nproc-per-node 2 -m castinspect train ...
    """
    from castinspect.training.run import configure, train_and_evaluate

    run_dir = out_dir or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    if mode == TrainMode.anomaly:
        return train_anomaly(data_root, run_dir, config, seed, target_recall, strict, resume, backbone or size)
    with user_errors():
        cfg = configure(config, run_dir, resume, value(backbone), value(size), epochs, seed, target_recall, strict,
                        value(device))
        result, metrics = train_and_evaluate(cfg, data_root, run_dir, resume=resume, progress=main_progress(),
                                             budget=budget, search=not no_search)
    if result is None:
        return  # a process of a torchrun other than rank 0: rank 0 reports
    info = result.checkpoint.info
    if metrics.get("search"):
        done = [t for t in metrics["search"] if t["state"] == "complete"]
        say(f"recipe search: {len(metrics['search'])} trials ({len(done)} complete), search.csv in the run directory")
    say(f"trained in {result.seconds:.0f}s, {info['epochs_run']} epochs (best {info['best_epoch']}, {info['steps']} steps); "
        f"{info['parameters']:,} parameters, {info['flops'] / 1e6:.1f} MFLOPs; the whole run {metrics['run_seconds']:.0f}s")
    if result.skipped:
        say(f"skipped {len(result.skipped)} unreadable image(s)")
    print_metrics(metrics, [k for k in ("validation", "test") if k in metrics])
    out.print(f"run directory: {run_dir}", highlight=False, markup=False)


def train_anomaly(data_root: Path, run_dir: Path, config: Path | None, seed: int | None,
                  target_recall: float | None, strict: bool, resume: bool, backbone) -> None:
    """train --mode anomaly: fit the anomaly model (no steps, no search, no budget to spend)."""
    from castinspect.training.anomaly import fit_anomaly
    from castinspect.training.run import configure

    if resume or backbone:
        raise typer.BadParameter("an anomaly model is fitted in one go on EfficientNet-Lite0's features: "
                                 "--resume, --backbone and --size do not apply", param_hint="--mode")
    with user_errors():
        cfg = configure(config, None, False, None, None, None, seed, target_recall, strict)
        result, metrics = fit_anomaly(cfg, data_root, run_dir, progress=BarProgress())
    fitted = result.checkpoint.info["anomaly"]
    say(f"anomaly model fitted in {result.seconds:.0f}s: {fitted['bank']:,} patches in the memory bank from "
        f"{fitted['photos']} good photos; threshold: {result.checkpoint.info['threshold_rule']}")
    print_metrics(metrics, [k for k in ("validation", "test") if k in metrics])
    out.print(f"run directory: {run_dir}", highlight=False, markup=False)


@app.command()
def distill(
    teacher: Annotated[str, typer.Argument(metavar="TEACHER", help="The teacher: a run directory, a checkpoint, or 'bundled'.")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/<time>).")] = None,
    data: Annotated[Optional[Path], typer.Option(metavar="DATA", help="The training photos (default: the teacher's run's split.csv, or the data the teacher records).")] = None,
    size: Annotated[Optional[SizeChoice], typer.Option(help="The compact student's size.")] = None,
    input_size: Annotated[Optional[int], typer.Option(metavar="PIXELS", help="The student's input size (default: the teacher's).")] = None,
    alpha: Annotated[float, typer.Option(help="The share of the loss that follows the teacher (the rest: the labels).")] = 0.7,
    temperature: Annotated[Optional[float], typer.Option(
        help="How far the teacher's outputs are softened (default: 1 with two classes, 4 with more).")] = None,
    budget: Annotated[float, typer.Option(parser=duration, metavar="DURATION", help="Time for the whole command: fit and evaluation (e.g. 20m).")] = "20m",
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
) -> None:
    """Train the compact CNN to judge like a fine-tuned teacher: it learns the teacher's softened
    outputs on every augmented training batch, and the labels; it keeps the teacher's threshold
    policy, localisation and augmentation. Compare the two with castinspect compare.

    Example: castinspect distill runs/casting --out runs/student --budget 20m
    """
    from castinspect.training.distill import Teacher, student_config, teacher_of
    from castinspect.training.run import train_and_evaluate

    run_dir = out_dir or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    with user_errors():
        ckpt, recorded = teacher_of(None if teacher == "bundled" else teacher)
        source = data or recorded
        if source is None:
            raise ValueError("the teacher does not say what it was trained on: pass --data")
        cfg = student_config(ckpt, value(size), input_size)
        if seed is not None:
            cfg.train.seed = seed
        result, metrics = train_and_evaluate(cfg, source, run_dir, progress=main_progress(), budget=budget,
                                             search=False, teacher=Teacher(ckpt, alpha, temperature))
    if result is None:
        return
    info = result.checkpoint.info
    say(f"student trained in {result.seconds:.0f}s, {info['epochs_run']} epochs, {info['steps']} steps; "
        f"{info['parameters']:,} parameters, {info['flops'] / 1e6:.1f} MFLOPs (teacher {ckpt.model_id})")
    print_metrics(metrics, [k for k in ("validation", "test") if k in metrics])
    out.print(f"run directory: {run_dir}", highlight=False, markup=False)
    say(f"next: castinspect compare {run_dir} {teacher} {run_dir}")


@app.command()
def export(
    model: CheckpointArg = None,
    onnx_path: Annotated[Path, typer.Option("--onnx", help="Write the ONNX graph to this file.")] = Path("model.onnx"),
    int8: Annotated[bool, typer.Option(help="Quantise to INT8, calibrated on training photos.")] = False,
    calibration: Annotated[Optional[Path], typer.Option(help="Training photos for INT8 calibration: a dataset root, class folders or a manifest (default: the data the model was trained on).")] = None,
    calibration_images: Annotated[int, typer.Option(help="How many training photos calibrate INT8.")] = 256,
    guard: Annotated[Optional[Path], typer.Option(metavar="DATA", help="INT8: the photos it must judge like the checkpoint (default: the run's validation photos, its split.csv).")] = None,
    max_changed: Annotated[int, typer.Option(metavar="N", help="INT8 is kept only if it changes at most N of those decisions.")] = 2,
    model_repository: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Write a Triton / OpenVINO Model Server model repository instead: DIR/castinspect/1/model.onnx and config.pbtxt.")] = None,
) -> None:
    """Export a model to ONNX: decoded uint8 image in, calibrated probabilities out, with classes,
    threshold and input size in the metadata, so `--model x.onnx` judges like the checkpoint.

    Example: castinspect export --onnx castinspect.onnx
    """
    from castinspect.inference.agreement import guard_int8
    from castinspect.inference.export import calibration_set, export_onnx
    from castinspect.models.checkpoint import load_checkpoint

    with user_errors():
        ckpt = load_checkpoint(model)
        images = None
        if int8:
            source = calibration or ckpt.info.get("data", {}).get("root")
            if not source:
                raise ValueError("--int8 needs --calibration: the model does not record its training data")
            images = calibration_set(source, ckpt.config.model.input_size, calibration_images,
                                     locate=ckpt.metadata()["locate"])
        if model_repository is not None:
            from castinspect.inference.repository import write_repository

            path = write_repository(ckpt, model_repository, int8=int8, calibration=images) / "1" / "model.onnx"
        else:
            path = export_onnx(ckpt, onnx_path, int8=int8, calibration=images)
        checked = guard_photos(model, guard, ckpt) if int8 else None
        if int8 and checked is not None:
            kept = guard_int8(ckpt, path, checked, max_changed)
    extra = f", INT8 calibrated on {len(images)} training photos" if int8 else ""
    if int8:
        extra += (f"; {kept['changed']} of {kept['photos']} validation decisions changed (at most {max_changed})"
                  if checked is not None else "; not guarded (no validation photos known: pass --guard)")
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB{extra}); model {ckpt.model_id}",
              highlight=False, markup=False)


def guard_photos(model: Path | None, guard: Path | None, ckpt):
    """The decoded photos an INT8 export must judge like the checkpoint: ``guard`` (a folder of
    class folders, or a manifest's val rows), else the model's run's validation photos, else None."""
    from castinspect.data.datasets import (
        decode_set,
        is_manifest,
        load_folder,
        read_manifest,
    )

    source = guard or (Path(model).parent / "split.csv" if model is not None else None)
    if source is None or not Path(source).exists():
        return None
    images = read_manifest(source, "val", ckpt.classes) if is_manifest(source) else load_folder(source, ckpt.classes)
    return decode_set(images, ckpt.config.model.input_size, locate=ckpt.metadata()["locate"]).images


@app.command()
def threshold(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory train wrote (its model.ckpt and split.csv), or its model.ckpt.")],
    cost_escape: Annotated[float, typer.Option(metavar="COST", help="What one defect passed as OK costs (any unit).")],
    cost_false_reject: Annotated[float, typer.Option(metavar="COST", help="What one good part scrapped costs.")],
    cost_review: Annotated[float, typer.Option(metavar="COST", help="What one part sent to a person costs (with --review-band).")] = 0.0,
    review_band: ReviewOpt = None,
    out_file: Annotated[Optional[Path], typer.Option("--model-out", metavar="FILE", help="Where the copy goes (default: model-cost.ckpt in the run directory).")] = None,
) -> None:
    """Choose the threshold as a cost decision on the run's validation photos — the one with the
    lowest expected cost per 1,000 parts — and write it into a copy of the model.

    Example: castinspect threshold runs/line1 --cost-escape 500 --cost-false-reject 20
    """
    from castinspect.evaluation.thresholds import Costs, threshold_for_costs

    with user_errors():
        result = threshold_for_costs(run_dir, Costs(cost_escape, cost_false_reject, cost_review), out_file,
                                     review_band)
    was, now = result["previous"], result["chosen"]
    for name, r in (("was", was), ("now", now)):
        say(f"{name}: threshold {r['threshold']:.4f}: {r['escapes']} escapes, {r['false_rejects']} false rejects, "
            f"{r['reviewed']} to review on {result['photos']} validation photos; {r['cost_per_1000']:.2f} per 1,000 parts")
    out.print(f"wrote {result['file']} (model {result['model']}, threshold {now['threshold']:.4f})",
              highlight=False, markup=False)


@app.command()
def info(model: CheckpointArg = None) -> None:
    """Show a model's classes, threshold, input size, backbone, cost, training data and metrics.

    Example: castinspect info runs/first/model.ckpt
    """
    from castinspect.models.checkpoint import (
        bundled_model_path,
        describe,
        load_checkpoint,
    )

    with user_errors():
        summary = describe(load_checkpoint(model), model or bundled_model_path())
    out.print_json(json.dumps(summary))


@app.command()
def demo(out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo page (index.html).")] = Path("castinspect-demo")) -> None:
    """Judge the bundled sample photos with the bundled model and write an annotated page.

    Example: castinspect demo --out demo
    """
    from castinspect.lab.demo import run_demo

    results, page = run_demo(out_dir)
    columns = ["path", "decision", "label", "p_defect", "error"]
    for _ in write_records(results, "table", lambda i: i.to_public(), columns):
        pass
    out.print(f"report: {page}", highlight=False, markup=False)
