"""fit(cfg, data_root, run_dir): train a model and leave a run directory behind.

RUN_DIR/config.yaml  split.csv (train/val manifest)  history.csv  model.ckpt (best on validation)
        last.ckpt (resume)
metrics.json and report.html are added by ``run.finish_run`` once the model is evaluated.

The validation split is carved from ``train`` and is the only data that steers training: early
stopping, the best checkpoint and the threshold. The test split is never read here.
"""

from __future__ import annotations

import copy
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
from castinspect.core.io import ImageError, read_image
from castinspect.core.runtime import (
    seed_everything,
    set_threads,
    training_device,
    tune_allocator,
)
from castinspect.data.augment import augment_batch
from castinspect.data.datasets import (
    Decoded,
    decode_set,
    is_manifest,
    load_folder,
    load_split,
    read_manifest,
    split_dir,
    write_manifest,
)
from castinspect.data.split import stratified_group_split, stratified_split
from castinspect.evaluation.metrics import choose_threshold, fit_temperature
from castinspect.models.checkpoint import Checkpoint, load_resume_state, save_checkpoint
from castinspect.models.network import (
    count_flops,
    count_parameters,
    predict_logits,
    predict_probs,
    softmax,
    to_input,
)
from castinspect.models.registry import bf16_training, build_model, resolve

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
    def step(self, loss: float, acc: float) -> None: ...
    def epoch(self, row: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


def schedule_length(epochs: int, patience: int, steps_per_epoch: int, min_steps: int,
                    max_steps: int = 0) -> tuple[int, int]:
    """(epochs, patience) stretched by the same factor so a run makes at least ``min_steps`` steps,
    or shrunk so it makes at most ``max_steps`` (0: no cap; never below one epoch)."""
    steps = epochs * steps_per_epoch
    if max_steps and steps > max_steps:
        shrink = max_steps / steps
        return max(1, math.floor(epochs * shrink)), max(1, math.ceil(patience * shrink))
    stretch = max(1.0, min_steps / steps)
    return math.ceil(epochs * stretch), math.ceil(patience * stretch)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def resolve_locate(cfg: Config, data_root: str | os.PathLike, sample: int = 200) -> Config:
    """``cfg`` with ``data.locate: auto`` decided: on when a part stands on a background in nearly
    every one of (up to ``sample``) training photos, off otherwise (a texture, a strip)."""
    from castinspect.core.parallel import decode_all
    from castinspect.data.locate import AUTO_SHARE, MODES, located_share

    if cfg.data.locate not in MODES:
        raise ValueError(f"data.locate must be one of {', '.join(MODES)}, not {cfg.data.locate!r}")
    if cfg.data.locate != "auto":
        return cfg
    paths = load_split(data_root, "train").paths
    pick = np.random.default_rng(cfg.data.split_seed).permutation(len(paths))[:sample]
    photos = [p for p in decode_all(read_image, [paths[i] for i in pick]) if not isinstance(p, ImageError)]
    out = copy.deepcopy(cfg)
    out.data.locate = "on" if located_share(photos) >= AUTO_SHARE else "off"
    return out


def split_train_val(cfg: Config, data_root: str | os.PathLike) -> tuple[Decoded, Decoded, list[ImageError]]:
    """Decoded training and validation photos: a manifest's train and val rows as written, or a
    validation split carved from a folder's ``train`` photos (grouped by part by default).
    ``cfg.data.locate`` must be resolved ("on" or "off": ``resolve_locate``)."""
    if cfg.data.locate not in ("on", "off"):
        raise ValueError(f"data.locate must be resolved to on or off here, not {cfg.data.locate!r}")
    locate = cfg.data.locate == "on"
    if is_manifest(data_root):
        train_set = read_manifest(data_root, "train")
        train = decode_set(train_set, cfg.model.input_size, strict=cfg.data.strict, locate=locate)
        val = decode_set(read_manifest(data_root, "val", train_set.classes), cfg.model.input_size, locate=locate,
                         strict=cfg.data.strict)
        if not len(train.labels) or not len(val.labels):
            raise ValueError(f"{data_root}: the manifest needs readable train and val rows")
        return train, val, train.errors + val.errors
    images = load_folder(split_dir(data_root, "train"))
    decoded = decode_set(images, cfg.model.input_size, strict=cfg.data.strict, locate=locate)
    if cfg.data.grouped_split:
        from castinspect.data.parts import group_photos

        groups = group_photos(decoded.paths)
        keep, held = stratified_group_split(decoded.labels, groups, cfg.data.val_fraction, cfg.data.split_seed)
    else:
        keep, held = stratified_split(decoded.labels, cfg.data.val_fraction, cfg.data.split_seed)
    if len(held) == 0 or len(keep) == 0:
        raise ValueError("too few readable training images to carve a validation split")

    def part(idx: np.ndarray) -> Decoded:
        return Decoded(decoded.images[idx], decoded.labels[idx], decoded.classes,
                       [decoded.paths[i] for i in idx])

    return part(keep), part(held), decoded.errors


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics.

    When on (``train.ema_decay`` > 0) it is validated, kept and shipped instead of the last step's
    weights: on parts the model has not seen, single-step weights can swing widely from epoch to
    epoch; the average does not. The decay ramps up over the first steps so a short run is not dominated
    by its random initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, new in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(new, 1 - d)
            else:
                avg.copy_(new)  # e.g. BatchNorm's batch counter


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, x_train: torch.Tensor,
                    y_train: torch.Tensor, cfg: Config, g: torch.Generator, bf16: bool,
                    progress: Progress, average: WeightAverage | None = None) -> tuple[float, float]:
    """One pass over the shuffled, augmented training images; returns (mean loss, accuracy)."""
    model.train()
    batch_size = cfg.train.batch_size
    order = torch.randperm(len(y_train), generator=g)
    loss_sum, correct = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        device = next(model.parameters()).device
        x = augment_batch(to_input(x_train[idx]), cfg.augment, g)  # on the CPU: its generator is the run's
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        y = y_train[idx].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.train.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if average is not None:
            average.update(model)
        batch_correct = int((logits.argmax(1) == y).sum())
        loss_sum += loss.item() * len(idx)
        correct += batch_correct
        progress.step(loss.item(), batch_correct / len(idx))
    return loss_sum / len(y_train), correct / len(y_train)


