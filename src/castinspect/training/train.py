"""fit(cfg, data_root, run_dir): train a model and leave a run directory behind.

RUN_DIR/config.yaml  split.csv (train/val manifest)  history.csv  model.ckpt (best on validation)
        last.ckpt (resume)
metrics.json and report.html are added by ``run.finish_run`` once the model is evaluated.

The validation split is carved from ``train`` and is the only data that steers training: early
stopping, the best checkpoint and the threshold. The test split is never read here.
"""

from __future__ import annotations

import csv
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from castinspect.core.config import Config
from castinspect.core.decision import defect_probability, resolve_ok_index
from castinspect.core.io import ImageError
from castinspect.core.runtime import (
    seed_everything,
    set_threads,
    training_device,
    tune_allocator,
)
from castinspect.data.augment import augment_batch
from castinspect.data.datasets import Decoded, is_manifest, write_manifest
from castinspect.data.quality import fit_reference
from castinspect.evaluation.metrics import choose_threshold, fit_temperature
from castinspect.inference.familiarity import FIT_PHOTOS, fit_familiarity
from castinspect.models.checkpoint import Checkpoint, load_resume_state, save_checkpoint
from castinspect.models.network import (
    count_flops,
    count_parameters,
    predict_outputs,
    predict_probs,
    softmax,
    to_input,
)
from castinspect.models.registry import bf16_training, build_model, resolve
from castinspect.training.average import WeightAverage
from castinspect.training.distill import shrink
from castinspect.training.distributed import SINGLE, World, current
from castinspect.training.inputs import (
    TrainingData,
    resolve_locate,
    resolve_part_augmentation,
    train_counts,
)
from castinspect.training.schedule import Schedule, TimeProbe, plan

HISTORY_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Checkpoint
    history: list[dict]
    val: Decoded  # the validation split that chose the model, for its final evaluation
    skipped: list[ImageError]
    seconds: float


class Progress:
    """What the training loop reports; the CLI plugs a progress bar in, tests plug nothing."""

    def start(self, epochs: int, steps_per_epoch: int) -> None: ...
    def replan(self, total_steps: int) -> None: ...  # a time limit cut the run to this many steps
    def step(self, loss: float, acc: float) -> None: ...
    def epoch(self, row: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


def train_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, x_train: torch.Tensor, y_train: torch.Tensor,
                schedule: Schedule, epoch: int, cfg: Config, g: torch.Generator, bf16: bool, progress: Progress,
                average: WeightAverage | None = None, after_step=None, teacher=None,
                world: World = SINGLE) -> tuple[float, float]:
    """Epoch ``epoch``: batches of the shuffled, augmented training images, as many as the schedule
    gives it (fewer than a full pass when a time limit cut the run); returns (mean loss, accuracy)
    over them. ``after_step(i)`` is called after each step (the time probe, which may cut it).
    With a ``teacher`` (``distill.Teacher``) the images are at its size: it judges each augmented
    batch, and the model learns its outputs from the same views at its own size."""
    model.train()
    batch_size = cfg.train.batch_size
    order = torch.randperm(len(y_train), generator=g)
    device = next(model.parameters()).device
    loss_sum, correct, seen, i = 0.0, 0, 0, 0
    while i < schedule.steps_in(epoch):
        idx = order[i * batch_size:(i + 1) * batch_size]
        x = augment_batch(to_input(x_train[idx]), cfg.augment, g)  # on the CPU: its generator is the run's
        mine, weight = world.share(len(idx))
        x, idx = x[mine], idx[mine]
        soft = teacher.targets(x) if teacher is not None else None
        x = shrink(x, cfg.model.input_size) if teacher is not None else x
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        y = y_train[idx].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            logits = model(x)
        loss = (F.cross_entropy(logits.float(), y, label_smoothing=cfg.train.label_smoothing) if soft is None
                else teacher.loss(logits.float(), y, soft, cfg.train.label_smoothing))
        optimizer.zero_grad(set_to_none=True)
        (loss * weight).backward()
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update(model)
        batch_correct = int((logits.argmax(1) == y).sum())
        loss_sum += loss.item() * len(idx)
        correct += batch_correct
        seen += len(idx)
        progress.step(loss.item(), batch_correct / len(idx))
        if after_step is not None:
            after_step(i)
        i += 1
    loss_sum, correct, seen = world.sum(loss_sum, correct, seen)
    return loss_sum / max(1, seen), correct / max(1, seen)


