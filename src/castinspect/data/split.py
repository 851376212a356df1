"""Splits: stratified by class and seeded, by photo or by whole groups (photos of one part).

``make_split`` pools all photos under a dataset root (whatever splits it came with), groups the
photos of each physical part (``parts.group_photos``), and deals whole groups out to test, val
and train, class by class. The result is a manifest that ``train`` and ``evaluate`` accept.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from castinspect.data.audit import scan
from castinspect.data.datasets import write_manifest
from castinspect.data.parts import DEFAULT_THRESHOLD, group_photos


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split keeping each class's share: returns (keep_idx, held_out_idx), both sorted."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = int(round(len(idx) * fraction))
        if 0 < fraction and len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)  # every class on both sides when it can be
        held.append(rng.permutation(idx)[:n])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    keep_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
    return keep_idx, held_idx


def stratified_group_split(labels: np.ndarray, groups: np.ndarray, fraction: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Like ``stratified_split``, but whole groups (photos of one part) go to one side.

    Groups are shuffled (seeded) and, class by class (a group's class is its most common label),
    taken into the held-out side until that class's share is reached.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    ids, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    # a group's class: its most common label (counts of each label per group, then argmax)
    per_class = np.zeros((len(ids), labels.max() + 1 if len(labels) else 1), dtype=np.int64)
    np.add.at(per_class, (inverse, labels), 1)
    group_class = per_class.argmax(axis=1)
    order = np.random.default_rng(seed).permutation(len(ids))
    held_groups: list[int] = []
    for c in np.unique(labels):
        target = fraction * (labels == c).sum()
        taken = 0
        for k in order:
            if group_class[k] != c or taken >= target:
                continue
            if taken + sizes[k] > 1.5 * target and taken > 0:
                continue  # a group this big would overshoot: try a smaller one
            held_groups.append(ids[k])
            taken += sizes[k]
    held = np.isin(groups, held_groups)
    return np.flatnonzero(~held), np.flatnonzero(held)


def make_split(root: str | os.PathLike, out: str | os.PathLike, val_fraction: float = 0.15,
               test_fraction: float = 0.2, seed: int = 0, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Write the manifest ``out`` (CSV: path, label, split, group); return counts per split."""
    images = scan(root)
    paths = [im.path for im in images]
    classes = sorted({im.label for im in images})
    labels = np.array([classes.index(im.label) for im in images])
    groups = group_photos(paths, threshold)
    rest, test = stratified_group_split(labels, groups, test_fraction, seed)
    # val is carved from what test left, so its share of the rest is scaled up
    keep, val = stratified_group_split(labels[rest], groups[rest], val_fraction / (1 - test_fraction), seed + 1)
    split = np.full(len(paths), "train", dtype=object)
    split[test] = "test"
    split[rest[val]] = "val"
    out = Path(out)
    base = out.resolve().parent
    rows = [{"path": os.path.relpath(Path(p).resolve(), base), "label": images[i].label,
             "split": split[i], "group": int(groups[i])} for i, p in enumerate(paths)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(out, rows)
    counts = {s: {**{c: int(((split == s) & (labels == k)).sum()) for k, c in enumerate(classes)},
                  "groups": len(np.unique(groups[split == s]))} for s in ("train", "val", "test")}
    return {"manifest": str(out), "groups": int(groups.max() + 1), "counts": counts}
