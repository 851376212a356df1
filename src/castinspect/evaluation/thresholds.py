"""The threshold as a decision: what each threshold costs in escapes, false rejects and reviews.

A part is defective when p(defect) >= t; with a review band [lo, hi) the parts inside it go to a
person instead, whatever t. With a cost per escape (a defect shipped), per false reject (a good
part scrapped) and per review (a person's look), each threshold has an expected cost per 1,000
parts on the photos evaluated; the cost-optimal threshold is the cheapest. It is a choice to make
on validation photos: chosen on the test split it is no longer a test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from castinspect.core.decision import defect_probability, in_review_band

GRID = 201  # thresholds charted across [0, 1]


@dataclass(frozen=True)
class Costs:
    escape: float
    false_reject: float
    review: float = 0.0

    def __post_init__(self) -> None:
        if min(self.escape, self.false_reject, self.review) < 0:
            raise ValueError("costs must not be negative")


def outcomes(y: np.ndarray, p: np.ndarray, t: float, band: tuple[float, float] | None = None) -> dict:
    """Escapes, false rejects and reviews at threshold ``t`` (counts)."""
    review = in_review_band(p, *band) if band else np.zeros(len(p), bool)
    defective = (p >= t) & ~review
    return {"escapes": int(((y == 1) & ~defective & ~review).sum()),
            "false_rejects": int(((y == 0) & defective).sum()), "reviewed": int(review.sum())}


def cost_per_1000(counts: dict, n: int, costs: Costs) -> float:
    return 1000 * (costs.escape * counts["escapes"] + costs.false_reject * counts["false_rejects"]
                   + costs.review * counts["reviewed"]) / n


def sweep(y: np.ndarray, p: np.ndarray, band: tuple[float, float] | None = None, costs: Costs | None = None,
          grid: int = GRID) -> list[dict]:
    """Each threshold of an even grid on [0, 1]: the escape and false-reject rates and the review
    share (and the cost per 1,000 parts, with ``costs``)."""
    y, p = np.asarray(y), np.asarray(p)
    defects, goods, n = max(int((y == 1).sum()), 1), max(int((y == 0).sum()), 1), max(len(p), 1)
    rows = []
    for t in np.linspace(0, 1, grid):
        c = outcomes(y, p, float(t), band)
        row = {"threshold": float(t), **c, "escape_rate": c["escapes"] / defects,
               "false_reject_rate": c["false_rejects"] / goods, "review_share": c["reviewed"] / n}
        if costs is not None:
            row["cost_per_1000"] = cost_per_1000(c, len(p), costs)
        rows.append(row)
    return rows


def cost_optimal(y: np.ndarray, p: np.ndarray, costs: Costs, band: tuple[float, float] | None = None) -> dict:
    """The cheapest threshold on these photos, exactly: the cost changes only where t passes a
    score, so each distinct score is tried (and "everything OK" above them all, where that is a
    threshold <= 1). Of the cheapest, the lowest score's gap is taken at its midpoint (as
    ``metrics.choose_threshold`` does), so a score computed a hair lower elsewhere decides alike."""
    y, p = np.asarray(y), np.asarray(p)
    if not len(p):
        raise ValueError("no photos to choose a threshold on")
    scores = np.unique(p)
    candidates = list(scores) + ([1.0] if scores[-1] < 1.0 else [])
    best_t, best_cost, best_counts = None, None, None
    for t in candidates:
        counts = outcomes(y, p, float(t), band)
        cost = cost_per_1000(counts, len(p), costs)
        if best_cost is None or cost < best_cost - 1e-12:
            best_t, best_cost, best_counts = float(t), cost, counts
    below = scores[scores < best_t]
    threshold = (best_t + below.max()) / 2 if len(below) else best_t
    return {"threshold": float(threshold), "cost_per_1000": best_cost, **best_counts,
            "costs": {"escape": costs.escape, "false_reject": costs.false_reject, "review": costs.review}}


def threshold_for_costs(model_file: str | os.PathLike, costs: Costs, out: str | os.PathLike | None = None,
                        review_band: tuple[float, float] | None = None) -> dict:
    """Choose the cost-optimal threshold on a run's validation photos (its ``split.csv``) and
    write it into a copy of the model (``out``, default ``model-cost.ckpt`` beside it); the
    model file the run left is not touched."""
    from castinspect.evaluation.evaluate import evaluate
    from castinspect.inference.predict import Predictor
    from castinspect.models.checkpoint import (
        load_checkpoint,
        run_model,
        save_checkpoint,
    )

    model_file = run_model(model_file)
    manifest = model_file.parent / "split.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: a threshold is chosen on the run's validation photos; "
                                "pass the run directory train wrote")
    ckpt = load_checkpoint(model_file)
    if ckpt.ok_index is None:
        raise ValueError("this model has no OK class (it classifies defect types): it has no threshold")
    predictor = Predictor(ckpt, review_band=review_band)
    result = evaluate(predictor, manifest, split="val")
    y = (result.labels != predictor.ok_index).astype(int)
    p = defect_probability(result.probs, predictor.ok_index)
    best = cost_optimal(y, p, costs, review_band)
    before = outcomes(y, p, ckpt.threshold, review_band)
    ckpt.info["threshold_rule"] = {"rule": "cost-optimal on validation", **best["costs"],
                                   "review_band": list(review_band) if review_band else None,
                                   "validation_photos": int(len(p)), "previous_threshold": float(ckpt.threshold)}
    ckpt.threshold = best["threshold"]
    out = Path(out) if out is not None else model_file.with_name("model-cost.ckpt")
    save_checkpoint(ckpt, out)
    return {"model": ckpt.model_id, "file": str(out), "photos": int(len(p)), "chosen": best,
            "previous": {"threshold": float(ckpt.info["threshold_rule"]["previous_threshold"]), **before,
                         "cost_per_1000": cost_per_1000(before, len(p), costs)}}