def validate(model: torch.nn.Module, val: Decoded, world: World = SINGLE) -> tuple[float, float]:
    """(cross-entropy, accuracy) on the validation split (each process of a ``world`` judges its
    share of it with rank 0's weights)."""
    world.align(model)
    mine = slice(world.rank, None, world.size)
    probs = torch.from_numpy(predict_probs(model, val.images[mine]))
    labels = torch.from_numpy(val.labels[mine])
    loss = F.nll_loss(torch.log(probs.clamp_min(1e-7)), labels, reduction="sum")
    loss, correct = world.sum(float(loss), float((probs.argmax(1) == labels).sum()))
    n = max(1, len(val.labels))
    return loss / n, correct / n


@dataclass
class Trained:
    """What ``train_model`` leaves: the chosen weights (on the CPU) and how it got there."""

    model: torch.nn.Module
    history: list[dict]
    best_epoch: int
    schedule: Schedule
    bf16: bool

    @property
    def steps(self) -> int:
        """Optimiser steps run (early stopping may end a run before its schedule does)."""
        return sum(self.schedule.steps_in(e) for e in range(len(self.history)))


def train_model(cfg: Config, train: Decoded, val: Decoded, progress: Progress | None = None,
                deadline: float | None = None, on_epoch=None, state_path: Path | None = None,
                resume: bool = False, teacher=None, world: World = SINGLE) -> Trained:
    """Train ``cfg`` (resolved: ``registry.resolve``) on ``train``, choosing the epoch on ``val``.

    ``deadline`` (a ``time.perf_counter`` value): the schedule is cut, once, after its first steps,
    so that training and validation end by then. ``on_epoch(row)`` sees every epoch's numbers
    (it may raise to stop the run, as a search's pruner does). ``state_path``: where the resume
    state is kept (``last.ckpt``), and read from with ``resume``.
    """
    progress = progress or Progress()
    tc = cfg.train
    g = seed_everything(tc.seed, tc.deterministic)  # before the model: its initial weights are drawn
    device = world.device(training_device(tc.device))
    model = build_model(cfg.model, len(train.classes), pretrained=True).to(device, memory_format=torch.channels_last)
    for module in model.early_stages(tc.freeze_stages or 0):
        module.requires_grad_(False)  # (their BatchNorm statistics still follow the new photos)
    bf16 = bf16_training(cfg) and device.type == "cpu"  # (AMX is a CPU's; a GPU trains in fp32 here)
    schedule = plan(tc, len(train.labels))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.lr(step))

    average = WeightAverage(model, tc.ema_decay) if tc.ema_decay > 0 else None
    history: list[dict] = []
    best_loss, best_state, stale, start_epoch = math.inf, None, 0, 0
    if resume and state_path is not None and state_path.exists():
        state = load_resume_state(state_path)
        model.load_state_dict(state["model"])
        if average is not None and state.get("average") is not None:
            average.model.load_state_dict(state["average"])
            average.updates = state["average_updates"]
        optimizer.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        if (state.get("schedule") or {}).get("cut"):
            schedule = Schedule(**state["schedule"])  # a run cut to a time limit resumes as cut
        scheduler.load_state_dict(state["scheduler"])
        history, best_loss, stale = state["history"], state["best_loss"], state["stale"]
        best_state, start_epoch = state["best_state"], state["epoch"]
        progress.message(f"resuming after epoch {start_epoch}")
    elif schedule.epochs != tc.epochs:
        progress.message(f"schedule: {schedule.epochs} epochs of {schedule.steps_per_epoch} steps, not {tc.epochs} "
                         f"(train.min_steps {tc.min_steps}, train.max_steps {tc.max_steps})")

    selects = len(val.labels) >= tc.min_val_to_select
    if not selects:
        progress.message(f"validation holds {len(val.labels)} photos (< {tc.min_val_to_select}): "
                         "no early stopping or calibration; the last weights are kept")
    net = world.wrap(model)  # after the resume state: every process starts from the same weights
    probe = TimeProbe(schedule, deadline, val, average.model if average is not None else model, progress, world) \
        if deadline is not None and start_epoch == 0 else None
    x_train, y_train = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    progress.start(schedule.epochs, schedule.steps_per_epoch)
    save_every = math.ceil(20 / schedule.steps_per_epoch)
    epoch = start_epoch
    while epoch < schedule.epochs and stale < schedule.patience:
        t_epoch = time.perf_counter()
        train_loss, train_acc = train_steps(net, optimizer, scheduler, x_train, y_train, schedule, epoch,
                                            cfg, g, bf16, progress, average,
                                            probe.after_step if probe is not None and epoch == 0 else None, teacher,
                                            world)
        # The model that would ship (the weight average, when on) is validated in fp32, as the
        # Predictor will run it: the checkpoint is chosen on the numbers it will actually produce.
        shipped = average.model if average is not None else model
        val_loss, val_acc = validate(shipped, val, world)
        epoch += 1
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
               "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
               "seconds": time.perf_counter() - t_epoch}
        history.append(row)
        if selects and val_loss < best_loss:
            best_loss, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in shipped.state_dict().items()}
        elif selects:
            stale += 1
        progress.epoch(row)
        if on_epoch is not None:
            on_epoch(row)
        # On a tiny dataset an epoch is a step or two: keep the resume state every ~20 steps.
        if state_path is None or not world.main or (epoch % save_every and epoch < schedule.epochs and stale < schedule.patience):
            continue
        write_history(state_path.parent / "history.csv", history)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "average": average.model.state_dict() if average is not None else None,
                    "average_updates": average.updates if average is not None else 0,
                    "scheduler": scheduler.state_dict(), "generator": g.get_state(),
                    "schedule": schedule.to_dict(), "history": history, "best_loss": best_loss,
                    "stale": stale, "best_state": best_state, "epoch": epoch}, state_path)
    progress.close()

    if not selects:
        best_state = (average.model if average is not None else model).state_dict()
    model.load_state_dict(best_state)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    best_epoch = int(np.argmin([h["val_loss"] for h in history]) + 1) if selects else len(history)
    return Trained(model, history, best_epoch, schedule, bf16)


