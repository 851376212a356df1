"""The station's Prometheus metrics (``/metrics``), kept by ``prometheus_client`` in a registry of
the app's own, so several apps in one process (tests, one per model) never share counters."""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from castinspect.core.decision import DECISIONS
from castinspect.core.records import Inspection
from castinspect.station.drift import LEVELS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StationMetrics:
    def __init__(self, model_id: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inspections = Counter("castinspect_inspections", "Photos judged by this server, by decision.",
                                   ["decision"], registry=r)
        for d in DECISIONS:
            self.inspections.labels(d)  # every decision appears from the start, at 0
        self.rejected = Counter("castinspect_rejected_photos", "Uploads refused as unreadable or invalid.",
                                registry=r)
        self.responses = Counter("castinspect_http_responses", "HTTP responses by route and status.",
                                 ["route", "status"], registry=r)
        self.judge_seconds = Histogram("castinspect_judge_seconds",
                                       "Time to judge one photo (decode, model, heatmap).",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.model_info = Gauge("castinspect_model_info", "The model being served.", ["model"], registry=r)
        self.model(model_id)
        Gauge("castinspect_start_time_seconds", "When this server started (Unix time).",
              registry=r).set(time.time())
        self.drift_state = Gauge("castinspect_drift_state", "Drift monitor: 0 ok, 1 warning, 2 alarm.", registry=r)
        self.drift_signal = Gauge("castinspect_drift_signal_state", "Each drift signal: 0 ok, 1 warning, 2 alarm.",
                                  ["signal"], registry=r)
        self.drift_value = Gauge("castinspect_drift_signal_value",
                                 "Each drift signal's value over the window (a share, median or mean).",
                                 ["signal"], registry=r)
        self.drift_p = Gauge("castinspect_drift_signal_p_value", "Each drift test's p-value over the window.",
                             ["signal"], registry=r)

    def model(self, model_id: str) -> None:
        """The model now served (one label at a time: a promotion replaces it)."""
        self.model_info.clear()
        self.model_info.labels(model_id).set(1)

    def judged(self, insp: Inspection, seconds: float) -> None:
        self.inspections.labels(insp.decision).inc()
        self.judge_seconds.observe(seconds)

    def refused(self, n: int = 1) -> None:
        self.rejected.inc(n)

    def response(self, route: str, status: int) -> None:
        self.responses.labels(route, str(status)).inc()

    def drift(self, state: dict) -> None:
        """The drift monitor's state (``DriftMonitor.state``); a signal not yet measured is NaN."""
        self.drift_state.set(LEVELS[state["state"]])
        for name, s in state["signals"].items():
            self.drift_signal.labels(name).set(LEVELS[s["state"]] if s else float("nan"))
            self.drift_value.labels(name).set(s["value"] if s else float("nan"))
            self.drift_p.labels(name).set(s.get("p_value", float("nan")) if s else float("nan"))

    def decisions(self) -> dict[str, int]:
        """This server's judgements so far, per decision."""
        return {d: int(self.registry.get_sample_value("castinspect_inspections_total", {"decision": d}) or 0)
                for d in DECISIONS}

    def text(self) -> bytes:
        return generate_latest(self.registry)
