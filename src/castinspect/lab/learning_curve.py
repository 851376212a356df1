"""How many labelled photos does a foundry need? Train on growing subsets, test on unseen parts.

    castinspect learning-curve DATA_ROOT --out DIR

1. One leak-free split of the whole dataset (``split.make_split``, whatever splits it came with):
   the photos of each physical part stay on one side, and the test side is fixed for every run.
2. For each size N, N photos drawn from the training side (stratified by class, seeded; the
   subsets of one seed are nested, so a bigger subset only adds photos). At small sizes (<= 200
   photos by default) each size is trained with several seeds and the mean is reported.
3. Each subset is trained with the default recipe (its own grouped validation split, carved from
   the N photos, chooses the checkpoint) and judged on the fixed test parts.

Every run lives in DIR/<backbone>/n<N>_s<seed>/ (manifest, model, metrics), so a curve can be
resumed: finished runs are read back instead of retrained.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from castinspect.core.config import Config
from castinspect.core.provenance import provenance
from castinspect.data.datasets import read_manifest, write_manifest
from castinspect.data.split import make_split, stratified_group_split
from castinspect.models.registry import choose

DEFAULT_SIZES = (50, 100, 200, 400, 800, 0)  # 0: every training photo
SUMMARY_KEYS = ("accuracy", "escapes", "false_rejects", "defect_recall", "false_reject_rate", "roc_auc")


@dataclass
class CurvePoint:
    backbone: str
    size: int
    seed: int
    val_accuracy: float
    test: dict
    train_seconds: float
    epochs_run: int


def draw_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` photos, each class in its share, nested across sizes for one seed."""
    rng = np.random.default_rng(seed)
    order = {c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    shares = {c: len(idx) / len(labels) for c, idx in order.items()}
    taken = {c: max(2, int(round(size * shares[c]))) for c in order}  # two per class at least
    return np.sort(np.concatenate([order[c][:taken[c]] for c in order]))


def run_point(manifest: Path, cfg: Config, size: int, seed: int, run_dir: Path,
              val_fraction: float) -> CurvePoint:
    """Train one subset (or read back a finished run) and judge it on the fixed test parts."""
    from castinspect.training.run import train_and_evaluate

    metrics_path = run_dir / "run" / "metrics.json"
    if not metrics_path.exists():
        rows = list(csv.DictReader(open(manifest, newline="")))
        base = manifest.resolve().parent
        pool = [r for r in rows if r["split"] != "test"]
        test = [r for r in rows if r["split"] == "test"]
        labels = np.array([r["label"] for r in pool])
        chosen = draw_subset(labels, size, seed) if size else np.arange(len(pool))
        sub = [pool[i] for i in chosen]
        keep, val = stratified_group_split(np.unique(labels, return_inverse=True)[1][chosen],
                                           np.array([int(r["group"]) for r in sub]), val_fraction, seed)
        split = np.full(len(sub), "train", dtype=object)
        split[val] = "val"
        run_dir.mkdir(parents=True, exist_ok=True)
        write_manifest(run_dir / "subset.csv", [
            {**r, "path": str((base / r["path"]).resolve()), "split": s} for r, s in zip(sub, split)
        ] + [{**r, "path": str((base / r["path"]).resolve())} for r in test])
        cfg = Config.from_dict(cfg.to_dict())
        cfg.train.seed = seed
        # resume: a run cut short (a stopped session) goes on from its last saved epoch
        train_and_evaluate(cfg, run_dir / "subset.csv", run_dir / "run", resume=True)
    m = json.loads(metrics_path.read_text())
    n = sum(1 for r in csv.DictReader(open(run_dir / "subset.csv", newline="")) if r["split"] != "test")
    return CurvePoint(cfg.model.backbone, n, seed, m["validation"]["accuracy"],
                      {k: m["test"][k] for k in ("n", *SUMMARY_KEYS)}, m["train_seconds"], m["epochs_run"])


def learning_curve(data_root: str | os.PathLike, out_dir: str | os.PathLike,
                   sizes: tuple[int, ...] = DEFAULT_SIZES, backbones: tuple[str, ...] = ("castnet", "efficientnet_lite0"),
                   seeds: int = 3, small: int = 200, test_fraction: float = 0.2,
                   base: Config | None = None, report: Callable[[str], None] = lambda s: None,
                   pretrained_seeds: int | None = None, pretrained_max: int = 0) -> dict:
    """The curve (see the module docstring). The pretrained backbone costs several times more per
    step on a CPU: ``pretrained_seeds`` and ``pretrained_max`` (largest subset, 0 = all) can trim
    its share."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "split.csv"
    if not manifest.exists():
        info = make_split(data_root, manifest, val_fraction=0.0, test_fraction=test_fraction)
        report(f"leak-free split: {info['counts']}")
    pool = read_manifest(manifest, "train")
    test = read_manifest(manifest, "test", pool.classes)
    sizes = tuple(sorted({s if 0 < s < len(pool) else 0 for s in sizes}, key=lambda s: s or math.inf))
    points: list[CurvePoint] = []
    val_fraction = (base or Config()).data.val_fraction
    curve: dict = {}
    for backbone in backbones:
        cfg = choose(base or Config(), backbone=backbone)
        pretrained = backbone != "castnet"
        n_seeds = pretrained_seeds if pretrained and pretrained_seeds is not None else seeds
        for size in sizes:
            if pretrained and pretrained_max and not 0 < size <= pretrained_max:
                continue
            for seed in range(n_seeds if 0 < size <= small else 1):
                run_dir = out_dir / backbone / f"n{size or 'all'}_s{seed}"
                point = run_point(manifest, cfg, size, seed, run_dir, val_fraction)
                points.append(point)
                report(f"{backbone} {point.size} photos seed {seed}: test accuracy "
                       f"{point.test['accuracy']:.4f}, {point.test['escapes']} escapes, "
                       f"{point.test['false_rejects']} false rejects ({point.train_seconds:.0f} s)")
                # Written after every point: a long curve cut short still leaves its results.
                curve = {"provenance": provenance(), "data": str(data_root), "test_photos": len(test), "test_counts": test.counts(),
                         "pool_photos": len(pool), "points": [p.__dict__ for p in points],
                         "mean": summarize_points(points)}
                (out_dir / "curve.json").write_text(json.dumps(curve, indent=2) + "\n")
                write_table(out_dir / "curve.csv", curve["mean"])
                plot_curve(out_dir / "curve.png", curve["mean"], len(test))
    return curve


def summarize_points(points: list[CurvePoint]) -> list[dict]:
    """Mean (and spread) over seeds for each backbone and size."""
    rows = []
    for backbone in dict.fromkeys(p.backbone for p in points):
        for size in sorted({p.size for p in points if p.backbone == backbone}):
            group = [p for p in points if p.backbone == backbone and p.size == size]
            acc = [p.test["accuracy"] for p in group]
            rows.append({"backbone": backbone, "photos": size, "seeds": len(group),
                         **{k: float(np.mean([p.test[k] for p in group])) for k in SUMMARY_KEYS},
                         "accuracy_min": min(acc), "accuracy_max": max(acc),
                         "val_accuracy": float(np.mean([p.val_accuracy for p in group])),
                         "train_seconds": float(np.mean([p.train_seconds for p in group]))})
    return rows


def write_table(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["backbone"])
        writer.writeheader()
        writer.writerows(rows)


def plot_curve(path: Path, rows: list[dict], test_n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for backbone in dict.fromkeys(r["backbone"] for r in rows):
        rs = [r for r in rows if r["backbone"] == backbone]
        x = [r["photos"] for r in rs]
        ax1.plot(x, [r["accuracy"] for r in rs], "o-", label=backbone)
        ax1.fill_between(x, [r["accuracy_min"] for r in rs], [r["accuracy_max"] for r in rs], alpha=0.2)
        ax2.plot(x, [r["escapes"] for r in rs], "o-", label=f"{backbone} escapes")
        ax2.plot(x, [r["false_rejects"] for r in rs], "s--", label=f"{backbone} false rejects")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("labelled training photos")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_ylabel(f"accuracy on {test_n} photos of unseen parts")
    ax2.set_ylabel("count (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
