"""Folder-of-classes datasets, splits and the decoded-image cache.

The layout is Kaggle's: ``ROOT/{train,test}/<class>/<image>``; a folder that directly holds class
folders works too. Images are decoded once (by ``io.load_for_model``) into one uint8 array, so
epochs never touch a JPEG again.
"""

from __future__ import annotations

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
