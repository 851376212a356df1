"""Pure functions of (labels, probabilities): confusion, P/R/F1, ROC/PR, calibration, thresholds.

Binary functions take ``y`` (1 = defective) and ``p`` (p(defective)); nothing here knows about
models or files, so every number can be checked against a hand computation.
"""

from __future__ import annotations

import numpy as np

from castinspect.core.decision import defect_probability, in_review_band
from castinspect.evaluation.rates import METHOD, line_rates


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def per_class_prf(cm: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for i, name in enumerate(classes):
        tp = cm[i, i]
        predicted, actual = cm[:, i].sum(), cm[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                     "support": int(actual)}
    return out


def _sorted_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative TP and FP counts at each distinct score, scores descending."""
    order = np.argsort(-p, kind="mergesort")
    y, p = np.asarray(y)[order], np.asarray(p)[order]
    last = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]  # last index of each tied score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return tps, fps, p[last]


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), starting at (0, 0)."""
    tps, fps, thr = _sorted_counts(y, p)
    pos, neg = max(tps[-1], 1), max(fps[-1], 1)
    return np.r_[0, fps / neg], np.r_[0, tps / pos], np.r_[np.inf, thr]


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y)
    if y.min() == y.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.trapezoid(tpr, fpr))


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds), recall increasing."""
    tps, fps, thr = _sorted_counts(y, p)
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / max(tps[-1], 1)
    return precision, recall, thr


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR-AUC as the step-wise sum of precision over recall increments (no interpolation)."""
    y = np.asarray(y)
    if y.sum() == 0:
        return float("nan")
    precision, recall, _ = pr_curve(y, p)
    return float(np.sum(np.diff(np.r_[0, recall]) * precision))


def brier_score(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed defect rate - mean predicted p| over equal-width bins of p."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling: the T minimising the cross-entropy of softmax(logits / T) on held-out
    data (validation, never test). One parameter, so the ranking — and ROC — cannot change."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(labels)), labels].mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 241))  # steps of about 2.5%
    return float(grid[int(np.argmin([nll(t) for t in grid]))])


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Per bin of predicted p(defect): count, mean predicted p and observed defect rate."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return [{"lo": b / bins, "hi": (b + 1) / bins, "n": int((idx == b).sum()),
             "mean_p": float(p[idx == b].mean()) if (idx == b).any() else None,
             "observed": float(y[idx == b].mean()) if (idx == b).any() else None} for b in range(bins)]


def review_summary(y: np.ndarray, p: np.ndarray, lo: float, hi: float, threshold: float) -> dict[str, float | int]:
    """A review band: parts with lo <= p < hi go to a person; the rest are decided automatically
    at ``threshold``, as ``decision.decide`` does. Escapes and false rejects count only the
    automatic decisions."""
    y, p = np.asarray(y), np.asarray(p)
    review = in_review_band(p, lo, hi)
    said_defective = p >= threshold
    return {
        "review_band": [float(lo), float(hi)],
        "review_share": float(review.mean()) if len(p) else float("nan"),
        "reviewed": int(review.sum()),
        "auto_escapes": int(((y == 1) & ~review & ~said_defective).sum()),
        "auto_false_rejects": int(((y == 0) & ~review & said_defective).sum()),
    }


def choose_threshold(y: np.ndarray, p: np.ndarray, target_recall: float) -> float:
    """A threshold whose defect recall is >= target_recall with the fewest good parts scrapped.

    Every threshold between the last defect it must catch and the next lower score judges the
    validation photos alike; the midpoint of that gap is taken, not the defect's own score, so a
    backend that computes that score a hair lower (ONNX Runtime vs PyTorch, bf16, INT8) still
    catches it. Use on validation data only. Returns a threshold t with decision ``p >= t``.
    """
    if not 0 < target_recall <= 1:
        raise ValueError("target_recall must be in (0, 1]")
    y, p = np.asarray(y), np.asarray(p)
    pos = np.sort(p[y == 1])[::-1]
    if len(pos) == 0:
        raise ValueError("no defective examples to choose a threshold on")
    k = int(np.ceil(target_recall * len(pos)))  # defects that must score >= t
    below = p[p < pos[k - 1]]
    return float((pos[k - 1] + (below.max() if len(below) else 0.0)) / 2)


def binary_summary(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Line terms at one threshold: escapes (defects passed as OK), false rejects (OK scrapped)."""
    y, p = np.asarray(y), np.asarray(p)
    pred = p >= threshold
    defects, goods = int((y == 1).sum()), int((y == 0).sum())
    escapes = int(((y == 1) & ~pred).sum())
    false_rejects = int(((y == 0) & pred).sum())
    return {
        "threshold": float(threshold),
        "errors": escapes + false_rejects,
        "escapes": escapes,
        "false_rejects": false_rejects,
        "defect_recall": (defects - escapes) / defects if defects else float("nan"),
        "escape_rate": escapes / defects if defects else float("nan"),
        "false_reject_rate": false_rejects / goods if goods else float("nan"),
    }


def summarize(labels: np.ndarray, probs: np.ndarray, preds: np.ndarray, classes: list[str],
              ok_index: int | None, threshold: float | None) -> dict:
    """All metrics of one evaluation, JSON-ready. Without an OK class (``ok_index`` None): the
    type classification's only (accuracy, errors, per class, confusion); no p(defect) metrics."""
    cm = confusion_matrix(labels, preds, len(classes))
    common = {
        "n": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else float("nan"),
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
        "per_class": per_class_prf(cm, classes),
    }
    if ok_index is None:
        return {**common, "task": "defect types", "threshold": None, "errors": int((preds != labels).sum()),
                "rates": line_rates(labels, preds), "interval": METHOD}
    y = (labels != ok_index).astype(int)
    p = defect_probability(probs, ok_index)
    return {
        **common,
        **binary_summary(y, p, threshold),
        "rates": line_rates(labels, preds, y, p >= threshold), "interval": METHOD,
        "roc_auc": roc_auc(y, p),
        "pr_auc": average_precision(y, p),
        "brier": brier_score(y, p),
        "ece": expected_calibration_error(y, p),
    }
