"""``castinspect serve``: the inspection station's HTTP service, beside the line.

Every judgement goes through the one Predictor and is committed to the inspection log before the
response is sent. The photo's type comes from its content (``core.io``), its name is only a
label, never a path. The routes are listed in ``routes``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from castinspect.inference.predict import Predictor
from castinspect.station import routes, v2
from castinspect.station.access import Tokens, check_token
from castinspect.station.batcher import MAX_BATCH, MAX_WAIT, Batcher
from castinspect.station.drift import DriftMonitor, DriftSettings
from castinspect.station.http import timed_h11
from castinspect.station.log import InspectionLog, LogUnavailable
from castinspect.station.metrics import StationMetrics
from castinspect.station.registry import Follower
from castinspect.station.service import (
    QUEUE_DEPTH,
    QUEUE_WAIT,
    Slots,
    Station,
    Unrecorded,
)
from castinspect.station.upload import (
    BODY_TIMEOUT,
    DEFAULT_MAX_UPLOAD,
    SameOrigin,
    UploadLimit,
)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
V2_NAME = v2.MODEL_NAME


@dataclass(frozen=True)
class Limits:
    """How much the station takes on at once, and how long it waits for whom.

    ``decode_slots`` photos decoded and judged at once (None: one per core, at most 8), each
    holding at most about 7 bytes per pixel of ``core.io.MAX_PIXELS``; ``queue_depth`` requests waiting for a
    slot, each at most ``queue_wait`` seconds (then 503 with Retry-After); ``connections`` open at
    once (uvicorn answers 503 beyond); a request's headers must arrive within ``header_timeout``
    seconds and its body within ``body_timeout`` (408); up to ``batch`` photos that arrive within
    ``batch_wait`` seconds of each other are judged in one model call (``station.batcher``; 1:
    each alone). The commit's time limit is the log's (``InspectionLog.commit_timeout``)."""

    max_upload: int = DEFAULT_MAX_UPLOAD
    decode_slots: int | None = None
    queue_depth: int = QUEUE_DEPTH
    queue_wait: float = QUEUE_WAIT
    connections: int = 256
    header_timeout: float = 10.0
    body_timeout: float = BODY_TIMEOUT
    batch: int = MAX_BATCH
    batch_wait: float = MAX_WAIT


def create_app(predictor: Predictor, log: InspectionLog, token: str | None = None,
               max_upload: int | None = None, store_images: bool = False,
               drift: DriftSettings | None = None, trusted_hosts: set[str] | None = None,
               limits: Limits | None = None, publisher=None, tokens: Tokens | None = None,
               follow: dict | None = None, model_name: str = V2_NAME) -> FastAPI:
    """The service around one Predictor and one InspectionLog (both owned by the caller). A model
    without an OK class is served too: every part is defective, its record names the type.
    ``drift``: the drift monitor's window and baseline (``station.drift``). ``trusted_hosts``
    (for a station without a token): the Host names it answers to, refusing cross-site writes
    (``upload.SameOrigin``); ``serve`` passes the bound host and loopback's names. ``limits``:
    ``Limits`` (``max_upload``, when given, overrides its upload limit). ``publisher``: the MQTT
    publisher (``station.mqtt``), told of drift changes. ``tokens``: named tokens with roles
    (``access.Tokens``; ``token`` is one engineer's). ``follow``: the Predictor's settings to load
    the registry's active model with, when the station follows it (``registry.Follower``).
    ``model_name``: the model's name in the Open Inference Protocol routes (``station.v2``)."""
    limits = limits or Limits()
    max_upload = max_upload or limits.max_upload
    station = Station(predictor, log, StationMetrics(predictor.model_id), store_images, DriftMonitor(drift),
                      Slots(limits.decode_slots, limits.queue_depth, limits.queue_wait), publisher)
    station.resume_drift()
    if limits.batch > 1:
        station.batcher = Batcher(limits.batch, limits.batch_wait)
        app_closing = [station.batcher.close]
    else:
        app_closing = []
    tokens = tokens or Tokens.of(token)
    if follow is not None:
        station.follower = Follower(log, predictor.model_id, station.switch, _model_problem, **follow)
    # /docs is our offline page (routes.docs): FastAPI's own loads its scripts from a CDN.
    app = FastAPI(title="castinspect", version="1", docs_url=None, redoc_url=None,
                  description="Judge casting photos: verdict, p(defective), heatmap; every judgement logged.")
    app.state.station = station
    app.state.tokens = tokens
    app.state.v2_name = model_name
    if tokens is None and trusted_hosts is not None:
        app.add_middleware(SameOrigin, hosts=trusted_hosts)
    app.add_middleware(UploadLimit, limit=max_upload, on_response=station.metrics.response,
                       body_timeout=limits.body_timeout)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Unrecorded, _unrecorded)
    app.add_exception_handler(LogUnavailable, _log_unavailable)
    app.include_router(routes.api)
    app.include_router(routes.public)
    app.include_router(v2.router, dependencies=[Depends(routes.authorised)])
    app.include_router(v2.public)
    if station.follower is not None:
        app_closing.append(station.follower.close)
    app.router.on_shutdown.extend(app_closing)
    return app


def _model_problem(text: str) -> None:
    logging.getLogger("castinspect.station").warning("%s; judging on with the model in use", text)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """One readable sentence, e.g. "body.file: Field required", instead of a nested list."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"detail": problems}, 422)


async def _unrecorded(request: Request, exc: Unrecorded) -> JSONResponse:
    return JSONResponse(exc.body, 503, headers={"Retry-After": "5"})


async def _log_unavailable(request: Request, exc: LogUnavailable) -> JSONResponse:
    """A read the log did not answer in time."""
    return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": "5"})


def check_binding(host: str, token: str | None, tokens: Tokens | None = None) -> None:
    """Loopback by default; anywhere else only with a token (of at least MIN_TOKEN characters)."""
    check_token(token)
    if host not in LOOPBACK and not token and tokens is None:
        raise ValueError(f"binding to {host} exposes the service beyond this machine: "
                         "set a bearer token (--token or CASTINSPECT_TOKEN)")


def uvicorn_config(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None):
    """uvicorn's configuration for the station: its connection limit, the keep-alive and header
    time limits (``station.http``)."""
    import uvicorn

    limits = limits or Limits()
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          http=timed_h11(limits.header_timeout), limit_concurrency=limits.connections,
                          timeout_keep_alive=5)


def serve(predictor: Predictor, log: InspectionLog, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, store_images: bool = False, drift: DriftSettings | None = None,
          limits: Limits | None = None, publisher=None, tokens: Tokens | None = None,
          follow: dict | None = None, model_name: str = V2_NAME) -> None:
    import uvicorn

    check_binding(host, token, tokens)
    app = create_app(predictor, log, token=token, store_images=store_images, drift=drift,
                     trusted_hosts={host, *LOOPBACK}, limits=limits, publisher=publisher, tokens=tokens,
                     follow=follow, model_name=model_name)
    uvicorn.Server(uvicorn_config(app, host, port, limits)).run()
