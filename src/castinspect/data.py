"""Folder-of-classes datasets, splits and the decoded-image cache.

The layout is Kaggle's: ``ROOT/{train,test}/<class>/<image>``; a folder that directly holds class
folders works too. Images are decoded once (by ``io.load_for_model``) into one uint8 array, so
epochs never touch a JPEG again.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from castinspect.io import ImageError, is_image_name, load_for_model


@dataclass
class ImageSet:
    """Image paths with integer labels indexing ``classes``."""

    paths: list[str]
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: np.ndarray | list[int]) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)
        return ImageSet([self.paths[i] for i in idx], self.labels[idx], self.classes)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


@dataclass
class Decoded:
    """An ImageSet decoded to model input; files that failed are left out and listed in ``errors``."""

    images: np.ndarray  # (N, S, S) uint8
    labels: np.ndarray
    classes: list[str]
    paths: list[str]
    errors: list[ImageError] = field(default_factory=list)


def class_folders(root: Path) -> list[str]:
    """Sub-folders of ``root`` that hold at least one image, sorted by name."""
    return sorted(
        d.name for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".")
        and any(is_image_name(f) for f in d.iterdir() if f.is_file())
    )


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """``ROOT/split`` in the Kaggle layout; ``ROOT`` itself when it holds class folders directly."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    candidate = root / split
    if candidate.is_dir():
        return candidate
    if split == "train" and class_folders(root):
        return root
    raise FileNotFoundError(f"{root}: no '{split}' folder with class sub-folders")


def load_folder(root: str | os.PathLike, classes: list[str] | None = None) -> ImageSet:
    """List the images under ``root/<class>/``; ``classes`` fixes the label order (a model's)."""
    root = Path(root)
    found = class_folders(root)
    if not found:
        raise FileNotFoundError(f"{root}: no class folders with images")
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(f"{root}: class folders {unknown} are not among the model's {classes}")
    paths: list[str] = []
    labels: list[int] = []
    for i, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(f for f in folder.iterdir() if f.is_file() and is_image_name(f))
        paths += [str(f) for f in files]
        labels += [i] * len(files)
    return ImageSet(paths, np.asarray(labels, dtype=np.int64), list(classes))


MANIFEST_FIELDS = ["path", "label", "split", "group"]


def is_manifest(source: str | os.PathLike) -> bool:
    """A split manifest (CSV written by ``castinspect split``) rather than a folder."""
    return str(source).lower().endswith(".csv") and Path(source).is_file()


def read_manifest(path: str | os.PathLike, split: str, classes: list[str] | None = None) -> ImageSet:
    """The rows of one split; labels index ``classes`` (default: every label in the manifest)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = set(MANIFEST_FIELDS[:3]) - set(rows[0] if rows else MANIFEST_FIELDS)
    if missing or not rows:
        raise ValueError(f"{path}: not a castinspect manifest (columns path,label,split,group expected)")
    classes = classes or sorted({r["label"] for r in rows})
    chosen = [r for r in rows if r["split"] == split]
    unknown = sorted({r["label"] for r in chosen} - set(classes))
    if unknown:
        raise ValueError(f"{path}: labels {unknown} are not among the model's {classes}")
    base = Path(path).parent  # relative paths are relative to the manifest
    return ImageSet([str(base / r["path"]) if not os.path.isabs(r["path"]) else r["path"] for r in chosen],
                    np.array([classes.index(r["label"]) for r in chosen], dtype=np.int64), classes)


def write_manifest(path: str | os.PathLike, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


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


def decode_set(images: ImageSet, size: int, strict: bool = False, workers: int | None = None) -> Decoded:
    """Decode and resize every image once. Unreadable files are collected (or raised if strict).

    Threads run truly in parallel here: OpenCV releases the GIL while it decodes and resizes.
    """
    workers = workers or min(8, os.cpu_count() or 1)

    def load(path: str) -> np.ndarray | ImageError:
        try:
            return load_for_model(path, size)
        except ImageError as exc:
            return exc

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(load, images.paths))
    errors = [r for r in results if isinstance(r, ImageError)]
    if errors and strict:
        raise errors[0]
    keep = [i for i, r in enumerate(results) if not isinstance(r, ImageError)]
    stack = np.stack([results[i] for i in keep]) if keep else np.zeros((0, size, size), np.uint8)
    return Decoded(stack, images.labels[keep], images.classes, [images.paths[i] for i in keep], errors)