def fit(cfg: Config, data_root: str | os.PathLike, run_dir: str | os.PathLike, resume: bool = False,
        progress: Progress | None = None, deadline: float | None = None,
        data: TrainingData | None = None, teacher=None) -> TrainResult | None:
    """Train ``cfg`` on ``data_root`` into ``run_dir``. ``deadline``: see ``train_model``;
    ``data``: the run's photos already split and decoded (a recipe search's); ``teacher``: a
    ``distill.Teacher`` the model learns from besides the labels. Under ``torchrun`` every process
    trains and rank 0 writes the run (the others get None)."""
    progress = progress or Progress()
    if cfg.train.epochs < 1:
        raise ValueError("epochs must be at least 1")
    t_start = time.perf_counter()
    tune_allocator()
    set_threads(cfg.train.threads)
    world = current()
    run_dir = Path(run_dir)
    if world.main:
        prepare_run_dir(run_dir, resume)
        cfg.save(run_dir / "config.yaml")

    located = cfg.data.locate == "auto"
    cfg = resolve_locate(cfg, data_root)
    if located:
        progress.message(f"part localisation: {cfg.data.locate} (data.locate auto)")
    data = data or TrainingData(cfg, data_root)
    train, val = data.decoded(cfg.model.input_size, cfg.data.locate == "on")
    skipped = data.errors
    cfg = resolve_part_augmentation(cfg, train, progress)
    auto = cfg.model.backbone == "auto"
    cfg = resolve(cfg)  # the config saved says what was trained: backbone, mirror averaging, size
    if auto:
        progress.message(f"backbone: {cfg.model.backbone} ({len(train.labels)} training photos)")
    if world.main:
        cfg.save(run_dir / "config.yaml")
        write_split(run_dir, train, val)
    for err in skipped:
        progress.message(f"skipped {err}")
    classes = train.classes
    ok_index = resolve_ok_index(classes, cfg.data.positive_class, cfg.data.ok_class)
    if ok_index is None:
        if cfg.train.target_recall is not None:
            raise ValueError(f"--target-recall: the classes {classes} have no OK class, so there is no "
                             "p(defect) to set a threshold on (set data.ok_class if one of them is)")
        progress.message(f"no OK class among {classes}: the model classifies the defect type")

    fitted = train if teacher is None else data.decoded(teacher.input_size, cfg.data.locate == "on")[0]
    trained = train_model(cfg, fitted, val, progress, deadline, state_path=run_dir / "last.ckpt", resume=resume,
                          teacher=teacher, world=world)
    if not world.main:
        return None  # rank 0 chooses the operating point and writes the model
    model, tc = trained.model, cfg.train
    selects = len(val.labels) >= tc.min_val_to_select
    # One pass over validation serves both the operating point and the familiarity's calibration.
    val_logits, val_embeddings = predict_outputs(model, val.images)
    temperature, threshold = operating_point(val_logits, val.labels, ok_index, tc.calibrate and selects,
                                             tc.target_recall)
    familiarity = model_familiarity(model, train, val_embeddings, tc.familiarity_share, tc.familiarity_bank,
                                    tc.seed)
    if familiarity is None:
        progress.message("no validation photos: familiarity is not measured (no photo will be flagged unfamiliar)")
    seconds = time.perf_counter() - t_start
    info = {
        "data": {"root": str(data_root), "train": train_counts(train), "val": train_counts(val),
                 "val_split": ("from the manifest" if is_manifest(data_root)
                               else "grouped by part" if cfg.data.grouped_split else "stratified by photo"),
                 "skipped": [str(e) for e in skipped]},
        "epochs_run": len(trained.history),
        "best_epoch": trained.best_epoch,
        "steps": trained.steps,
        "schedule_cut_to_time": trained.schedule.cut,
        "train_seconds": seconds,
        "parameters": count_parameters(model),
        "flops": count_flops(model, cfg.model.input_size),
        "bf16": trained.bf16,
        **({"distributed": {"processes": world.size, "backend": world.backend}} if world.distributed else {}),
        **({"distilled_from": {"model": teacher.model_id, "alpha": teacher.alpha, "temperature": teacher.temperature}}
           if teacher is not None else {}),
        "threshold_rule": ("none: no OK class" if ok_index is None else "0.5" if tc.target_recall is None
                           else f"validation recall >= {tc.target_recall}"),
        # the training curves travel with the model, for any later report of it
        "history": [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}
                    for row in trained.history],
        # what the training photos looked like, for the image-quality checks (``data.quality``)
        "quality_reference": fit_reference(data.sets["train"].paths, seed=cfg.data.split_seed).to_dict(),
    }
    ckpt = Checkpoint(cfg, classes, ok_index, threshold,
                      {k: v.contiguous() for k, v in model.state_dict().items()}, info, temperature,
                      familiarity.to_state() if familiarity is not None else None)
    save_checkpoint(ckpt, run_dir / "model.ckpt")
    return TrainResult(run_dir, ckpt, trained.history, val, skipped, seconds)


