"""The photos a run trains and validates on: split once, decoded once per input size.

A recipe search tries several input sizes and localisation settings on the same photos; the
split (which photos validate) is made once, on the first decode, and every later decode at
another size reuses it, so every trial is judged on the same validation parts.
"""

from __future__ import annotations

import copy
import os

import numpy as np

from castinspect.core.config import Config
from castinspect.core.io import ImageError, read_image
from castinspect.data.datasets import (
    Decoded,
    ImageSet,
    decode_set,
    is_manifest,
    load_folder,
    load_split,
    read_manifest,
    split_dir,
)
from castinspect.data.split import stratified_group_split, stratified_split


def resolve_locate(cfg: Config, data_root: str | os.PathLike, sample: int = 200) -> Config:
    """``cfg`` with ``data.locate: auto`` decided: on when a part stands on a background in nearly
    every one of (up to ``sample``) training photos, off otherwise (a texture, a strip)."""
    from castinspect.data.locate import MODES

    if cfg.data.locate not in MODES:
        raise ValueError(f"data.locate must be one of {', '.join(MODES)}, not {cfg.data.locate!r}")
    if cfg.data.locate != "auto":
        return cfg
    out = copy.deepcopy(cfg)
    out.data.locate = "on" if part_on_background(data_root, cfg.data.split_seed, sample) else "off"
    return out


def part_on_background(data_root: str | os.PathLike, seed: int = 0, sample: int = 200) -> bool:
    """Whether a part stands on a background in nearly every one of (up to ``sample``) training
    photos: where not (a texture, a strip), localisation has nothing to find."""
    from castinspect.core.parallel import decode_all
    from castinspect.data.locate import AUTO_SHARE, located_share

    paths = load_split(data_root, "train").paths
    pick = np.random.default_rng(seed).permutation(len(paths))[:sample]
    photos = [p for p in decode_all(read_image, [paths[i] for i in pick]) if not isinstance(p, ImageError)]
    return located_share(photos) >= AUTO_SHARE


def resolve_part_augmentation(cfg: Config, train: Decoded, progress=None, sample: int = 200) -> Config:
    """``cfg`` with ``augment.background`` and ``augment.exposure`` off where the training photos
    show no part on a background (a surface texture, a strip): there the brightness and texture
    around a defect may be what the defect is, and changing "the background" or clipping an
    over-exposed texture erases it. ``progress`` hears when they are turned off."""
    from castinspect.data.locate import AUTO_SHARE, located_share

    a = cfg.augment
    if a.background <= 0 and a.exposure <= 0:
        return cfg
    pick = np.random.default_rng(cfg.data.split_seed).permutation(len(train.images))[:sample]
    if located_share([train.images[i] for i in pick]) >= AUTO_SHARE:
        return cfg
    out = copy.deepcopy(cfg)
    out.augment.background = out.augment.exposure = 0.0
    if progress is not None:
        progress.message("background and exposure augmentation: off (no part stands on a background in these photos)")
    return out


class TrainingData:
    """A run's training and validation photos: a manifest's train and val rows as written, or a
    validation split carved from a folder's ``train`` photos (grouped by part by default), made
    on the first decode among the readable photos. ``decoded(size, locate)`` is cached."""

    def __init__(self, cfg: Config, data_root: str | os.PathLike, photos: ImageSet | None = None) -> None:
        self.data = cfg.data
        self.root = data_root
        self.manifest = is_manifest(data_root) and photos is None
        if photos is not None:  # photos listed by the caller (a folder of good photos with no classes)
            self.sets = {"all": photos}
        elif self.manifest:
            train = read_manifest(data_root, "train")
            self.sets = {"train": train, "val": read_manifest(data_root, "val", train.classes)}
        else:
            self.sets = {"all": load_folder(split_dir(data_root, "train"))}
        self.errors: list[ImageError] = []
        self._cache: dict[tuple[int, bool], tuple[Decoded, Decoded]] = {}

    def decoded(self, size: int, locate: bool) -> tuple[Decoded, Decoded]:
        key = (size, locate)
        if key not in self._cache:
            if not self._cache:
                self._cache[key] = self._first(size, locate)
            else:
                self._cache[key] = tuple(decode_set(s, size, locate=locate) for s in self.sets.values())
        return self._cache[key]

    def _first(self, size: int, locate: bool) -> tuple[Decoded, Decoded]:
        strict = self.data.strict
        if self.manifest:
            train, val = (decode_set(self.sets[s], size, strict=strict, locate=locate) for s in ("train", "val"))
            if not len(train.labels) or not len(val.labels):
                raise ValueError(f"{self.root}: the manifest needs readable train and val rows")
            self.errors = train.errors + val.errors
            self.sets = {"train": as_set(train), "val": as_set(val)}  # the readable rows
            return train, val
        decoded = decode_set(self.sets["all"], size, strict=strict, locate=locate)
        if self.data.grouped_split:
            from castinspect.data.parts import group_photos

            groups = group_photos(decoded.paths)
            keep, held = stratified_group_split(decoded.labels, groups, self.data.val_fraction, self.data.split_seed)
        else:
            keep, held = stratified_split(decoded.labels, self.data.val_fraction, self.data.split_seed)
        if len(held) == 0 or len(keep) == 0:
            raise ValueError("too few readable training images to carve a validation split")
        self.errors = decoded.errors
        parts = tuple(Decoded(decoded.images[idx], decoded.labels[idx], decoded.classes,
                              [decoded.paths[i] for i in idx]) for idx in (keep, held))
        self.sets = {"train": as_set(parts[0]), "val": as_set(parts[1])}
        return parts


def as_set(decoded: Decoded) -> ImageSet:
    return ImageSet(list(decoded.paths), decoded.labels, decoded.classes)


def split_train_val(cfg: Config, data_root: str | os.PathLike) -> tuple[Decoded, Decoded, list[ImageError]]:
    """Decoded training and validation photos (``TrainingData``) at the config's input size.
    ``cfg.data.locate`` must be resolved ("on" or "off": ``resolve_locate``)."""
    if cfg.data.locate not in ("on", "off"):
        raise ValueError(f"data.locate must be resolved to on or off here, not {cfg.data.locate!r}")
    data = TrainingData(cfg, data_root)
    train, val = data.decoded(cfg.model.input_size, cfg.data.locate == "on")
    return train, val, data.errors


def train_counts(part: Decoded) -> dict[str, int]:
    return {c: int((part.labels == i).sum()) for i, c in enumerate(part.classes)}
