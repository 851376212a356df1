"""``castinspect serve``: the inspection station's HTTP service, beside the line.

    POST /v1/inspect            one photo (multipart field ``file``) -> its judgement, logged
    POST /v1/inspect/batch      several photos (fields ``files``)
    GET  /v1/inspections        the log, newest first (?limit=&offset=&decision=)
    GET  /v1/inspections/{id}   one judgement; /image the stored photo, when images are kept
    GET  /v1/stats              counts and reject rate over recent windows
    GET  /v1/model              the model being served
    GET  /healthz               liveness, no token
    GET  /metrics               Prometheus text format
    GET  /                      the operator page (static, no external assets)

Every judgement goes through the one Predictor and is committed to the inspection log before the
response is sent. The photo's type comes from its content (``io.read_image``), its name is only a
label, never a path. A bearer token, when set, guards everything but ``/healthz`` and the page.
"""

from __future__ import annotations

import hmac
import threading
import time
from importlib import resources
from pathlib import PurePath
from typing import Annotated, Optional

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from castinspect.annotate import png_base64
from castinspect.explain import overlay
from castinspect.inspection_log import DECISIONS, InspectionLog
from castinspect.io import ImageError, read_image, sniff_format
from castinspect.predict import Predictor
from castinspect.records import Inspection

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
MAX_BATCH_FILES = 64
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# ImageError.code -> HTTP status: the request was understood but its photo cannot be judged.
STATUS_FOR_CODE = {"empty": 400, "too_large": 413, "not_image": 415, "unsupported": 415,
                   "too_many_pixels": 422, "too_small": 422, "corrupt": 422, "missing": 400}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp", "tiff": "image/tiff",
               "webp": "image/webp"}


