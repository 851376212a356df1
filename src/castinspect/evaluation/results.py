"""What ``castinspect evaluate`` writes (``--json``) and shows: everything the terminal prints is
here, and the HTML report reads the same Evaluation, so the three say the same.

    provenance   when, which castinspect, the command line, the model (id, file, SHA-256), the
                 data (path, split, photos judged)
    overlap      always present: how many evaluated photos are training photos or near-copies of
                 them, or null with the reason it is not known
    evaluation   the metrics, each rate with its 95% interval (``rates``)
    leak_free    the same on the photos that are not copies, where some are
    decision     the threshold as a decision: the sweep, and with costs the cost-optimal threshold
    photos       every photo's score and decision, not only the misjudged ones
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from castinspect.core.decision import defect_probability
from castinspect.core.provenance import provenance
from castinspect.evaluation.evaluate import Evaluation
from castinspect.evaluation.thresholds import (
    Costs,
    cost_optimal,
    cost_per_1000,
    outcomes,
    sweep,
)
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import bundled_model_path

TEST_WARNING = ("this threshold was chosen on the photos it is measured on, and they are the test split: "
                "its cost is optimistic. Choose on validation photos: castinspect threshold RUN_DIR --cost-escape ...")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_provenance(predictor: Predictor, model_file: str | os.PathLike | None) -> dict:
    path = Path(model_file) if model_file is not None else bundled_model_path()
    return {"model": predictor.model_id, "model_file": str(path), "model_sha256": file_sha256(path),
            "backend": predictor.backend.name}


def split_name(data: str | os.PathLike, split: str) -> str:
    """What the photos evaluated are called: a manifest's split, or the folder's name."""
    path = Path(data)
    return split if path.suffix.lower() == ".csv" else path.name


def is_test_split(data: str | os.PathLike, split: str) -> bool:
    """Whether the photos evaluated are a test split: a manifest's test rows or a folder named test."""
    return split_name(data, split).lower() == "test"


def decision_analysis(result: Evaluation, predictor: Predictor, costs: Costs | None, test: bool) -> dict | None:
    """The threshold as a decision on these photos (two-class models only): escapes, false
    rejects and reviews across thresholds, at the model's threshold, and the cost-optimal one."""
    if predictor.ok_index is None or not len(result.labels):
        return None
    y = (result.labels != predictor.ok_index).astype(int)
    p = defect_probability(result.probs, predictor.ok_index)
    band = predictor.review_band
    at = outcomes(y, p, predictor.threshold, band)
    out = {"review_band": list(band) if band else None, "at_threshold": {"threshold": predictor.threshold, **at},
           "sweep": sweep(y, p, band, costs)}
    if costs is not None:
        out["at_threshold"]["cost_per_1000"] = cost_per_1000(at, len(p), costs)
        out["cost_optimal"] = cost_optimal(y, p, costs, band)
        out["warning"] = TEST_WARNING if test else None
    return out


def photo_rows(result: Evaluation, predictor: Predictor) -> list[dict]:
    copied = result.copied
    return [{"path": i.source, "true": predictor.classes[t], "label": i.label, "p_defect": i.p_defect,
             "score": i.score, "decision": i.decision, "reasons": i.reasons,
             "copy_of_training": None if copied is None else bool(copied[k])}
            for k, (i, t) in enumerate(zip(result.inspections, result.labels))]


def evaluation_summary(predictor: Predictor, result: Evaluation, model_file: str | os.PathLike | None,
                       data: str | os.PathLike, split: str, costs: Costs | None = None) -> dict:
    """The whole result of one evaluation, JSON-ready (see the module)."""
    metrics = dict(result.metrics)
    overlap = metrics.pop("overlap", None) or {"count": None, "reason": "not checked"}
    leak_free = metrics.pop("leak_free", None)
    test = is_test_split(data, split)
    summary = {
        "provenance": {**provenance(), **model_provenance(predictor, model_file), "data": str(data),
                       "split": split_name(data, split),
                       "photos": len(result.inspections), "unreadable": len(result.errors)},
        "model": predictor.model_id, "threshold": predictor.threshold, "data": str(data),
        "overlap": overlap, "evaluation": metrics,
    }
    if leak_free is not None:
        summary["leak_free"] = leak_free
    summary["decision"] = decision_analysis(result, predictor, costs, test)
    summary["photos"] = photo_rows(result, predictor)
    return summary


def overlap_warning(overlap: dict) -> str | None:
    """The sentence a report opens with when evaluated photos are training photos."""
    if not overlap or not overlap.get("count"):
        return None
    share = overlap["count"] / max(overlap["of"], 1)
    return (f"{overlap['count']} of the {overlap['of']} photos evaluated ({share:.0%}) are training photos or "
            f"near-copies of them ({overlap['source']}): the numbers on all of them say how well the model "
            "remembers, not how it judges parts it never saw. See the overlap-free numbers beside.")