def validate(model: torch.nn.Module, val: Decoded) -> tuple[float, float]:
    """(cross-entropy, accuracy) on the validation split."""
    probs = torch.from_numpy(predict_probs(model, val.images))
    labels = torch.from_numpy(val.labels)
    loss = F.nll_loss(torch.log(probs.clamp_min(1e-7)), labels)
    return float(loss), float((probs.argmax(1) == labels).float().mean())


def fit(cfg: Config, data_root: str | os.PathLike, run_dir: str | os.PathLike,
        resume: bool = False, progress: Progress | None = None) -> TrainResult:
    progress = progress or Progress()
    if cfg.train.epochs < 1:
        raise ValueError("epochs must be at least 1")
    t_start = time.perf_counter()
    tune_allocator()
    set_threads(cfg.train.threads)
    g = seed_everything(cfg.train.seed, cfg.train.deterministic)
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, resume)
    cfg.save(run_dir / "config.yaml")

    located = cfg.data.locate == "auto"
    cfg = resolve_locate(cfg, data_root)
    if located:
        progress.message(f"part localisation: {cfg.data.locate} (data.locate auto)")
    train, val, skipped = split_train_val(cfg, data_root)
    auto = cfg.model.backbone == "auto"
    cfg = resolve(cfg)  # the config saved says what was trained: backbone, mirror averaging, size
    cfg.save(run_dir / "config.yaml")
    if auto:
        progress.message(f"backbone: {cfg.model.backbone} ({len(train.labels)} training photos)")
    # The split as a manifest, so the exact validation photos can be re-evaluated later
    # (e.g. `castinspect evaluate RUN_DIR/split.csv --split val --robustness`).
    write_manifest(run_dir / "split.csv", [
        {"path": os.path.abspath(p), "label": part.classes[y], "split": name, "group": ""}
        for name, part in (("train", train), ("val", val)) for p, y in zip(part.paths, part.labels)])
    for err in skipped:
        progress.message(f"skipped {err}")
    classes = train.classes
    ok_index = resolve_ok_index(classes, cfg.data.positive_class, cfg.data.ok_class)
    if ok_index is None:
        if cfg.train.target_recall is not None:
            raise ValueError(f"--target-recall: the classes {classes} have no OK class, so there is no "
                             "p(defect) to set a threshold on (set data.ok_class if one of them is)")
        progress.message(f"no OK class among {classes}: the model classifies the defect type")

    device = training_device(cfg.train.device)
    model = build_model(cfg.model, len(classes), pretrained=True).to(device, memory_format=torch.channels_last)
    bf16 = bf16_training(cfg) and device.type == "cpu"  # (AMX is a CPU's; a GPU trains in fp32 here)
    tc = cfg.train
    steps_per_epoch = math.ceil(len(train.labels) / tc.batch_size)
    epochs, patience = schedule_length(tc.epochs, tc.patience, steps_per_epoch, tc.min_steps, tc.max_steps)
    if epochs != tc.epochs:
        progress.message(f"schedule: {epochs} epochs of {steps_per_epoch} steps, not {tc.epochs} "
                         f"(train.min_steps {tc.min_steps}, train.max_steps {tc.max_steps})")
    total_steps = steps_per_epoch * epochs
    warmup = int(tc.warmup_epochs * steps_per_epoch * epochs / tc.epochs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup))

    average = WeightAverage(model, tc.ema_decay) if tc.ema_decay > 0 else None
    history: list[dict] = []
    best_loss, best_state, stale, start_epoch = math.inf, None, 0, 0
    if resume and (run_dir / "last.ckpt").exists():
        state = load_resume_state(run_dir / "last.ckpt")
        model.load_state_dict(state["model"])
        if average is not None and state.get("average") is not None:
            average.model.load_state_dict(state["average"])
            average.updates = state["average_updates"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        g.set_state(state["generator"])
        history, best_loss, stale = state["history"], state["best_loss"], state["stale"]
        best_state, start_epoch = state["best_state"], state["epoch"]
        progress.message(f"resuming after epoch {start_epoch}")

    x_train, y_train = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    selects = len(val.labels) >= tc.min_val_to_select
    if not selects:
        progress.message(f"validation holds {len(val.labels)} photos (< {tc.min_val_to_select}): "
                         "no early stopping or calibration; the last weights are kept")
    progress.start(epochs, steps_per_epoch)
    save_every = math.ceil(20 / steps_per_epoch)
    for epoch in range(start_epoch, epochs):
        if stale >= patience:
            break
        t_epoch = time.perf_counter()
        train_loss, train_acc = train_one_epoch(model, optimizer, scheduler, x_train, y_train, cfg, g, bf16,
                                                progress, average)
        # The model that would ship (the weight average, when on) is validated in fp32, as the
        # Predictor will run it: the checkpoint is chosen on the numbers it will actually produce.
        shipped = average.model if average is not None else model
        val_loss, val_acc = validate(shipped, val)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": train_loss,
               "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
               "seconds": time.perf_counter() - t_epoch}
        history.append(row)
        if not selects:
            pass  # the last weights are kept (below)
        elif val_loss < best_loss:
            best_loss, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in shipped.state_dict().items()}
        else:
            stale += 1
        progress.epoch(row)
        # On a tiny dataset an epoch is a step or two: keep the resume state every ~20 steps.
        if (epoch + 1) % save_every and epoch + 1 < epochs and stale < patience:
            continue
        write_history(run_dir / "history.csv", history)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "average": average.model.state_dict() if average is not None else None,
                    "average_updates": average.updates if average is not None else 0,
                    "scheduler": scheduler.state_dict(), "generator": g.get_state(),
                    "history": history, "best_loss": best_loss, "stale": stale,
                    "best_state": best_state, "epoch": epoch + 1}, run_dir / "last.ckpt")
    progress.close()

    if not selects:
        best_state = (average.model if average is not None else model).state_dict()
    model.load_state_dict(best_state)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    temperature, threshold = operating_point(model, val, ok_index, tc.calibrate and selects, tc.target_recall)
    seconds = time.perf_counter() - t_start
    info = {
        "data": {"root": str(data_root), "train": train_counts(train), "val": train_counts(val),
                 "val_split": ("from the manifest" if is_manifest(data_root)
                               else "grouped by part" if cfg.data.grouped_split else "stratified by photo"),
                 "skipped": [str(e) for e in skipped]},
        "epochs_run": len(history),
        "best_epoch": int(np.argmin([h["val_loss"] for h in history]) + 1) if selects else len(history),
        "train_seconds": seconds,
        "parameters": count_parameters(model),
        "flops": count_flops(model, cfg.model.input_size),
        "bf16": bf16,
        "threshold_rule": ("none: no OK class" if ok_index is None else "0.5" if tc.target_recall is None
                           else f"validation recall >= {tc.target_recall}"),
        # the training curves travel with the model, for any later report of it
        "history": [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in history],
    }
    ckpt = Checkpoint(cfg, classes, ok_index, threshold,
                      {k: v.contiguous() for k, v in model.state_dict().items()}, info, temperature)
    save_checkpoint(ckpt, run_dir / "model.ckpt")
    return TrainResult(run_dir, ckpt, history, val, skipped, seconds)


def operating_point(model: torch.nn.Module, val: Decoded, ok_index: int | None, calibrate: bool = True,
                    target_recall: float | None = None) -> tuple[float, float]:
    """(temperature, threshold), both chosen on validation: temperature scaling, then the highest
    threshold whose defect recall on validation is >= target_recall (0.5 without a target)."""
    logits = predict_logits(model, val.images)
    temperature = fit_temperature(logits, val.labels) if calibrate else 1.0
    if target_recall is None or ok_index is None:
        return temperature, 0.5
    p_defect = defect_probability(softmax(logits, temperature), ok_index)
    return temperature, choose_threshold((val.labels != ok_index).astype(int), p_defect, target_recall)


def train_counts(part: Decoded) -> dict[str, int]:
    return {c: int((part.labels == i).sum()) for i, c in enumerate(part.classes)}


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir}: exists and is not a folder")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise FileExistsError(f"{run_dir}: folder is not empty (use another --out, or --resume)")
    run_dir.mkdir(parents=True, exist_ok=True)


def write_history(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}
                         for row in history)
