"""The station's work behind the routes: judge an upload, commit it, answer; the model, stats
and health. One Predictor and one InspectionLog, both owned by whoever started the station."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from castinspect.core.io import sniff_format
from castinspect.core.records import Inspection
from castinspect.inference.annotate import png_base64
from castinspect.inference.explain import overlay
from castinspect.inference.predict import Predictor
from castinspect.station.drift import DriftMonitor
from castinspect.station.log import InspectionLog
from castinspect.station.metrics import StationMetrics
from castinspect.station.upload import STATUS_FOR_CODE


@dataclass
class Station:
    predictor: Predictor
    log: InspectionLog
    metrics: StationMetrics
    store_images: bool = False
    drift: DriftMonitor = field(default_factory=DriftMonitor)
    _drift_lock: threading.Lock = field(default_factory=threading.Lock)

    def resume_drift(self) -> None:
        """Feed the monitor this model's records already in the log (oldest first), so that a
        restart neither forgets the line's baseline nor its last window."""
        with self._drift_lock:
            self.drift.extend(r for r in self.log.iter_rows() if r["model"] == self.predictor.model_id)

    def observed(self, inspections: list[Inspection]) -> None:
        with self._drift_lock:
            self.drift.extend(inspections)

    def drift_state(self) -> dict:
        with self._drift_lock:
            state = self.drift.state()
        self.metrics.drift(state)
        return state

    def commit(self, write) -> None:
        """Run a log write; if the log cannot take it, the client hears so (503) rather than
        getting an answer the log does not hold."""
        try:
            write()
        except Exception as exc:  # noqa: BLE001 - any database error
            raise HTTPException(503, f"inspection log unavailable, nothing recorded: {exc}") from None

    def inspect(self, data: bytes, name: str, heatmap: bool) -> dict:
        """Decode, judge (and explain), commit to the log; the response body. Bad photos: 4xx."""
        if heatmap and self.predictor.checkpoint is None:
            raise HTTPException(400, "heatmaps need the model's checkpoint; this server runs an exported "
                                     ".onnx model (ask without heatmap=1)")
        t0 = time.perf_counter()
        insp = self.predictor.predict_one(data, name, heatmap=heatmap)
        if not insp.judged:
            self.metrics.refused()
            raise HTTPException(STATUS_FOR_CODE.get(insp.error_code, 422), f"{name}: {insp.error}")
        seconds = time.perf_counter() - t0
        image = (data, sniff_format(data)) if self.store_images else None
        self.commit(lambda: self.log.record([insp], [seconds * 1000], [image]))  # committed before we answer
        self.metrics.judged(insp, seconds)
        self.observed([insp])
        body = public(insp, seconds * 1000)
        if insp.heatmap is not None:
            body["heatmap_png"] = png_base64(overlay(insp.photo, insp.heatmap))
        return body

    def inspect_batch(self, names: list[str], datas: list[bytes]) -> dict:
        """Judge several photos; the readable ones are committed in one transaction before the
        answer, each unreadable one gets an ``error`` entry."""
        t0 = time.perf_counter()
        inspections = list(self.predictor.predict(datas, names))
        seconds = (time.perf_counter() - t0) / max(1, len(datas))
        good = [i for i in inspections if i.judged]
        images = [(d, sniff_format(d)) if self.store_images else None
                  for d, i in zip(datas, inspections) if i.judged]
        self.commit(lambda: self.log.record(good, [seconds * 1000] * len(good), images))
        self.observed(good)
        items = []
        for insp in inspections:
            if insp.judged:
                self.metrics.judged(insp, seconds)
                items.append(public(insp, seconds * 1000))
            else:
                self.metrics.refused()
                items.append({"source": insp.source, "error": insp.error})
        return {"items": items, "judged": len(good), "errors": len(inspections) - len(good)}

    def stats(self) -> dict:
        own = self.metrics.decisions()
        total = sum(own.values())
        drift = self.drift_state()
        return {**self.log.stats(), "this_server": {**own, "total": total,
                                                    "reject_rate": own["defective"] / total if total else None},
                "drift": {"state": drift["state"], "reasons": drift["reasons"]}}

    def model(self) -> dict:
        p = self.predictor
        ok_class = None if p.ok_index is None else p.classes[p.ok_index]
        return {"model": p.model_id, "classes": p.classes, "ok_class": ok_class,
                "task": "ok / defective" if ok_class else "defect types", "threshold": p.threshold,
                "input_size": p.input_size, "backend": p.backend.name, "heatmaps": p.checkpoint is not None}

    def health(self, details: bool = False) -> JSONResponse:
        """200 when the model is loaded, the log answers and its last write did not fail; 503
        when either fails. Public (``/healthz``) it names no database and no error text; with
        ``details`` (``/v1/health``, behind the token) it adds the log, the writer's state and
        the error."""
        writer = self.log.writer_state()
        body: dict = {"status": "ok", "model": self.predictor.model_id}
        if details:
            body.update(log=self.log.target.describe(), writer=writer)
        try:
            body["schema_version"] = self.log.schema_version()
        except Exception as exc:  # noqa: BLE001 - any database error
            return JSONResponse({**body, "status": "log unavailable", **({"detail": str(exc)} if details else {})}, 503)
        if writer["failing"]:  # reads may answer while writes fail (a full disk, a read-only file)
            return JSONResponse({**body, "status": "log writes failing", "since": writer["error_since"]}, 503)
        return JSONResponse(body)


def public(insp: Inspection, latency_ms: float) -> dict:
    """An Inspection as the API answers it."""
    body = {"id": insp.id, "source": insp.source, "label": insp.label, "score": insp.score,
            "p_defect": insp.p_defect, "decision": insp.decision, "threshold": insp.threshold,
            "reasons": insp.reasons, "familiarity": insp.familiarity, "familiar": insp.familiar,
            "model": insp.model, "latency_ms": round(latency_ms, 3), "time": insp.time}
    if insp.scores is not None:
        body["scores"] = insp.scores
    return body
