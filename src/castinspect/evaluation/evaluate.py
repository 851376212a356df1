"""evaluate(predictor, data) -> metrics and per-photo inspections, and the same under the
line-variation suite."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from castinspect.core.decision import defect_probability
from castinspect.core.io import ImageError
from castinspect.core.records import Inspection
from castinspect.data.datasets import (
    ImageSet,
    decode_set,
    is_manifest,
    load_folder,
    load_split,
    read_manifest,
)
from castinspect.evaluation.metrics import reliability, review_summary, summarize
from castinspect.inference.predict import Predictor


@dataclass
class Evaluation:
    name: str
    metrics: dict
    labels: np.ndarray
    probs: np.ndarray
    inspections: list[Inspection]
    errors: list[ImageError] = field(default_factory=list)
    copied: np.ndarray | None = None  # per photo: is it (a near-copy of) a training photo

    def images(self, classes: list[str]) -> ImageSet:
        """The photos that were judged, with their true labels."""
        return ImageSet([i.source for i in self.inspections], self.labels, classes)


def evaluate_arrays(predictor: Predictor, name: str, images: np.ndarray, labels: np.ndarray,
                    paths: list[str], reasons: list[list[str]] | None = None) -> Evaluation:
    """Judge decoded photos (with their quality ``reasons``, where checked) and compare with
    ``labels``. The metrics are of the model's labels, every photo counted; ``flagged_metrics``
    adds how many photos were unlike the training photos and how the model did on each kind."""
    probs, familiarity = predictor.judge(images)
    inspections = predictor.inspections(paths, probs, reasons, familiarity)
    preds = np.array([predictor.classes.index(i.label) for i in inspections], dtype=np.int64)
    metrics = summarize(labels, probs, preds, predictor.classes, predictor.ok_index,
                        predictor.threshold)
    metrics.update(flagged_metrics(inspections, labels == preds))
    if predictor.ok_index is not None:
        y = (labels != predictor.ok_index).astype(int)
        p_defect = defect_probability(probs, predictor.ok_index)
        metrics["reliability"] = reliability(y, p_defect)
        if predictor.review_band is not None:
            metrics.update(review_summary(y, p_defect, *predictor.review_band, predictor.threshold))
    metrics["misclassified"] = [
        {"path": insp.source, "true": predictor.classes[t], "label": insp.label, "p_defect": insp.p_defect}
        for insp, t, p in zip(inspections, labels, preds) if t != p]
    return Evaluation(name, metrics, labels, probs, inspections)


def flagged_metrics(inspections: list[Inspection], right: np.ndarray) -> dict:
    """Photos unlike the training photos (any reason: ``unfamiliar``, ``blurred``, ...), those
    flagged for a person (a reason, or the review band), the accuracy on photos like and unlike
    the training photos, and the silent errors: wrong labels on photos nobody was told to look at."""
    unlike = np.array([bool(i.reasons) for i in inspections], dtype=bool)
    flagged = unlike | np.array([i.decision == "review" for i in inspections], dtype=bool)
    reasons: dict[str, int] = {}
    for i in inspections:
        for r in i.reasons:
            reasons[r] = reasons.get(r, 0) + 1

    def accuracy(mask: np.ndarray) -> float | None:
        return float(right[mask].mean()) if mask.any() else None

    measured = bool(inspections) and inspections[0].familiar is not None
    return {"unfamiliar": sum(i.familiar is False for i in inspections) if measured else None,
            "unlike_training": int(unlike.sum()), "reasons": reasons, "flagged": int(flagged.sum()),
            "accuracy_like_training": accuracy(~unlike), "accuracy_unlike_training": accuracy(unlike),
            "silent_errors": int((~right & ~flagged).sum())}


def evaluate(predictor: Predictor, data: str | os.PathLike | ImageSet, strict: bool = False,
             train_root: str | os.PathLike | None = None, split: str = "test",
             training: "TrainingPhotos | None" = None) -> Evaluation:
    """Judge every image of ``data`` — a folder of class folders, a manifest (its ``split``
    rows) or an ImageSet — and compare with the labels.

    With the model's training photos (``training``, or ``train_root``: the training photos, or a
    dataset root holding ``train/``), ``metrics["overlap"]`` counts the photos whose part also
    appears there (byte-identical or a near-duplicate, see ``data.parts``), and where there are
    any, ``metrics["leak_free"]`` holds the metrics of the rest: parts the model never saw.
    """
    if train_root is not None:
        training = TrainingPhotos(load_split(train_root, "train").paths, f"--train-root {train_root}")
    if isinstance(data, ImageSet):
        images = data
    elif is_manifest(data):
        images = read_manifest(data, split, predictor.classes)
    else:
        images = load_folder(data, predictor.classes)
    decoded = decode_set(images, predictor.input_size, strict=strict, locate=predictor.locate,
                         check=predictor.quality_reasons)
    result = evaluate_arrays(predictor, split, decoded.images, decoded.labels, decoded.paths, decoded.reasons)
    result.errors = decoded.errors
    result.metrics["unreadable"] = [str(e) for e in decoded.errors]
    if training is not None and training.paths is not None:
        from castinspect.data.parts import copies_in

        copied = copies_in(decoded.paths, training.paths)
        result.metrics["overlap"] = {"count": int(copied.sum()), "of": len(decoded.paths),
                                     "training_photos": len(training.paths), "source": training.source}
        result.copied = copied
        if copied.any() and not copied.all():  # (all copies: the overlap says so, no subset is left)
            keep = np.flatnonzero(~copied)
            subset = evaluate_arrays(predictor, "leak-free", decoded.images[keep], decoded.labels[keep],
                                     [decoded.paths[i] for i in keep], [decoded.reasons[i] for i in keep])
            result.metrics["leak_free"] = {**subset.metrics, "removed_as_copies": int(copied.sum())}
    else:
        result.metrics["overlap"] = {"count": None, "reason": training.source if training else
                                     "the model's training photos are not known here: pass --train-root"}
    return result


@dataclass
class TrainingPhotos:
    """The photos a model was trained on (None when unknown), and where that comes from (or why
    they are unknown)."""

    paths: list[str] | None
    source: str


def training_photos(model_file: str | os.PathLike | None, checkpoint, train_root=None) -> TrainingPhotos:
    """What the model was trained on, from the most exact source there is: ``train_root``, the
    run's ``split.csv`` beside the model file (its train rows: exactly the photos fitted), or
    the training data the checkpoint records (every photo of its ``train`` split, of which the
    validation photos were carved), where that is on this machine."""
    if train_root is not None:
        return TrainingPhotos(load_split(train_root, "train").paths, f"--train-root {train_root}")
    if model_file is not None and (Path(model_file).parent / "split.csv").is_file():
        manifest = Path(model_file).parent / "split.csv"
        return TrainingPhotos(read_manifest(manifest, "train").paths, f"the run's {manifest}")
    root = (checkpoint.info.get("data", {}) or {}).get("root") if checkpoint is not None else None
    if root and Path(root).exists():
        try:
            return TrainingPhotos(load_split(root, "train").paths, f"the training data the model records ({root})")
        except (OSError, ValueError):
            pass
    if root:
        return TrainingPhotos(None, f"the model's training photos ({root}) are not on this machine: pass --train-root")
    return TrainingPhotos(None, "the model does not record its training photos: pass --train-root")


@dataclass
class SuiteResult:
    """Every judged photo under every line variation (``robustness.SUITE``)."""

    results: dict  # variation name -> metrics, kind, description, escaped / falsely rejected photos
    summary: dict  # ``robustness.worst``: the headline
    samples: dict[str, np.ndarray] | None  # one photo under each variation, as the model sees it


def evaluate_robustness(predictor: Predictor, result: Evaluation, seed: int = 0) -> SuiteResult:
    """The photos of ``result`` judged again under each line variation, at the same threshold."""
    from castinspect.evaluation.robustness import run_suite, sample_views, worst

    images = result.images(predictor.classes)
    results, _ = run_suite(predictor, images, seed=seed)
    defective = [p for p, y in zip(images.paths, images.labels) if y != predictor.ok_index]
    sample = (defective or images.paths or [None])[0]  # a defective part when there is one
    samples = sample_views(sample, predictor.input_size, seed, locate=predictor.locate) if sample else None
    return SuiteResult(results, worst(results), samples)


def write_metrics(path: str | os.PathLike, metrics: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(metrics), indent=2) + "\n")


def finite(obj):
    """JSON has no NaN: undefined metrics (e.g. AUC with one class present) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


HEADLINE = ("n", "accuracy", "errors", "escapes", "false_rejects", "defect_recall",
            "false_reject_rate", "roc_auc", "pr_auc", "brier", "ece", "unfamiliar", "silent_errors")


def headline(m: dict) -> dict:
    """The few numbers a checkpoint carries of each evaluation (``castinspect info``)."""
    return {k: m[k] for k in HEADLINE if k in m}
