"""The station's work behind the routes: judge an upload, commit it, answer; the model, stats
and health. One Predictor and one InspectionLog, both owned by whoever started the station.

Decoding and judging run on a few threads of their own (``Slots``: each decode holds a bounded
amount of memory, so the station's memory is bounded by their number); the wait for a commit and
the health check hold no thread at all, so a database that hangs costs requests a bounded wait
and never stops the health check, the metrics or the page from answering.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable

import anyio
import numpy as np
from fastapi import HTTPException
from fastapi.responses import JSONResponse

from castinspect.core.io import sniff_format
from castinspect.core.parallel import default_workers
from castinspect.core.records import Inspection
from castinspect.inference.annotate import png_base64, png_bytes
from castinspect.inference.explain import explained
from castinspect.inference.predict import Predictor
from castinspect.station.database import SCHEMA_VERSION
from castinspect.station.drift import DriftMonitor
from castinspect.station.log import (
    PROBE_TIMEOUT,
    InspectionLog,
    LogUnavailable,
    image_key,
    not_answering,
)
from castinspect.station.metrics import StationMetrics
from castinspect.station.review import Person, confirmed_label, dispose, history
from castinspect.station.upload import STATUS_FOR_CODE

QUEUE_DEPTH = 64  # requests that may wait for a decode slot
QUEUE_WAIT = 2.0  # seconds one may wait before it is told to come back (503, Retry-After)
PUBLIC_FIELDS = ("id", "source", "label", "score", "p_defect", "decision", "threshold", "reasons",
                 "familiarity", "familiar", "anomaly", "model", "time")


class Slots:
    """At most ``slots`` photos decoded and judged at once, on threads of their own; up to
    ``depth`` more requests wait, each at most ``wait`` seconds; beyond that, 503 with
    Retry-After, so a burst queues and a flood is told to come back instead of filling memory."""

    def __init__(self, slots: int | None = None, depth: int = QUEUE_DEPTH, wait: float = QUEUE_WAIT) -> None:
        self.size = slots or default_workers()
        self.depth, self.wait = depth, wait
        self.waiting = 0
        self._slots = anyio.CapacityLimiter(self.size)
        self._threads = anyio.CapacityLimiter(self.size)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.waiting >= self.depth:
            raise busy(f"{self.waiting} requests already wait for the {self.size} decode slots")
        self.waiting += 1
        try:
            with anyio.fail_after(self.wait):
                await self._slots.acquire()
        except TimeoutError:
            raise busy(f"no decode slot came free within {self.wait:g} s") from None
        finally:
            self.waiting -= 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads)
        finally:
            self._slots.release()

    def state(self) -> dict:
        return {"slots": self.size, "busy": self.size - int(self._slots.available_tokens), "waiting": self.waiting,
                "queue_depth": self.depth, "queue_wait_s": self.wait}


def busy(why: str) -> HTTPException:
    return HTTPException(503, f"station busy, nothing recorded: {why}; retry shortly", headers={"Retry-After": "1"})


class Unrecorded(Exception):
    """A write the log could not confirm, as the client hears it (503): whether the record may be
    in the log after all, and then the id to look it up by (a retry with the same idempotency key
    returns it)."""

    def __init__(self, exc: LogUnavailable, key: str | None = None) -> None:
        super().__init__(str(exc))
        detail = str(exc)
        if exc.recorded is None:
            detail += (f"; look it up at /v1/inspections/{exc.ids[0]}" if len(exc.ids) == 1 else "") + (
                ", or retry with the same Idempotency-Key" if key else
                " (send an Idempotency-Key header so that a retry cannot record the part twice)")
        self.body: dict = {"detail": detail, "recorded": exc.recorded}
        if len(exc.ids) == 1:
            self.body["id"] = exc.ids[0]
        elif exc.ids:
            self.body["ids"] = exc.ids


@dataclass
class Station:
    predictor: Predictor
    log: InspectionLog
    metrics: StationMetrics
    store_images: bool = False
    drift: DriftMonitor = field(default_factory=DriftMonitor)
    slots: Slots = field(default_factory=Slots)
    publisher: Any = None  # station.mqtt.Publisher: told of drift changes and of another model
    follower: Any = None  # station.registry.Follower, when the station follows the registry
    batcher: Any = None  # station.batcher.Batcher: concurrent photos judged in one call
    _drift_lock: threading.Lock = field(default_factory=threading.Lock)

    def resume_drift(self) -> None:
        """Give the monitor this model's first and last records in the log, so that a restart
        neither forgets the line's baseline nor its last window (and reads no more than those)."""
        first, last, total = self.log.ends(self.predictor.model_id, self.drift.settings.baseline,
                                           self.drift.settings.window)
        with self._drift_lock:
            self.drift.resume(first, last, total)

    def switch(self, predictor: Predictor) -> None:
        """Judge with another model from now on (a promotion): a request under way finishes with
        the model it started with; the drift monitor resumes from the new model's own records."""
        drift = DriftMonitor(self.drift.settings)
        drift.resume(*self.log.ends(predictor.model_id, drift.settings.baseline, drift.settings.window))
        with self._drift_lock:
            self.predictor, self.drift = predictor, drift
        self.metrics.model(predictor.model_id)
        if self.publisher is not None:
            self.publisher.model_changed(predictor.model_id)

    def observed(self, inspections: list[Inspection]) -> None:
        with self._drift_lock:
            before = self.drift.seen
            self.drift.extend(inspections)
            changed = self.publisher is not None and self.drift.seen // 10 != before // 10
        if changed:  # every tenth judgement: the line hears when the drift state changes
            self.publisher.drift(self.drift_state())

    def drift_state(self) -> dict:
        with self._drift_lock:
            state = self.drift.state()
        self.metrics.drift(state)
        return state

    # -- judging -----------------------------------------------------------------------------

    async def inspect(self, upload: bytes | IO[bytes], name: str, heatmap: bool, key: str | None = None) -> dict:
        """Read (an upload's file is read in the decode slot, so a queued request holds no photo
        in memory), decode, judge (and explain), commit to the log; the response body. Bad
        photos: 4xx. With an idempotency ``key`` already recorded, the first answer
        (``replayed``)."""
        if heatmap and self.predictor.checkpoint is None:
            raise HTTPException(400, "heatmaps need the model's checkpoint; this server runs an exported "
                                     ".onnx model (ask without heatmap=1)")
        t0 = time.perf_counter()
        if self.batcher is not None and not heatmap:
            insp, sha, image = await self._judge_batched(upload, name)
            png = None
        else:
            insp, png, sha, image = await self.slots.run(self._judge_one, upload, name, heatmap)
        if not insp.judged:
            self.metrics.refused()
            raise HTTPException(STATUS_FOR_CODE.get(insp.error_code, 422), f"{name}: {insp.error}")
        seconds = time.perf_counter() - t0
        duplicates = await self.commit([insp], [seconds * 1000], [image], [key], [sha])  # before we answer
        if duplicates:
            return await self.replay(key, sha)
        self.metrics.judged(insp, seconds)
        self.observed([insp])
        body = public(insp, seconds * 1000)
        if png is not None:
            body["heatmap_png"] = png
        return body

    async def _judge_batched(self, upload: bytes | IO[bytes], name: str) -> tuple:
        """Decode in a slot (its memory freed with it), then join the micro-batch: the model call
        is shared with the requests that arrived within the same few milliseconds."""
        predictor = self.predictor
        self.batcher.expect()
        try:
            prepared, data = await self.slots.run(self._prepare, predictor, upload, name)
        except BaseException:
            self.batcher.cancel()
            raise
        if isinstance(prepared, Inspection):
            self.batcher.cancel()
            return prepared, image_key(data), None
        name, x, reasons, _, xa = prepared
        probs, familiarity, anomaly, _ = await asyncio.wrap_future(self.batcher.submit(predictor, x, xa))
        insp = predictor.inspections([name], probs[None], [reasons],
                                     None if familiarity is None else np.array([familiarity]))
        insp = predictor.second_opinion(insp, None if anomaly is None else np.array([anomaly]))[0]
        return insp, image_key(data), (data, sniff_format(data)) if self.store_images else None

    @staticmethod
    def _prepare(predictor: Predictor, upload: bytes | IO[bytes], name: str) -> tuple:
        data = upload if isinstance(upload, bytes) else upload.read()
        return predictor.prepare_one(data, name), data

    def _judge_one(self, upload: bytes | IO[bytes], name: str, heatmap: bool) -> tuple:
        data = upload if isinstance(upload, bytes) else upload.read()
        insp = self.predictor.predict_one(data, name, heatmap=heatmap)
        png = png_base64(explained(insp.photo, insp.heatmap)) if insp.heatmap is not None else None
        insp.photo = insp.heatmap = None  # the answer carries the overlay; the arrays go now
        image = (data, sniff_format(data)) if self.store_images and insp.judged else None
        return insp, png, image_key(data), image

    async def inspect_batch(self, names: list[str], uploads: list[bytes | IO[bytes]], key: str | None = None) -> dict:
        """Judge several photos; the readable ones are committed in one transaction before the
        answer, each unreadable one gets an ``error`` entry. With ``key``, photo i is recorded
        under ``key#i``: a retry of the batch returns the first answers."""
        t0 = time.perf_counter()
        inspections, shas, images = await self.slots.run(self._judge_batch, names, uploads)
        seconds = (time.perf_counter() - t0) / max(1, len(uploads))
        good = [i for i, insp in enumerate(inspections) if insp.judged]
        duplicates = await self.commit([inspections[i] for i in good], [seconds * 1000] * len(good),
                                       [images[i] for i in good], [f"{key}#{i}" if key else None for i in good],
                                       [shas[i] for i in good])
        items = []
        for i, insp in enumerate(inspections):
            if not insp.judged:
                self.metrics.refused()
                items.append({"source": insp.source, "error": insp.error})
            elif insp.id in duplicates:
                items.append(await self.replay(f"{key}#{i}", shas[i]))
            else:
                self.metrics.judged(insp, seconds)
                self.observed([insp])
                items.append(public(insp, seconds * 1000))
        return {"items": items, "judged": len(good), "errors": len(inspections) - len(good)}

    def _judge_batch(self, names: list[str], uploads: list[bytes | IO[bytes]]) -> tuple[list, list, list]:
        datas = [u if isinstance(u, bytes) else u.read() for u in uploads]
        # One slot, one decoder thread: a batch holds as much decode memory as one photo does.
        inspections = list(self.predictor.predict(datas, names, workers=1))
        images = [(d, sniff_format(d)) if self.store_images else None for d in datas]
        return inspections, [image_key(d) for d in datas], images

    async def commit(self, inspections: list[Inspection], latency_ms: list[float], images: list,
                     keys: list[str | None], hashes: list[str]) -> set[str]:
        """Commit to the log, waiting at most its ``commit_timeout``; if the log cannot take it,
        the client hears so (503, saying whether the record may be in after all) rather than
        getting an answer the log does not hold."""
        try:
            return await self.log.record_async(inspections, latency_ms, images, keys, hashes)
        except LogUnavailable as exc:
            raise Unrecorded(exc, next((k for k in keys if k), None)) from None

    async def replay(self, key: str | None, sha: str) -> dict:
        """The answer first given for ``key``: the same record, not a second one."""
        row = await anyio.to_thread.run_sync(self.log.find_key, key)
        if row is None:  # cannot happen: the key was taken in the log a moment ago
            raise HTTPException(409, f"idempotency key {key!r} is being recorded; retry")
        if row["image_sha256"] and row["image_sha256"] != sha:
            raise HTTPException(422, f"Idempotency-Key {key!r} was used for another photo "
                                     f"(recorded as {row['id']}); use a new key for a new part")
        return {**{k: row[k] for k in PUBLIC_FIELDS}, "latency_ms": row["latency_ms"],
                **({"scores": row["scores"]} if row["scores"] is not None else {}), "replayed": True}

    # -- people ------------------------------------------------------------------------------

    def dispose(self, inspection_id: str, decision: str, label: str | None, note: str | None, who: Person) -> dict:
        """A person's disposition of one inspection, committed; with the inspection's history."""
        row = self.log.get(inspection_id)
        if row is None:
            raise HTTPException(404, f"no inspection {inspection_id}")
        p = self.predictor
        try:
            label = confirmed_label(decision, label, row["label"], p.classes,
                                    None if p.ok_index is None else p.classes[p.ok_index])
            entry = dispose(self.log, inspection_id, decision, label, who, note)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {**entry, "history": history(self.log, inspection_id)}

    async def heatmap(self, inspection_id: str) -> bytes:
        """The stored photo of an inspection, the served model's heatmap over it beside, and the
        colour scale (PNG)."""
        if self.predictor.checkpoint is None:
            raise HTTPException(400, "heatmaps need the model's checkpoint; this server runs an exported .onnx model")
        row = await anyio.to_thread.run_sync(self.log.get, inspection_id)
        stored = row and row["image_sha256"] and await anyio.to_thread.run_sync(self.log.image, row["image_sha256"])
        if not stored:
            raise HTTPException(404, f"no stored image for inspection {inspection_id} (serve --store-images)")

        def explain() -> bytes:
            insp = self.predictor.predict_one(stored[0], row["source"], heatmap=True)
            if insp.heatmap is None:
                raise HTTPException(422, f"{row['source']}: {insp.error}")
            return png_bytes(explained(insp.photo, insp.heatmap))

        return await self.slots.run(explain)

    # -- the rest ----------------------------------------------------------------------------

    def stats(self, since: str | None = None) -> dict:
        own = self.metrics.decisions()
        total = sum(own.values())
        drift = self.drift_state()
        return {**self.log.stats(since=since), "this_server": {**own, "total": total,
                                                    "reject_rate": own["defective"] / total if total else None},
                "drift": {"state": drift["state"], "reasons": drift["reasons"]}}

    def model(self) -> dict:
        p = self.predictor
        ok_class = None if p.ok_index is None else p.classes[p.ok_index]
        return {"model": p.model_id, "classes": p.classes, "ok_class": ok_class,
                "task": "ok / defective" if ok_class else "defect types", "threshold": p.threshold,
                "input_size": p.input_size, "backend": p.backend.name, "heatmaps": p.checkpoint is not None,
                "review_band": list(p.review_band) if p.review_band else None, "on_unfamiliar": p.on_unfamiliar,
                "follows_registry": self.follower is not None, "station": self.log.station}

    async def health(self, details: bool = False) -> JSONResponse:
        """200 when the model is loaded, the log answers within ``PROBE_TIMEOUT`` and its writes
        neither fail nor hang; 503 otherwise. Public (``/healthz``) it names no database and no
        error text; with ``details`` (``/v1/health``, behind the token) it adds the log, the
        writer's state, the decode slots and the problem's detail."""
        try:
            problem = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self.log.probe())), PROBE_TIMEOUT)
        except TimeoutError:
            problem = not_answering(PROBE_TIMEOUT)
        problem = problem or self.log.writer.problem()
        body: dict = {"status": "ok" if problem is None else problem[0], "model": self.predictor.model_id,
                      "schema_version": SCHEMA_VERSION}
        if details:
            body.update(log=self.log.target.describe(), writer=self.log.writer.state(), decoding=self.slots.state(),
                        batching=self.batcher.state() if self.batcher is not None else None)
            if problem:
                body["detail"] = problem[1]
        return JSONResponse(body, 200 if problem is None else 503)


def public(insp: Inspection, latency_ms: float) -> dict:
    """An Inspection as the API answers it."""
    body = {k: getattr(insp, k) for k in PUBLIC_FIELDS}
    body["latency_ms"] = round(latency_ms, 3)
    if insp.scores is not None:
        body["scores"] = insp.scores
    return body