def operating_point(logits: np.ndarray, labels: np.ndarray, ok_index: int | None, calibrate: bool = True,
                    target_recall: float | None = None) -> tuple[float, float]:
    """(temperature, threshold), both chosen on the validation photos' ``logits`` and ``labels``:
    temperature scaling, then the highest threshold whose defect recall on validation is >=
    target_recall (0.5 without a target)."""
    temperature = fit_temperature(logits, labels) if calibrate else 1.0
    if target_recall is None or ok_index is None:
        return temperature, 0.5
    p_defect = defect_probability(softmax(logits, temperature), ok_index)
    return temperature, choose_threshold((labels != ok_index).astype(int), p_defect, target_recall)


def model_familiarity(model: torch.nn.Module, train: Decoded, val_embeddings: np.ndarray, share: float,
                      bank: int, seed: int = 0):
    """The familiarity model (``inference.familiarity``) of a trained model: its bank from the
    embeddings of up to FIT_PHOTOS training photos (a seeded draw), calibrated on the validation
    photos' ``val_embeddings``; None without validation photos."""
    if not len(val_embeddings) or not len(train.labels):
        return None
    pick = np.sort(np.random.default_rng(seed).permutation(len(train.labels))[:FIT_PHOTOS])
    return fit_familiarity(predict_outputs(model, train.images[pick])[1], val_embeddings, share, bank, seed)


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir}: exists and is not a folder")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise FileExistsError(f"{run_dir}: folder is not empty (use another --out, or --resume)")
    run_dir.mkdir(parents=True, exist_ok=True)


def write_split(run_dir: Path, train: Decoded, val: Decoded) -> None:
    """RUN_DIR/split.csv: the run's training and validation photos as a manifest, so the exact
    validation photos can be re-evaluated later (``castinspect evaluate RUN_DIR/split.csv --split
    val --robustness``) and a test split checked against the photos fitted."""
    write_manifest(run_dir / "split.csv", [
        {"path": os.path.abspath(p), "label": part.classes[y], "split": name, "group": ""}
        for name, part in (("train", train), ("val", val)) for p, y in zip(part.paths, part.labels)])


def write_history(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}
                         for row in history)
