"""Part localisation: find the part against its background and crop a square around it.

A camera that was moved, zoomed or changed frames the part differently; cropping a square around
the part itself (with a fixed margin) before the resize makes the model's input the same
whatever the framing. Where no single part stands on a background (a texture, a strip, a part
filling the frame), the photo is left as it is.

How: on a reduced copy, the background is modelled by a plane fitted to the frame's border (so an
illumination gradient is background too); the part is the largest region that departs from it
by more than the border's own spread, its holes filled. It is accepted only if the border is
background and the region is one clear part of a plausible size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from castinspect.core.io import preprocess

MODES = ("off", "on", "auto")
WORK_SIDE = 128  # the photo is reduced to this (longer side) to find the part
MARGIN = 0.08  # of the part's size, on each side of the crop
BORDER = 3  # work-size pixels of the frame's border that model the background
DEPARTURE = 3.0  # a pixel is the part's when it departs from the background by this many spreads
MAX_BORDER_PART = 0.4  # more of the border than this departing: no background to find a part on
MIN_AREA, MAX_AREA = 0.1, 0.95  # of the frame: smaller is a blemish, larger leaves no background
MIN_DOMINANCE = 0.8  # share of all departing area in the largest region
AUTO_SHARE = 0.9  # ``auto``: on when a part is found in at least this share of the training photos


@dataclass(frozen=True)
class Box:
    """A square around the part, in the photo's pixels: centre and side."""

    cx: float
    cy: float
    side: float


def part_mask(gray: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The part's mask at work size and the scale from work size to the photo; None when the
    photo shows no single part on a background."""
    h, w = gray.shape
    scale = max(h, w) / WORK_SIDE
    small = cv2.resize(gray, (max(8, round(w / scale)), max(8, round(h / scale))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), 1.0)
    rows, cols = small.shape
    border = np.zeros(small.shape, bool)
    border[:BORDER], border[-BORDER:], border[:, :BORDER], border[:, -BORDER:] = True, True, True, True
    # The background: a plane (an illumination gradient) fitted to the frame's border; the part is
    # what departs from it by more than the border's own spread.
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    design = np.c_[xx[border], yy[border], np.ones(int(border.sum()), np.float32)]
    coef, *_ = np.linalg.lstsq(design, small[border], rcond=None)
    residual = small - (coef[0] * xx + coef[1] * yy + coef[2])
    spread = 1.4826 * np.median(np.abs(residual[border] - np.median(residual[border]))) + 1.0
    departs = (np.abs(residual) > DEPARTURE * spread).astype(np.uint8)
    if departs[border].mean() > MAX_BORDER_PART:
        return None  # the border is no background: a texture, or a part filling the frame
    departs = cv2.morphologyEx(departs, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    contours, _ = cv2.findContours(departs, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    areas = np.array([cv2.contourArea(c) for c in contours])
    largest = int(areas.argmax())
    if not MIN_AREA <= areas[largest] / small.size <= MAX_AREA or areas[largest] < MIN_DOMINANCE * areas.sum():
        return None
    # Filled: holes inside the part (its hub, a shiny face like the background) belong to it.
    mask = np.zeros(small.shape, np.uint8)
    cv2.drawContours(mask, contours, largest, 1, thickness=cv2.FILLED)
    return mask, scale


def background_weight(gray: np.ndarray) -> np.ndarray | None:
    """Per pixel of ``gray``, how much it is background (1) rather than part (0), the edge soft as
    a lens draws it; None when no single part stands on a background."""
    found = part_mask(gray)
    if found is None:
        return None
    h, w = gray.shape
    part = cv2.resize(found[0].astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return 1 - cv2.GaussianBlur(part, (0, 0), 0.01 * w)


def find_part(gray: np.ndarray) -> Box | None:
    """The square around the part (its bounding box's centre and longer side), or None."""
    found = part_mask(gray)
    if found is None:
        return None
    mask, scale = found
    x, y, w, h = cv2.boundingRect(mask)
    return Box((x + w / 2) * scale, (y + h / 2) * scale, max(w, h) * scale)


def crop_to_part(gray: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    """The photo cropped to a square around its part (edges replicated where the square leaves
    the frame), or the photo itself when no part is found."""
    box = find_part(gray)
    if box is None:
        return gray
    half = box.side * (1 + 2 * margin) / 2
    x0, y0 = int(round(box.cx - half)), int(round(box.cy - half))
    side = max(1, int(round(2 * half)))
    h, w = gray.shape
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return gray[y0:y0 + side, x0:x0 + side]


def prepare(gray: np.ndarray, size: int, locate: bool = False) -> np.ndarray:
    """A decoded photo as a model of input ``size`` sees it: cropped to its part when the model
    locates parts, then resized. Training, evaluation, prediction and the station all call this."""
    return preprocess(crop_to_part(gray) if locate else gray, size)


def located_share(photos: list[np.ndarray]) -> float:
    """The share of ``photos`` in which a part stands on a background."""
    return float(np.mean([find_part(p) is not None for p in photos])) if photos else 0.0
