"""Two models on the same photos: what changes if the new one replaces the old one.

The photos are a folder of class folders, a manifest's rows of one split, or a run directory's
validation photos (its ``split.csv``: the grouped validation the run chose on). Both models judge
every photo with their own threshold (and the same review band, where given); the result holds
each model's escapes, false rejects, review share and accuracy, and the photos on which their
decisions differ: where the new model is right and the old wrong, and the other way round.
"""

from __future__ import annotations

import os
from pathlib import Path

from castinspect.evaluation.evaluate import evaluate
from castinspect.inference.predict import Predictor

SHOWN = ("n", "accuracy", "escapes", "false_rejects", "defect_recall", "false_reject_rate", "review_share",
         "unfamiliar")


def photos(data: str | os.PathLike, split: str) -> tuple[str | os.PathLike, str]:
    """The data and split to evaluate: a run directory means its validation photos."""
    path = Path(data)
    if path.is_dir() and (path / "split.csv").is_file():
        return path / "split.csv", "val"
    return data, split


def summary(result) -> dict:
    m = result.metrics
    n = len(result.inspections)
    review = sum(i.decision == "review" for i in result.inspections)
    row = {k: m.get(k) for k in SHOWN}
    row["review_share"] = review / n if n else None
    return row


def compare_models(new: Predictor, old: Predictor, data: str | os.PathLike, split: str = "val") -> dict:
    """Judge ``data`` with both models; their figures side by side and where they differ."""
    source, split = photos(data, split)
    results = {name: evaluate(p, source, split=split) for name, p in (("new", new), ("old", old))}
    a, b = results["new"], results["old"]
    truth = {i.source: new.classes[t] for i, t in zip(a.inspections, a.labels)}
    old_by_photo = {i.source: i for i in b.inspections}
    changed, better, worse = [], 0, 0
    for i in a.inspections:
        j = old_by_photo.get(i.source)
        if j is None or (i.decision, i.label) == (j.decision, j.label):
            continue
        right_new, right_old = i.label == truth[i.source], j.label == truth[i.source]
        better += right_new and not right_old
        worse += right_old and not right_new
        changed.append({"path": i.source, "true": truth[i.source], "new": i.decision, "new_label": i.label,
                        "new_p_defect": i.p_defect, "old": j.decision, "old_label": j.label, "old_p_defect": j.p_defect})
    return {"data": str(source), "split": split, "new": {"model": new.model_id, **summary(a)},
            "old": {"model": old.model_id, **summary(b)},
            "differ": len(changed), "new_right_old_wrong": better, "old_right_new_wrong": worse, "changed": changed}
