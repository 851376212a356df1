"""Image-quality checks before the model: is this photo taken the way the training photos were?

Each photo gets a few plain measurements (``PhotoStats``): its size and aspect ratio,
sharpness (variance of the Laplacian over the photo's own variance, at a fixed working size, so
that cameras of any resolution and exposure compare), mean level and the shares of clipped
pixels, and how coloured the frame was. A ``QualityReference`` holds their ranges over the
training photos and travels with the model; ``QualityReference.reasons`` names what is out of
range, in short words: ``small``, ``aspect-distorted``, ``blurred``, ``overexposed``,
``underexposed``, ``colour`` (a colour photo where the training photos were grey). The margins keep photos like
the training ones clear of every check; a photo far outside is named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import cv2
import numpy as np

WORK_SIDE = 256  # sharpness is measured on the photo resized to this (longer side)
BRIGHT, DARK = 250, 5  # grey levels counted as clipped
LOW_Q, HIGH_Q = 0.5, 99.5  # percentiles of the training photos that bound what is usual
SHARP_Q = 1.0  # percentile of the training photos' sharpness that bounds it
SMALL = 0.5  # a shorter side below this share of the training photos' smallest is "small"
ASPECT_MARGIN = 1.1  # an aspect ratio this factor beyond the training range is distorted by the resize
SHARPNESS_MARGIN = 0.5  # sharper than this share of the training photos' least sharp is not "blurred"
LEVEL_MARGIN = 25.0  # grey levels beyond the training range of mean levels
CLIPPED_MARGIN = 0.05  # share of the frame beyond the training range of clipped shares
COLOUR_MARGIN = 8.0  # channel spread (grey levels) beyond the training photos' before a photo is "colour"


@dataclass(frozen=True)
class PhotoStats:
    width: int
    height: int
    sharpness: float
    mean: float
    bright: float  # share of pixels at or above BRIGHT
    dark: float  # share of pixels at or below DARK
    colour: float = 0.0  # ``core.io.colourfulness`` of the frame as stored


def photo_stats(gray: np.ndarray, colour: float = 0.0) -> PhotoStats:
    """The measurements of one decoded grey photo (full resolution, before any crop or resize);
    ``colour``: how coloured its frame was (``core.io.read_photo``)."""
    h, w = gray.shape
    scale = WORK_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    work = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    # Relative to the photo's own spread, so that a darker or flatter exposure is not "blurred".
    sharpness = float(cv2.Laplacian(work, cv2.CV_32F).var() / max(1.0, float(work.var())))
    return PhotoStats(width=w, height=h, sharpness=sharpness,
                      mean=float(gray.mean()), bright=float((gray >= BRIGHT).mean()),
                      dark=float((gray <= DARK).mean()), colour=float(colour))


@dataclass(frozen=True)
class QualityReference:
    """What the training photos looked like: the ranges a photo is checked against."""

    photos: int
    min_side: float
    aspect: tuple[float, float]  # width / height
    sharpness: float
    mean: tuple[float, float]
    bright: float
    dark: float
    colour: float | None = None  # None: fitted before colour was measured (not checked)

    @classmethod
    def fit(cls, stats: Iterable[PhotoStats]) -> "QualityReference":
        s = list(stats)
        if not s:
            raise ValueError("a quality reference needs at least one readable training photo")

        def q(values: list[float], pct: float) -> float:
            return float(np.percentile(values, pct))

        aspect = [p.width / p.height for p in s]
        mean = [p.mean for p in s]
        return cls(photos=len(s), min_side=float(min(min(p.width, p.height) for p in s)),
                   aspect=(q(aspect, LOW_Q), q(aspect, HIGH_Q)),
                   sharpness=q([p.sharpness for p in s], SHARP_Q),
                   mean=(q(mean, LOW_Q), q(mean, HIGH_Q)),
                   bright=q([p.bright for p in s], HIGH_Q), dark=q([p.dark for p in s], HIGH_Q),
                   colour=q([p.colour for p in s], HIGH_Q))

    def reasons(self, p: PhotoStats) -> list[str]:
        """What about photo ``p`` is unlike the training photos; empty when nothing is."""
        out = []
        if min(p.width, p.height) < SMALL * self.min_side:
            out.append("small")
        if not self.aspect[0] / ASPECT_MARGIN <= p.width / p.height <= self.aspect[1] * ASPECT_MARGIN:
            out.append("aspect-distorted")
        if p.sharpness < SHARPNESS_MARGIN * self.sharpness:
            out.append("blurred")
        if p.mean > self.mean[1] + LEVEL_MARGIN or p.bright > self.bright + CLIPPED_MARGIN:
            out.append("overexposed")
        if p.mean < self.mean[0] - LEVEL_MARGIN or p.dark > self.dark + CLIPPED_MARGIN:
            out.append("underexposed")
        if self.colour is not None and p.colour > self.colour + COLOUR_MARGIN:
            out.append("colour")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aspect"], d["mean"] = list(self.aspect), list(self.mean)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QualityReference":
        return cls(**{**d, "aspect": tuple(d["aspect"]), "mean": tuple(d["mean"])})


def fit_reference(paths: list[str], sample: int = 200, seed: int = 0) -> QualityReference:
    """The reference of (up to ``sample`` of) the training photos at ``paths``; unreadable ones
    are left out, as training leaves them out."""
    from castinspect.core.io import ImageError, read_photo
    from castinspect.core.parallel import decode_all

    pick = np.random.default_rng(seed).permutation(len(paths))[:sample]
    # measured in the workers: only the numbers come back, not (up to) 200 full-size photos
    stats = decode_all(lambda path: photo_stats(*read_photo(path)), [paths[i] for i in sorted(pick)])
    return QualityReference.fit(s for s in stats if not isinstance(s, ImageError))
