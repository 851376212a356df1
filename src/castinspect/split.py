"""Leak-free train/val/test splits: every photo of one part on one side.

``make_split`` pools all photos under a dataset root (whatever splits it came with), groups the
photos of each physical part (``audit.group_photos``), and deals whole groups out to test, val
and train, class by class. The result is a manifest that ``train`` and ``evaluate`` accept.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from castinspect.audit import DEFAULT_THRESHOLD, group_photos, scan
from castinspect.data import stratified_group_split, write_manifest


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
