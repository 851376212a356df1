"""Rates with their uncertainty: "0 escapes in 453 defects" is an escape rate below about 0.8%
at 95% confidence, not zero.

Every rate is reported as ``{"value", "low", "high", "n", "k"}``: k events out of n, the rate k/n
and its two-sided 95% Clopper-Pearson interval (exact: it holds its coverage for small n and for
rates near 0 or 1, where the normal approximation fails and the Wilson interval is a little
narrower than it should be).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta

CONFIDENCE = 0.95
METHOD = "Clopper-Pearson (exact binomial), two-sided 95%"


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The interval for a rate of ``k`` in ``n``; (None, None) when n is 0."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, not k={k}, n={n}")
    if n == 0:
        return None, None
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
    return low, high


def rate(k: int, n: int) -> dict:
    low, high = clopper_pearson(int(k), int(n))
    return {"value": k / n if n else None, "low": low, "high": high, "n": int(n), "k": int(k)}


def line_rates(labels: np.ndarray, preds: np.ndarray, y: np.ndarray | None = None,
               said_defective: np.ndarray | None = None) -> dict:
    """Accuracy over every photo; with ``y`` (1 = defective) and ``said_defective`` (the
    decisions at the threshold) also the escape rate (of the defects), the false-reject rate (of
    the good parts) and the defect recall."""
    out = {"accuracy": rate(int((labels == preds).sum()), len(labels))}
    if y is not None and said_defective is not None:
        defects, goods = int((y == 1).sum()), int((y == 0).sum())
        escapes = int(((y == 1) & ~said_defective).sum())
        out["escape_rate"] = rate(escapes, defects)
        out["false_reject_rate"] = rate(int(((y == 0) & said_defective).sum()), goods)
        out["recall"] = rate(defects - escapes, defects)
    return out


def shown(r: dict | None, digits: int = 4) -> str:
    """'0.0000 [0.0000, 0.0081] (0/453)'."""
    if not r or r["value"] is None:
        return "-"
    return f"{r['value']:.{digits}f} [{r['low']:.{digits}f}, {r['high']:.{digits}f}] ({r['k']}/{r['n']})"
