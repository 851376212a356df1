"""evaluate(predictor, folder) -> metrics and per-image inspections; and a run's final evaluation."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from castinspect.checkpoint import Checkpoint, save_checkpoint
from castinspect.data import Decoded, ImageSet, decode_set, is_manifest, load_folder, read_manifest, split_dir
from castinspect.decision import defect_probability
from castinspect.io import ImageError
from castinspect.metrics import reliability, review_summary, summarize
from castinspect.predict import Predictor
from castinspect.records import Inspection


@dataclass
class Evaluation:
    name: str
    metrics: dict
    labels: np.ndarray
    probs: np.ndarray
    inspections: list[Inspection]
    errors: list[ImageError] = field(default_factory=list)


def evaluate_arrays(predictor: Predictor, name: str, images: np.ndarray, labels: np.ndarray,
                    paths: list[str]) -> Evaluation:
    probs = predictor.probabilities(images)
    inspections = predictor.judge(paths, probs)
    preds = np.array([predictor.classes.index(i.label) for i in inspections], dtype=np.int64)
    metrics = summarize(labels, probs, preds, predictor.classes, predictor.ok_index,
                        predictor.threshold)
    y = (labels != predictor.ok_index).astype(int)
    p_defect = defect_probability(probs, predictor.ok_index)
    metrics["reliability"] = reliability(y, p_defect)
    if predictor.review_band is not None:
        metrics.update(review_summary(y, p_defect, *predictor.review_band, predictor.threshold))
    metrics["misclassified"] = [
        {"path": insp.source, "true": predictor.classes[t], "label": insp.label, "p_defect": insp.p_defect}
        for insp, t, p in zip(inspections, labels, preds) if t != p]
    return Evaluation(name, metrics, labels, probs, inspections)


def evaluate(predictor: Predictor, data: str | os.PathLike | ImageSet, strict: bool = False,
             train_root: str | os.PathLike | None = None, split: str = "test") -> Evaluation:
    """Judge every image of ``data`` — a folder of class folders, a manifest (its ``split``
    rows) or an ImageSet — and compare with the labels.

    With ``train_root`` (the training photos, or a dataset root holding ``train/``), the photos
    whose part also appears there (byte-identical or a near-duplicate, see ``audit.py``) are set
    aside, and ``metrics["leak_free"]`` holds the metrics of the rest: parts the model never saw.
    """
    if isinstance(data, ImageSet):
        images = data
    elif is_manifest(data):
        images = read_manifest(data, split, predictor.classes)
    else:
        images = load_folder(data, predictor.classes)
    decoded = decode_set(images, predictor.input_size, strict=strict)
    result = evaluate_arrays(predictor, split, decoded.images, decoded.labels, decoded.paths)
    result.errors = decoded.errors
    result.metrics["unreadable"] = [str(e) for e in decoded.errors]
    if train_root is not None:
        from castinspect.audit import copies_in

        train_paths = (read_manifest(train_root, "train").paths if is_manifest(train_root)
                       else load_folder(split_dir(train_root, "train")).paths)
        copied = copies_in(decoded.paths, train_paths)
        keep = np.flatnonzero(~copied)
        subset = evaluate_arrays(predictor, "leak-free", decoded.images[keep], decoded.labels[keep],
                                 [decoded.paths[i] for i in keep])
        result.metrics["leak_free"] = {**subset.metrics, "removed_as_copies": int(copied.sum())}
    return result


def write_metrics(path: str | os.PathLike, metrics: dict) -> None:
    Path(path).write_text(json.dumps(_finite(metrics), indent=2) + "\n")


def _finite(obj):
    """JSON has no NaN: undefined metrics (e.g. AUC with one class present) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def finish_run(run_dir: str | os.PathLike, ckpt: Checkpoint, val: Decoded,
               test: ImageSet | None) -> dict:
    """After training: metrics on validation (what chose the model) and, for reporting only, on
    the test split when there is one. Writes metrics.json and report.html; returns the metrics."""
    from castinspect.report import write_report  # matplotlib is imported only when reporting

    run_dir = Path(run_dir)
    predictor = Predictor(ckpt)
    results = [evaluate_arrays(predictor, "validation", val.images, val.labels, val.paths)]
    if test is not None:
        results.append(evaluate(predictor, test))
    metrics = {
        "model": predictor.model_id,
        "threshold": predictor.threshold,
        "parameters": ckpt.info.get("parameters"),
        "flops": ckpt.info.get("flops"),
        "train_seconds": ckpt.info.get("train_seconds"),
        "epochs_run": ckpt.info.get("epochs_run"),
        **{r.name: r.metrics for r in results},
    }
    write_metrics(run_dir / "metrics.json", metrics)
    # The checkpoint carries its metrics so `castinspect info` can show them without the run dir.
    ckpt.info["metrics"] = _finite({r.name: _headline(r.metrics) for r in results})
    save_checkpoint(ckpt, run_dir / "model.ckpt")
    write_report(run_dir / "report.html", results, predictor, history_csv=run_dir / "history.csv")
    return metrics


def _headline(m: dict) -> dict:
    keys = ("n", "accuracy", "errors", "escapes", "false_rejects", "defect_recall",
            "false_reject_rate", "roc_auc", "pr_auc", "brier", "ece")
    return {k: m[k] for k in keys if k in m}
