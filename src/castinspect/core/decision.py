"""From class probabilities to a judgement: the defect score, the label and the decision.

One rule everywhere: a part is defective when p(defective) >= threshold. With two classes
p(defective) is the defect class's probability; with several defect types it is 1 - p(ok). A
review band (lo, hi) sends parts with lo <= p < hi to a person instead.

Without an OK class (every class a defect type, ``ok_index`` None) the model classifies the
type: every part is defective, the label is its most probable type, and there is no p(defect)
and no threshold.
"""

from __future__ import annotations

import numpy as np

OK, DEFECTIVE, REVIEW = "ok", "defective", "review"
DECISIONS = (OK, DEFECTIVE, REVIEW)


def resolve_ok_index(classes: list[str], positive_class: str | None, ok_class: str | None) -> int | None:
    """Index of the class that means "good part" (every other class is a defect type), or None
    when there is none: ``ok_class`` "none", or "auto" / None and no class is named like one."""
    if ok_class == "none":
        return None
    if ok_class not in (None, "auto"):
        if ok_class not in classes:
            raise ValueError(f"data.ok_class {ok_class!r} is not among the classes {classes}")
        return classes.index(ok_class)
    if len(classes) == 2 and positive_class in classes:
        return 1 - classes.index(positive_class)
    oks = [i for i, c in enumerate(classes) if c.lower().startswith(("ok", "good", "pass"))]
    if len(oks) > 1:
        raise ValueError(f"cannot tell which of the classes {classes} is the good-part class; "
                         "set data.ok_class (a class name, or none: every class a defect type)")
    return oks[0] if oks else None


def defect_probability(probs: np.ndarray, ok_index: int | None) -> np.ndarray:
    """p(defective) for each row of an (N, C) probability array (1 without an OK class)."""
    return np.ones(len(probs)) if ok_index is None else 1.0 - probs[:, ok_index]


def predicted_index(probs: np.ndarray, ok_index: int | None, threshold: float | None) -> np.ndarray:
    """Class index per row, consistent with the threshold: the ok class below it, else the most
    probable defect type."""
    if ok_index is None:
        return probs.argmax(axis=1)
    p_def = defect_probability(probs, ok_index)
    masked = probs.copy()
    masked[:, ok_index] = -np.inf
    return np.where(p_def >= threshold, masked.argmax(axis=1), ok_index)


def in_review_band(p_defect, lo: float, hi: float):
    """Whether a review band [lo, hi) sends the part to a person: a bool, or a mask for an array."""
    return (p_defect >= lo) & (p_defect < hi)


def decide(p_defect: float, threshold: float, review_band: tuple[float, float] | None = None) -> str:
    if review_band is not None and in_review_band(p_defect, *review_band):
        return REVIEW
    return DEFECTIVE if p_defect >= threshold else OK
