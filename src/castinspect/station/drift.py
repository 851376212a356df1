"""Drift at the line: are the photos still like those the model was trained and started on?

A rolling window of the last ``window`` judgements is held against what is expected of them:

- ``unfamiliar``: the share of photos the model flags unfamiliar, against the share photos like
  its training photos are expected to have (1%: the calibrated 0.5% with its margin) — a
  binomial tail probability;
- ``quality``: the same for photos the image-quality checks named (blurred, over- or
  under-exposed, small, distorted, colour), against 1%;
- ``familiarity``: photos like the validation photos have a familiarity spread evenly over
  [0, 1] (that is how it is calibrated), so a one-sided Kolmogorov-Smirnov test against the
  uniform distribution asks whether the window's photos look less familiar than that;
- ``p_defect``: a two-sample Kolmogorov-Smirnov test of the window's p(defect) against the
  baseline, the first ``baseline`` judgements (the first shift on the line);
- ``anomaly``: the same test of the anomaly model's scores, where one judges beside the
  classifier: good parts departing from those it was fitted on move its scores before a
  classifier that never saw the change moves its p(defect);
- ``reject_rate``: an SPC p-chart — centre line the baseline's reject rate, control limits three
  standard deviations either side (warning at 2.5), the standard deviation that of a window's
  share less the baseline's: a baseline of a few hundred parts is itself uncertain, and limits
  that ignore it alarm several times as often on a steady line.

Each signal is ``ok``, ``warning`` (p < 0.01, or beyond 2.5 sigma) or ``alarm`` (p < 0.001, or
beyond 3 sigma); the monitor's state is the worst of them, with a reason for each that is not ok.
The server keeps one monitor fed with every record it commits; ``castinspect drift`` replays the
log through one to chart the states over time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from scipy import stats

from castinspect.core.records import ANOMALOUS, UNFAMILIAR

OK, WARNING, ALARM = "ok", "warning", "alarm"
LEVELS = {OK: 0, WARNING: 1, ALARM: 2}
WARN_P, ALARM_P = 0.01, 0.001
WARN_SIGMA, ALARM_SIGMA = 2.5, 3.0


@dataclass(frozen=True)
class DriftSettings:
    window: int = 200  # judgements in the rolling window
    baseline: int = 500  # the first judgements, what p(defect) and the reject rate are held against
    min_window: int = 50  # fewer judgements than this in the window: nothing is tested yet
    expected_unfamiliar: float = 0.01  # share of in-distribution photos flagged unfamiliar (at most)
    expected_quality: float = 0.01  # share of in-distribution photos the quality checks name (at most)

    def __post_init__(self) -> None:
        if not 0 < self.min_window <= self.window or self.baseline < 1:
            raise ValueError("drift: need 0 < min_window <= window and baseline >= 1")


@dataclass
class Observation:
    """What the monitor reads of one judgement."""

    decision: str | None
    p_defect: float | None
    familiarity: float | None
    familiar: bool | None
    quality: bool = False  # the image-quality checks named something
    anomaly: float | None = None  # the anomaly model's p(defect), where one judged too

    @classmethod
    def of(cls, record: Any) -> "Observation":
        """From an Inspection or a log row (a dict)."""
        get = record.get if isinstance(record, dict) else lambda k: getattr(record, k, None)
        quality = any(r not in (UNFAMILIAR, ANOMALOUS) for r in get("reasons") or [])
        return cls(get("decision"), get("p_defect"), get("familiarity"), get("familiar"), quality, get("anomaly"))


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 0.01 else f"{p:.2f}"


def _level(p: float | None) -> str:
    if p is None:
        return OK
    return ALARM if p < ALARM_P else WARNING if p < WARN_P else OK


class DriftMonitor:
    """Feed it judgements in order (``add``); ``state()`` says where the line stands."""

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self.window: deque[Observation] = deque(maxlen=self.settings.window)
        self.baseline: list[Observation] = []
        self.seen = 0

    def add(self, record: Any) -> None:
        obs = record if isinstance(record, Observation) else Observation.of(record)
        if obs.decision is None:  # a photo that was not judged says nothing about the stream
            return
        self.seen += 1
        if len(self.baseline) < self.settings.baseline:
            self.baseline.append(obs)
        self.window.append(obs)

    def extend(self, records: Iterable[Any]) -> None:
        for r in records:
            self.add(r)

    def resume(self, first: Iterable[Any], last: Iterable[Any], total: int) -> None:
        """Where feeding a whole stream would leave the monitor, from its ends: the ``first``
        judgements (at least the baseline's worth, or all), the ``last`` after those (at least a
        window's worth, or all) and how many there were in all."""
        self.extend(first)
        self.extend(last)
        self.seen = max(self.seen, total)

    # -- the signals ---------------------------------------------------------------------------

    def _share(self, flags: list[bool], expected: float, what: str) -> dict | None:
        """``flags`` against an expected share at most: the binomial tail P(at least k of n)."""
        if len(flags) < self.settings.min_window:
            return None
        k, n = sum(flags), len(flags)
        p = float(stats.binom.sf(k - 1, n, expected)) if k else 1.0
        return {"state": _level(p), "value": k / n, "expected": expected, "p_value": p,
                "detail": f"{k} of {n} photos {what} ({k / n:.1%}; expected at most {expected:.1%})"}

    def _familiarity(self, window: list[Observation]) -> dict | None:
        values = [o.familiarity for o in window if o.familiarity is not None]
        if len(values) < self.settings.min_window:
            return None
        # "greater": the window's distribution function above the uniform one, i.e. lower familiarity
        test = stats.kstest(values, "uniform", alternative="greater")
        p = float(test.pvalue)
        return {"state": _level(p), "value": float(np.median(values)), "statistic": float(test.statistic),
                "p_value": p, "detail": f"familiarity median {np.median(values):.2f} (0.5 expected), KS p = {_p(p)}"}

    def _against_start(self, window: list[Observation], field: str, what: str) -> dict | None:
        """The window's ``field`` against the baseline's: a two-sample KS test."""
        now = [v for o in window if (v := getattr(o, field)) is not None]
        base = [v for o in self.baseline if (v := getattr(o, field)) is not None]
        if not self._baseline_complete() or len(now) < self.settings.min_window or not base:
            return None
        test = stats.ks_2samp(now, base)
        p = float(test.pvalue)
        return {"state": _level(p), "value": float(np.mean(now)), "baseline": float(np.mean(base)),
                "statistic": float(test.statistic), "p_value": p,
                "detail": f"{what} mean {np.mean(now):.3f} against {np.mean(base):.3f} at the start, KS p = {_p(p)}"}

    def _reject_rate(self, window: list[Observation]) -> dict | None:
        if not self._baseline_complete() or len(window) < self.settings.min_window:
            return None
        centre = sum(o.decision == "defective" for o in self.baseline) / len(self.baseline)
        rate = sum(o.decision == "defective" for o in window) / len(window)
        sigma = math.sqrt(centre * (1 - centre) * (1 / len(window) + 1 / len(self.baseline)))
        # a baseline with no rejects (or only rejects) has no spread: one part's worth instead
        sigma = sigma or 1.0 / len(window)
        z = (rate - centre) / sigma
        state = ALARM if abs(z) > ALARM_SIGMA else WARNING if abs(z) > WARN_SIGMA else OK
        return {"state": state, "value": rate, "centre": centre,
                "limits": [max(0.0, centre - ALARM_SIGMA * sigma), min(1.0, centre + ALARM_SIGMA * sigma)],
                "sigmas": z, "detail": f"reject rate {rate:.1%} against {centre:.1%} at the start ({z:+.1f} sigma)"}

    def _baseline_complete(self) -> bool:
        return len(self.baseline) >= self.settings.baseline

    def state(self) -> dict:
        """``state`` (ok / warning / alarm), ``reasons`` (one line per signal that is not ok) and
        each signal's numbers; a signal without enough judgements yet is null."""
        window = list(self.window)
        s = self.settings
        signals = {"unfamiliar": self._share([not o.familiar for o in window if o.familiar is not None],
                                             s.expected_unfamiliar, "unfamiliar"),
                   "quality": self._share([o.quality for o in window], s.expected_quality,
                                          "named by the image-quality checks"),
                   "familiarity": self._familiarity(window),
                   "p_defect": self._against_start(window, "p_defect", "p(defect)"),
                   "anomaly": self._against_start(window, "anomaly", "anomaly score"),
                   "reject_rate": self._reject_rate(window)}
        live = [s for s in signals.values() if s is not None]
        state = max((s["state"] for s in live), key=LEVELS.__getitem__, default=OK)
        return {"state": state,
                "reasons": [f"{name}: {s['detail']}" for name, s in signals.items() if s and s["state"] != OK],
                "judged": self.seen, "window": len(window), "window_size": self.settings.window,
                "baseline": {"judged": len(self.baseline), "size": self.settings.baseline,
                             "complete": self._baseline_complete()},
                "signals": signals}


def replay(records: Iterable[Any], settings: DriftSettings | None = None, every: int = 1) -> list[dict]:
    """The monitor's state after each ``every``-th judgement of ``records`` (oldest first), each
    with the judgement's index, ``time`` and ``model``: the history ``castinspect drift`` charts."""
    monitor = DriftMonitor(settings)
    history = []
    for r in records:
        before = monitor.seen
        monitor.add(r)
        if monitor.seen > before and monitor.seen % every == 0:
            get = r.get if isinstance(r, dict) else lambda k: getattr(r, k, None)
            history.append({"index": monitor.seen, "time": get("time"), **monitor.state()})
    return history
