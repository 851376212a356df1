"""``castinspect serve``: the inspection station's HTTP service, beside the line.

Every judgement goes through the one Predictor and is committed to the inspection log before the
response is sent. The photo's type comes from its content (``core.io``), its name is only a
label, never a path. The routes are listed in ``routes``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from castinspect.inference.predict import Predictor
from castinspect.station import routes
from castinspect.station.drift import DriftMonitor, DriftSettings
from castinspect.station.log import InspectionLog
from castinspect.station.metrics import StationMetrics
from castinspect.station.service import Station
from castinspect.station.upload import DEFAULT_MAX_UPLOAD, SameOrigin, UploadLimit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MIN_TOKEN = 16  # characters: a blank or short token is a guessable one


def create_app(predictor: Predictor, log: InspectionLog, token: str | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD, store_images: bool = False,
               drift: DriftSettings | None = None, trusted_hosts: set[str] | None = None) -> FastAPI:
    """The service around one Predictor and one InspectionLog (both owned by the caller). A model
    without an OK class is served too: every part is defective, its record names the type.
    ``drift``: the drift monitor's window and baseline (``station.drift``). ``trusted_hosts``
    (for a station without a token): the Host names it answers to, refusing cross-site writes
    (``upload.SameOrigin``); ``serve`` passes the bound host and loopback's names."""
    station = Station(predictor, log, StationMetrics(predictor.model_id), store_images, DriftMonitor(drift))
    station.resume_drift()
    check_token(token)
    # /docs is our offline page (routes.docs): FastAPI's own loads its scripts from a CDN.
    app = FastAPI(title="castinspect", version="1", docs_url=None, redoc_url=None,
                  description="Judge casting photos: verdict, p(defective), heatmap; every judgement logged.")
    app.state.station = station
    app.state.token = token.encode() if token else None
    if token is None and trusted_hosts is not None:
        app.add_middleware(SameOrigin, hosts=trusted_hosts)
    app.add_middleware(UploadLimit, limit=max_upload, on_response=station.metrics.response)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(routes.api)
    app.include_router(routes.public)
    return app


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """One readable sentence, e.g. "body.file: Field required", instead of a nested list."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"detail": problems}, 422)


def check_token(token: str | None) -> None:
    if token is not None and len(token.strip()) < MIN_TOKEN:
        raise ValueError(f"the bearer token must be at least {MIN_TOKEN} characters (not blank): "
                         "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'")


def check_binding(host: str, token: str | None) -> None:
    """Loopback by default; anywhere else only with a token (of at least MIN_TOKEN characters)."""
    check_token(token)
    if host not in LOOPBACK and not token:
        raise ValueError(f"binding to {host} exposes the service beyond this machine: "
                         "set a bearer token (--token or CASTINSPECT_TOKEN)")


def serve(predictor: Predictor, log: InspectionLog, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD, store_images: bool = False,
          drift: DriftSettings | None = None) -> None:
    import uvicorn

    check_binding(host, token)
    app = create_app(predictor, log, token=token, max_upload=max_upload, store_images=store_images, drift=drift,
                     trusted_hosts={host, *LOOPBACK})
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
