"""Draw a verdict onto a photo: the label, p(defective) and threshold in a coloured banner."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import cv2
import numpy as np

from castinspect.core.records import Inspection

# BGR: green for ok, red for defective, amber for review.
COLOURS = {"ok": (60, 160, 40), "defective": (40, 40, 220), "review": (0, 170, 255)}


def banner(insp: Inspection, width: int) -> np.ndarray:
    """A coloured strip (BGR) with the verdict: decision and label, p(defect) and threshold."""
    strip = np.full((44, width, 3), COLOURS.get(insp.decision or "", (90, 90, 90)), np.uint8)
    line1 = f"{(insp.decision or 'error').upper()}  {insp.label or ''}"
    if insp.error:
        line2 = insp.error[:40]
    elif insp.p_defect is None:  # a model without an OK class: the type's probability
        line2 = f"p({insp.label})={insp.score:.3f}"
    else:
        line2 = f"p(defect)={insp.p_defect:.3f}  t={insp.threshold:.3f}"
    cv2.putText(strip, line1, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(strip, line2, (6, 37), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return strip


def annotate(gray: np.ndarray, insp: Inspection, width: int = 300) -> np.ndarray:
    """A BGR image: the photo scaled to ``width`` with the verdict written above it."""
    h = int(round(gray.shape[0] * width / gray.shape[1]))
    photo = cv2.cvtColor(cv2.resize(gray, (width, h), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    return np.vstack([banner(insp, width), photo])


def write_annotated(gray: np.ndarray, insp: Inspection, out_dir: str | os.PathLike,
                    picture: np.ndarray | None = None) -> Path:
    """Write ``<stem>.png`` (``picture``, by default the annotated photo) into ``out_dir``;
    a numbered suffix avoids overwriting a namesake."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(insp.source).stem or "image"
    path, n = out_dir / f"{stem}.png", 1
    while path.exists():
        path, n = out_dir / f"{stem}-{n}.png", n + 1
    cv2.imwrite(str(path), annotate(gray, insp) if picture is None else picture)
    return path


def png_bytes(bgr_or_gray: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr_or_gray)
    if not ok:
        raise ValueError("could not encode PNG")
    return buf.tobytes()


def png_base64(bgr_or_gray: np.ndarray) -> str:
    """The image as a base64-encoded PNG (the server's heatmap field; data URIs in reports)."""
    return base64.b64encode(png_bytes(bgr_or_gray)).decode()


def png_data_uri(bgr_or_gray: np.ndarray) -> str:
    return "data:image/png;base64," + png_base64(bgr_or_gray)
