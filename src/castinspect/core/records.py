"""The one record type of a judgement, shared by every entry point and sink."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np

# The reasons the models add to an Inspection's, beside the image-quality checks' (``data.quality``).
UNFAMILIAR = "unfamiliar"  # the familiarity model found the photo unlike the training photos
ANOMALOUS = "anomalous"  # the anomaly model rejected a part the classifier passed


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Inspection:
    """One photo judged (or not: then ``error`` says why, ``error_code`` is its kind for programs,
    and the verdict fields are None).

    ``score`` is p(defective) for a two-class model and p(label) with several defect types;
    ``p_defect`` is always p(defective), the number the threshold is applied to. ``reasons``
    names what about the photo is unlike the training photos (``data.quality``; empty when
    nothing is, or when the model has no reference), with UNFAMILIAR and ANOMALOUS where the
    models add them; ``familiarity`` and ``familiar`` are None
    until the model measures them. ``label`` stays the model's class when a reason turns the
    decision into ``review``. ``photo`` (the
    decoded grey photo) and ``heatmap`` (at model size) ride along when a caller asked for them;
    they are never part of the record.
    """

    source: str
    label: str | None
    score: float | None
    p_defect: float | None
    decision: str | None
    threshold: float | None
    model: str
    error: str | None = None
    scores: dict[str, float] | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=utc_now)
    error_code: str | None = None
    reasons: list[str] = field(default_factory=list)
    familiarity: float | None = None
    familiar: bool | None = None
    anomaly: float | None = None  # the anomaly model's p(defect), where one judges beside the classifier
    photo: np.ndarray | None = field(default=None, repr=False, compare=False)
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def judged(self) -> bool:
        """The photo was read and judged (whatever the decision)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The record's fields (what the log stores), without the photo and heatmap."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("photo", "heatmap")}

    def to_public(self) -> dict[str, Any]:
        """The CLI's JSON object: path, label, score, error first (the command contract)."""
        d = {"path": self.source, "label": self.label, "score": self.score, "error": self.error}
        if self.scores is not None:
            d["scores"] = self.scores
        d.update(decision=self.decision, p_defect=self.p_defect, threshold=self.threshold,
                 reasons=self.reasons, familiarity=self.familiarity, familiar=self.familiar,
                 model=self.model, id=self.id, time=self.time)
        if self.error_code is not None:
            d["error_code"] = self.error_code
        if self.anomaly is not None:
            d["anomaly"] = self.anomaly
        return d
