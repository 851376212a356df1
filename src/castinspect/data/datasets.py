"""Labelled photos: folders of classes and split manifests, decoded once into one array.

The layout is Kaggle's: ``ROOT/{train,test}/<class>/<image>``; a folder that directly holds class
folders works too, and so does a manifest (CSV: path, label, split, group) written by
``castinspect split``. Images are decoded once (``locate.prepare``, through the one parallel
decoder) into one uint8 array, so epochs never touch a JPEG again.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from castinspect.core.io import ImageError, is_image_name, read_photo
from castinspect.core.parallel import decode_all
from castinspect.data.locate import prepare


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
    reasons: list[list[str]] | None = None  # per photo, what ``decode_set``'s ``check`` named


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


def images_in(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(f for f in folder.iterdir() if f.is_file() and is_image_name(f))


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
        files = images_in(folder)
        paths += [str(f) for f in files]
        labels += [i] * len(files)
    return ImageSet(paths, np.asarray(labels, dtype=np.int64), list(classes))


MANIFEST_FIELDS = ["path", "label", "split", "group"]


def is_manifest(source: str | os.PathLike) -> bool:
    """A split manifest (CSV written by ``castinspect split``) rather than a folder."""
    return str(source).lower().endswith(".csv") and Path(source).is_file()


def manifest_rows(path: str | os.PathLike) -> list[dict]:
    """Every row of a manifest (path, label, split, group), its paths as the manifest means them
    (relative paths are relative to the manifest)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = set(MANIFEST_FIELDS[:3]) - set(rows[0] if rows else MANIFEST_FIELDS)
    if missing or not rows:
        raise ValueError(f"{path}: not a castinspect manifest (columns path,label,split,group expected)")
    base = Path(path).parent
    return [{**{k: r.get(k, "") for k in MANIFEST_FIELDS},
             "path": str(base / r["path"]) if not os.path.isabs(r["path"]) else r["path"]} for r in rows]


def read_manifest(path: str | os.PathLike, split: str, classes: list[str] | None = None) -> ImageSet:
    """The rows of one split; labels index ``classes`` (default: every label in the manifest)."""
    rows = manifest_rows(path)
    classes = classes or sorted({r["label"] for r in rows})
    chosen = [r for r in rows if r["split"] == split]
    unknown = sorted({r["label"] for r in chosen} - set(classes))
    if unknown:
        raise ValueError(f"{path}: labels {unknown} are not among the model's {classes}")
    return ImageSet([r["path"] for r in chosen],
                    np.array([classes.index(r["label"]) for r in chosen], dtype=np.int64), classes)


def write_manifest(path: str | os.PathLike, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def decode_set(images: ImageSet, size: int, strict: bool = False, workers: int | None = None,
               locate: bool = False, check: Callable[[np.ndarray, float], list[str] | None] | None = None) -> Decoded:
    """Decode every image once, as a model of input ``size`` sees it (cropped to its part with
    ``locate``). Unreadable files are collected (or raised if strict). ``check`` (e.g. a
    predictor's ``quality_reasons``) is applied to each full decoded photo and its colourfulness
    (``core.io.read_photo``), its answers kept in ``reasons``."""
    def load(path: str) -> tuple[np.ndarray, list[str]]:
        gray, colour = read_photo(path)
        return prepare(gray, size, locate), (check(gray, colour) or []) if check is not None else []

    results = decode_all(load, images.paths, workers)
    errors = [r for r in results if isinstance(r, ImageError)]
    if errors and strict:
        raise errors[0]
    keep = [i for i, r in enumerate(results) if not isinstance(r, ImageError)]
    stack = np.stack([results[i][0] for i in keep]) if keep else np.zeros((0, size, size), np.uint8)
    return Decoded(stack, images.labels[keep], images.classes, [images.paths[i] for i in keep], errors,
                   [results[i][1] for i in keep] if check is not None else None)


def load_split(source: str | os.PathLike, split: str, classes: list[str] | None = None) -> ImageSet:
    """One split of a dataset: a manifest's rows of that split, or the folder ``ROOT/split``
    (``ROOT`` itself for "train" when it holds class folders directly)."""
    if is_manifest(source):
        return read_manifest(source, split, classes)
    return load_folder(split_dir(source, split), classes)
