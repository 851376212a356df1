"""Dataset audit: exact and near-duplicate photos within and across splits (``parts``),
unreadable files, class balance, image sizes and modes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from castinspect.core.io import ImageError, is_image_name
from castinspect.data.datasets import class_folders
from castinspect.data.parts import (
    DEFAULT_THRESHOLD,
    Pair,
    duplicate_pairs,
    fingerprints,
    groups,
)


@dataclass
class AuditImage:
    path: str
    split: str
    label: str
    sha256: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    error: str | None = None


@dataclass
class AuditResult:
    images: list[AuditImage]
    pairs: list[Pair] = field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD


def scan(root: str | os.PathLike) -> list[AuditImage]:
    """Every image file under ROOT/<split>/<class>/ (or ROOT/<class>/, as split "all")."""
    root = Path(root)
    splits = [d for d in sorted(root.iterdir()) if d.is_dir() and class_folders(d)] if root.is_dir() else []
    if not splits and root.is_dir() and class_folders(root):
        splits = [root]
    if not splits:
        raise FileNotFoundError(f"{root}: no class folders with images")
    out = []
    for split_dir in splits:
        split = "all" if split_dir == root else split_dir.name
        for cls in class_folders(split_dir):
            for f in sorted((split_dir / cls).iterdir()):
                if f.is_file() and is_image_name(f):
                    out.append(AuditImage(str(f), split, cls))
    return out


def audit(root: str | os.PathLike, threshold: float = DEFAULT_THRESHOLD, workers: int | None = None) -> AuditResult:
    images = scan(root)
    prints = fingerprints([im.path for im in images], workers)
    for im, p in zip(images, prints):
        if isinstance(p, ImageError):
            im.error = p.reason
        else:
            im.sha256, im.width, im.height, im.mode = p.sha256, p.width, p.height, p.mode
    return AuditResult(images, duplicate_pairs(prints, threshold), threshold)


def summarize(result: AuditResult) -> dict:
    """The audit as JSON-ready numbers. Cross-split counts are files of every other split (test,
    val, ...) that have a copy in ``train``: the leak that inflates a test score."""
    imgs = result.images
    splits = sorted({m.split for m in imgs})
    ref = "train" if "train" in splits else splits[0]
    exact_x: set[int] = set()
    near_x: set[int] = set()
    near_within: dict[str, set[int]] = {s: set() for s in splits}
    exact_within: dict[str, set[int]] = {s: set() for s in splits}
    for p in result.pairs:
        sa, sb = imgs[p.a].split, imgs[p.b].split
        if sa == sb:
            near_within[sa].update((p.a, p.b))
            if p.exact:
                exact_within[sa].update((p.a, p.b))
            continue
        for query, other in ((p.a, p.b), (p.b, p.a)):
            if imgs[query].split != ref and imgs[other].split == ref:
                near_x.add(query)
                if p.exact:
                    exact_x.add(query)
    counts: dict[str, dict[str, int]] = {}
    sizes: dict[str, int] = {}
    modes: dict[str, int] = {}
    for m in imgs:
        counts.setdefault(m.split, {}).setdefault(m.label, 0)
        counts[m.split][m.label] += 1
        if m.error is None:
            sizes[f"{m.width}x{m.height}"] = sizes.get(f"{m.width}x{m.height}", 0) + 1
            modes[m.mode] = modes.get(m.mode, 0) + 1
    group_ids = groups(len(imgs), result.pairs)
    return {
        "images": len(imgs),
        "reference_split": ref,
        "threshold": result.threshold,
        "class_counts": counts,
        "sizes": sizes,
        "modes": modes,
        "unreadable": [{"path": m.path, "reason": m.error} for m in imgs if m.error],
        "exact_cross_split": len(exact_x),
        "near_cross_split": len(near_x),
        "exact_within_split": {s: len(v) for s, v in exact_within.items()},
        "near_within_split": {s: len(v) for s, v in near_within.items()},
        "groups": int(group_ids.max() + 1) if len(imgs) else 0,
        "group_size_median": float(np.median(np.bincount(group_ids))) if len(imgs) else 0.0,
        "group_size_max": int(np.bincount(group_ids).max()) if len(imgs) else 0,
        # the same part under two labels: label noise, or a defect some views do not show
        "label_conflicts": sum(1 for p in result.pairs if imgs[p.a].label != imgs[p.b].label),
        "pairs": [{"a": imgs[p.a].path, "b": imgs[p.b].path, "split_a": imgs[p.a].split,
                   "split_b": imgs[p.b].split, "label_a": imgs[p.a].label, "label_b": imgs[p.b].label,
                   "score": round(p.score, 5), "exact": p.exact}
                  for p in sorted(result.pairs, key=lambda p: -p.score)],
    }