class Metrics:
    """Counters for /metrics, kept by hand (a handful of lines; no client library needed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.decisions = {d: 0 for d in DECISIONS}
        self.rejected = 0  # photos refused as unreadable
        self.responses: dict[tuple[str, int], int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.started = time.time()

    def judged(self, insp: Inspection, seconds: float) -> None:
        with self.lock:
            self.decisions[insp.decision] += 1
            self.latency_sum += seconds
            i = next((k for k, b in enumerate(LATENCY_BUCKETS) if seconds <= b), len(LATENCY_BUCKETS))
            self.buckets[i] += 1

    def refused(self, n: int = 1) -> None:
        with self.lock:
            self.rejected += n

    def response(self, route: str, status: int) -> None:
        with self.lock:
            self.responses[route, status] = self.responses.get((route, status), 0) + 1

    def text(self, model: str) -> str:
        with self.lock:
            lines = ["# HELP castinspect_inspections_total Photos judged by this server, by decision.",
                     "# TYPE castinspect_inspections_total counter"]
            lines += [f'castinspect_inspections_total{{decision="{d}"}} {n}' for d, n in self.decisions.items()]
            lines += ["# HELP castinspect_rejected_photos_total Uploads refused as unreadable or invalid.",
                      "# TYPE castinspect_rejected_photos_total counter",
                      f"castinspect_rejected_photos_total {self.rejected}",
                      "# HELP castinspect_http_responses_total HTTP responses by route and status.",
                      "# TYPE castinspect_http_responses_total counter"]
            lines += [f'castinspect_http_responses_total{{route="{r}",status="{s}"}} {n}'
                      for (r, s), n in sorted(self.responses.items())]
            lines += ["# HELP castinspect_judge_seconds Time to judge one photo (decode, model, heatmap).",
                      "# TYPE castinspect_judge_seconds histogram"]
            cumulative = 0
            for bound, n in zip((*LATENCY_BUCKETS, "+Inf"), self.buckets):
                cumulative += n
                lines.append(f'castinspect_judge_seconds_bucket{{le="{bound}"}} {cumulative}')
            lines += [f"castinspect_judge_seconds_sum {self.latency_sum:.6f}",
                      f"castinspect_judge_seconds_count {cumulative}",
                      "# HELP castinspect_model_info The model being served.",
                      "# TYPE castinspect_model_info gauge",
                      f'castinspect_model_info{{model="{model}"}} 1',
                      "# HELP castinspect_start_time_seconds When this server started (Unix time).",
                      "# TYPE castinspect_start_time_seconds gauge",
                      f"castinspect_start_time_seconds {self.started:.3f}"]
        return "\n".join(lines) + "\n"


class UploadLimit:
    """ASGI middleware: refuses a body larger than ``limit`` bytes with 413 — at once when the
    Content-Length says so, else as soon as the streamed body passes it — and counts responses
    per route for /metrics."""

    def __init__(self, app, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _too_large(self.limit)(scope, receive, counting_send)
        else:
            seen = 0

            async def limited_receive():
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, f"upload larger than {self.limit} bytes")
                return message

            try:
                await self.app(scope, limited_receive, counting_send)
            except HTTPException as exc:  # raised while the body streamed in, before any response
                await JSONResponse({"detail": exc.detail}, exc.status_code)(scope, receive, counting_send)
        route = scope.get("route")
        self.metrics.response(getattr(route, "path", "unmatched"), status["code"])


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"upload larger than {limit} bytes"}, 413)


def _label(filename: str | None) -> str:
    """The upload's name as a label only: its last path component, printable, at most 200 chars."""
    name = PurePath((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:200]
    return name if name not in ("", ".", "..") else "upload"


def create_app(predictor: Predictor, log: InspectionLog, token: str | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD, store_images: bool = False) -> FastAPI:
    """The service around one Predictor and one InspectionLog (both owned by the caller)."""
    metrics = Metrics()
    # FastAPI's own /docs and /redoc pages load their scripts from a CDN; a line PC may have no
    # internet, so /docs is an offline page rendered from the same OpenAPI schema (/openapi.json).
    app = FastAPI(title="castinspect", version="1", docs_url=None, redoc_url=None,
                  description="Judge casting photos: verdict, p(defective), heatmap; every judgement logged.")
    app.add_middleware(UploadLimit, limit=max_upload, metrics=metrics)
    expected = f"Bearer {token}".encode() if token else None

    def authorised(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: no timing oracle on the token
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorised)]
    photo_errors = {400: {"description": "empty photo"}, 401: {"description": "missing or wrong bearer token"},
                    413: {"description": "upload too large"}, 415: {"description": "not an image"},
                    422: {"description": "corrupt, truncated, absurd dimensions, or no file field"},
                    503: {"description": "inspection log unavailable: nothing recorded"}}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """One readable sentence, e.g. "body.file: Field required", instead of a nested list."""
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": problems}, 422)

    def commit(write) -> None:
        """Run a log write; if the log cannot take it, the client hears so (503) rather than
        getting an answer the log does not hold."""
        try:
            write()
        except Exception as exc:  # noqa: BLE001 - any database error
            raise HTTPException(503, f"inspection log unavailable, nothing recorded: {exc}") from None

    def judge(data: bytes, name: str, heatmap: bool) -> dict:
        """Decode, judge (and explain), commit to the log; the response body. Bad photos: 4xx."""
        if heatmap and predictor.checkpoint is None:
            raise HTTPException(400, "heatmaps need the model's checkpoint; this server runs an exported "
                                     ".onnx model (ask without heatmap=1)")
        t0 = time.perf_counter()
        try:
            gray = read_image(data, name)
        except ImageError as exc:
            metrics.refused()
            raise HTTPException(STATUS_FOR_CODE.get(exc.code, 422), f"{name}: {exc.reason}") from None
        insp, heat = predictor.judge_photo(gray, name, heatmap=heatmap)
        seconds = time.perf_counter() - t0
        image = (data, sniff_format(data)) if store_images else None
        commit(lambda: log.record([insp], [seconds * 1000], [image]))  # committed before we answer
        metrics.judged(insp, seconds)
        body = _public(insp, seconds * 1000)
        if heat is not None:
            body["heatmap_png"] = png_base64(overlay(gray, heat))
        return body

    @app.post("/v1/inspect", dependencies=guarded, responses=photo_errors)
    def inspect(file: Annotated[UploadFile, File(description="The photo (JPEG, PNG, BMP, TIFF or WebP).")],
                heatmap: Annotated[bool, Query(description="Add a PNG heatmap overlay (base64).")] = False) -> dict:
        """Judge one photo; the answer comes after its record is committed."""
        return judge(file.file.read(), _label(file.filename), heatmap)

    @app.post("/v1/inspect/batch", dependencies=guarded, responses=photo_errors)
    def inspect_batch(files: Annotated[list[UploadFile], File(description="Up to 64 photos.")]) -> dict:
        """Judge several photos in one request. Each unreadable photo gets an ``error`` entry; the
        rest are judged and committed (in one transaction) before the answer."""
        if len(files) > MAX_BATCH_FILES:
            raise HTTPException(413, f"{len(files)} files in one batch; at most {MAX_BATCH_FILES}")
        t0 = time.perf_counter()
        names = [_label(f.filename) for f in files]
        datas = [f.file.read() for f in files]
        inspections = predictor.predict(datas, names)
        seconds = (time.perf_counter() - t0) / max(1, len(files))
        good = [i for i in inspections if i.ok]
        images = [(d, sniff_format(d)) if store_images else None for d, i in zip(datas, inspections) if i.ok]
        commit(lambda: log.record(good, [seconds * 1000] * len(good), images))
        items = []
        for insp in inspections:
            if insp.ok:
                metrics.judged(insp, seconds)
                items.append(_public(insp, seconds * 1000))
            else:
                metrics.refused()
                items.append({"source": insp.source, "error": insp.error})
        return {"items": items, "judged": len(good), "errors": len(inspections) - len(good)}

    @app.get("/v1/inspections", dependencies=guarded)
    def inspections(limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page.")] = 50,
                    offset: Annotated[int, Query(ge=0, description="Rows to skip (newest first).")] = 0,
                    decision: Annotated[Optional[str], Query(pattern="^(ok|defective|review)$",
                                                             description="Only ok, defective or review.")] = None) -> dict:
        """The log, newest first; ``total`` counts every row matching the filter."""
        items, total = log.page(limit, offset, decision)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.get("/v1/inspections/{inspection_id}", dependencies=guarded)
    def inspection(inspection_id: str) -> dict:
        row = log.get(inspection_id)
        if row is None:
            raise HTTPException(404, f"no inspection {inspection_id}")
        return row

    @app.get("/v1/inspections/{inspection_id}/image", dependencies=guarded)
    def inspection_image(inspection_id: str) -> Response:
        """The photo as it was uploaded, when the server keeps images (``--store-images``)."""
        row = log.get(inspection_id)
        stored = log.image(row["image_sha256"]) if row and row["image_sha256"] else None
        if stored is None:
            raise HTTPException(404, f"no stored image for inspection {inspection_id}")
        return Response(stored[0], media_type=MEDIA_TYPES.get(stored[1] or "", "application/octet-stream"))

    @app.get("/v1/stats", dependencies=guarded)
    def stats() -> dict:
        """Counts per decision and reject rate (defective / judged) over the last hour, the last
        24 hours and all time, from the log (every station writing to it), and this server's own."""
        with metrics.lock:
            own = dict(metrics.decisions)
        total = sum(own.values())
        return {**log.stats(), "this_server": {**own, "total": total,
                                               "reject_rate": own["defective"] / total if total else None}}

    @app.get("/v1/model", dependencies=guarded)
    def model() -> dict:
        return {"model": predictor.model_id, "classes": predictor.classes, "threshold": predictor.threshold,
                "input_size": predictor.input_size, "backend": predictor.backend.name,
                "heatmaps": predictor.checkpoint is not None}

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """200 when the model is loaded and the log answers; 503 (with the reason) when it does not."""
        body = {"status": "ok", "model": predictor.model_id, "log": log.target.describe()}
        try:
            body["schema_version"] = log.schema_version()
        except Exception as exc:  # noqa: BLE001 - any database error
            return JSONResponse({**body, "status": "log unavailable", "detail": str(exc)}, 503)
        return JSONResponse(body)

    @app.get("/metrics", dependencies=guarded, response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.text(predictor.model_id)

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        return api_reference(app.openapi())

    page = (resources.files("castinspect") / "assets" / "web" / "index.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    return app


def api_reference(schema: dict) -> str:
    """The OpenAPI schema as one self-contained HTML page: each endpoint with its description,
    parameters, request body and responses."""
    from html import escape

    parts = [f"<h1>{escape(schema['info']['title'])} API</h1><p>{escape(schema['info'].get('description', ''))}</p>"
             "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI "
             f"{escape(schema.get('openapi', ''))}).</p>"]
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2><code>{method.upper()} {escape(path)}</code></h2>")
            parts.append(f"<p><b>{escape(op.get('summary', ''))}</b></p>")
            if op.get("description"):
                parts.append(f"<pre>{escape(op['description'])}</pre>")
            rows = [f"<tr><td><code>{escape(p['name'])}</code></td><td>{p['in']}</td><td>{'yes' if p.get('required') else 'no'}</td>"
                    f"<td>{escape(p.get('description', '') or p.get('schema', {}).get('description', ''))}</td></tr>"
                    for p in op.get("parameters", [])]
            if rows:
                parts.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>what</th></tr>"
                             + "".join(rows) + "</table>")
            for kind, content in op.get("requestBody", {}).get("content", {}).items():
                ref = content.get("schema", {}).get("$ref", "")
                fields = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1], {})
                described = [f"<code>{escape(k)}</code> {escape(v.get('description', ''))}"
                             for k, v in fields.get("properties", {}).items()]
                parts.append(f"<p>body ({escape(kind)}): {'; '.join(described)}</p>")
            responses = ", ".join(f"{code} {escape(r.get('description', ''))}" for code, r in op.get("responses", {}).items())
            parts.append(f"<p>responses: {responses}</p>")
    style = ("body{font:15px/1.4 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
             "pre{white-space:pre-wrap;background:#f4f4f6;padding:.5em}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>castinspect API</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def _public(insp: Inspection, latency_ms: float) -> dict:
    body = {"id": insp.id, "source": insp.source, "label": insp.label, "score": insp.score,
            "p_defect": insp.p_defect, "decision": insp.decision, "threshold": insp.threshold,
            "model": insp.model, "latency_ms": round(latency_ms, 3), "time": insp.time}
    if insp.scores is not None:
        body["scores"] = insp.scores
    return body


def check_binding(host: str, token: str | None) -> None:
    """Loopback by default; anywhere else only with a token."""
    if host not in LOOPBACK and not token:
        raise ValueError(f"binding to {host} exposes the service beyond this machine: "
                         "set a bearer token (--token or CASTINSPECT_TOKEN)")


def serve(predictor: Predictor, log: InspectionLog, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD, store_images: bool = False) -> None:
    import uvicorn

    check_binding(host, token)
    app = create_app(predictor, log, token=token, max_upload=max_upload, store_images=store_images)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
