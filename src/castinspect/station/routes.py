"""The station's routes: each parses its request and calls the Station (``service``).

    POST /v1/inspect            one photo (multipart field ``file``) -> its judgement, logged
    POST /v1/inspect/batch      several photos (fields ``files``)
    GET  /v1/inspections        the log, newest first (?limit=&offset=&decision=)
    GET  /v1/inspections/{id}   one judgement; /image the stored photo, when images are kept;
                                /heatmap that photo with the served model's heatmap
    POST /v1/inspections/{id}/disposition   a person's decision (who: their token's name)
    GET  /v1/inspections/{id}/dispositions  every disposition of it, oldest first
    GET  /v1/review             the parts awaiting a person, oldest first
    GET  /v1/models             the model registry; POST /v1/models/{id}/promote (engineers)
    GET  /v1/me                 who the token belongs to, and their role
    GET  /v1/stats              counts and reject rate over recent windows
    GET  /v1/model              the model being served
    GET  /healthz               liveness, no token
    GET  /metrics               Prometheus text format
    GET  /docs                  the API reference, offline
    GET  /                      the operator page (static, no external assets)

A bearer token, when set, guards everything but ``/healthz``, ``/docs`` and the page; each
token has a name and a role (``access``): operators inspect and settle parts, engineers also
promote models.

Routes that touch no database (health, metrics, the model, the page) are coroutines: they answer
even while every thread waits on a database that hangs. So are the inspect routes, whose work
runs in the station's decode slots and whose wait for the commit holds no thread.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Literal, Optional

from fastapi import (
    APIRouter,
    Depends,
    File,
    Header,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from castinspect.station import registry, review
from castinspect.station import schemas as S
from castinspect.station.access import ENGINEER, LOCAL
from castinspect.station.apidoc import api_reference
from castinspect.station.metrics import CONTENT_TYPE
from castinspect.station.schemas import shape
from castinspect.station.service import Station
from castinspect.station.upload import MAX_BATCH_FILES, MEDIA_TYPES, upload_label


async def station(request: Request) -> Station:  # async: a dependency of its own needs no thread
    return request.app.state.station


async def authorised(request: Request) -> review.Person:
    """The person the bearer token belongs to (``local`` on a station without tokens)."""
    tokens = request.app.state.tokens
    if tokens is None:
        return LOCAL
    # The scheme is case-insensitive (RFC 7235): "Bearer", "bearer" and "BEARER" all name it.
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    person = tokens.who(given.strip()) if scheme.lower() == "bearer" else None
    if person is None:
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
    return person


async def engineer(person: Annotated[review.Person, Depends(authorised)]) -> review.Person:
    if person.role != ENGINEER:
        raise HTTPException(403, f"{person.name} is an {person.role}: promoting models takes an engineer's token")
    return person


StationDep = Annotated[Station, Depends(station)]
PersonDep = Annotated[review.Person, Depends(authorised)]
api = APIRouter(dependencies=[Depends(authorised)])
public = APIRouter()
PHOTO_ERRORS = {400: {"description": "empty photo"}, 401: {"description": "missing or wrong bearer token"},
                413: {"description": "upload too large"}, 415: {"description": "not an image"},
                422: {"description": "corrupt, truncated, absurd dimensions, or no file field"},
                503: {"description": "station busy (Retry-After), or the inspection log could not confirm the "
                                     "record: ``recorded`` false (nothing recorded) or null (it may be: "
                                     "look ``id`` up, or retry with the same Idempotency-Key)"}}
KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"  # printable ASCII, no spaces


async def request_key(
        idempotency_key: Annotated[Optional[str], Header(
            pattern=KEY_PATTERN, description="A key of the client's choosing (e.g. the part or trigger id), unique "
            "across the log: a retry with the same key returns the first answer instead of recording the part "
            "twice.")] = None,
        x_request_id: Annotated[Optional[str], Header(
            pattern=KEY_PATTERN, description="Read as Idempotency-Key when that is absent.")] = None) -> Optional[str]:
    return idempotency_key or x_request_id


async def one_file(request: Request) -> None:
    """Two ``file`` fields in one request: which photo was meant? Refused, not guessed."""
    form = await request.form()
    if len(form.getlist("file")) > 1:
        raise HTTPException(422, "file: one photo per request (use /v1/inspect/batch for several)")


@api.post("/v1/inspect", responses={**PHOTO_ERRORS, **shape(S.Judgement)}, dependencies=[Depends(one_file)])
async def inspect(s: StationDep,
                  file: Annotated[UploadFile, File(description="The photo (JPEG, PNG, BMP, TIFF or WebP).")],
                  key: Annotated[Optional[str], Depends(request_key)],
                  heatmap: Annotated[bool, Query(description="Add a PNG (base64): the photo, its heatmap overlay beside it "
                                                   "(scaled by p(defect)) and the colour scale.")] = False) -> dict:
    """Judge one photo; the answer comes after its record is committed. With an
    ``Idempotency-Key`` (or ``X-Request-Id``) header already recorded, the first answer, marked
    ``replayed``; without one, every request is a new record."""
    return await s.inspect(file.file, upload_label(file.filename), heatmap, key)


@api.post("/v1/inspect/batch", responses={**PHOTO_ERRORS, **shape(S.Batch)})
async def inspect_batch(s: StationDep, files: Annotated[list[UploadFile], File(description="Up to 64 photos.")],
                        key: Annotated[Optional[str], Depends(request_key)]) -> dict:
    """Judge several photos in one request. Each unreadable photo gets an ``error`` entry; the
    rest are judged and committed (in one transaction) before the answer. With an
    ``Idempotency-Key``, photo i is recorded under ``KEY#i``."""
    if len(files) > MAX_BATCH_FILES:
        raise HTTPException(413, f"{len(files)} files in one batch; at most {MAX_BATCH_FILES}")
    return await s.inspect_batch([upload_label(f.filename) for f in files], [f.file for f in files], key)


@api.get("/v1/inspections", responses=shape(S.Page))
def inspections(s: StationDep,
                limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page.")] = 50,
                offset: Annotated[int, Query(ge=0, le=10 ** 12, description="Rows to skip (newest first).")] = 0,
                decision: Annotated[Optional[str], Query(pattern="^(ok|defective|review)$",
                                                         description="Only ok, defective or review.")] = None) -> dict:
    """The log, newest first; ``total`` counts every row matching the filter."""
    items, total = s.log.page(limit, offset, decision)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@api.get("/v1/inspections/{inspection_id}", responses={**shape(S.Record), 404: {"description": "no such inspection"}})
def inspection(s: StationDep, inspection_id: str) -> dict:
    row = s.log.get(inspection_id)
    if row is None:
        raise HTTPException(404, f"no inspection {inspection_id}")
    return row


@api.get("/v1/inspections/{inspection_id}/image")
def inspection_image(s: StationDep, inspection_id: str) -> Response:
    """The photo as it was uploaded, when the server keeps images (``--store-images``)."""
    row = s.log.get(inspection_id)
    stored = s.log.image(row["image_sha256"]) if row and row["image_sha256"] else None
    if stored is None:
        raise HTTPException(404, f"no stored image for inspection {inspection_id}")
    return Response(stored[0], media_type=MEDIA_TYPES.get(stored[1] or "", "application/octet-stream"))


@api.get("/v1/inspections/{inspection_id}/heatmap", responses={404: {"description": "no stored photo"}})
async def inspection_heatmap(s: StationDep, inspection_id: str) -> Response:
    """The stored photo, the served model's heatmap over it beside, and the colour scale (PNG),
    for the review queue."""
    return Response(await s.heatmap(inspection_id), media_type="image/png")


class Disposition(BaseModel):
    decision: Literal["ok", "defective"] = Field(description="The person's decision.")
    label: Optional[str] = Field(None, max_length=100, description="The class confirmed (default: the OK class for "
                                 "ok; for defective the model's defect label, or the only defect class).")
    note: Optional[str] = Field(None, max_length=review.MAX_NOTE, description="Why, in a few words.")


@api.post("/v1/inspections/{inspection_id}/disposition", responses={
    **shape(S.Disposed), 404: {"description": "no such inspection"}, 422: {"description": "a label the model does not have"}})
def disposition(s: StationDep, who: PersonDep, inspection_id: str, body: Disposition) -> dict:
    """Settle a part: the person's decision is stored beside the model's (who: the token's name;
    when), committed before the answer. A second disposition supersedes the first for the counts;
    both stay in the log (``history``)."""
    return s.dispose(inspection_id, body.decision, body.label, body.note, who)


@api.get("/v1/inspections/{inspection_id}/dispositions", responses=shape(S.Dispositions))
def dispositions(s: StationDep, inspection_id: str) -> dict:
    """Every disposition of one inspection, oldest first; the last is final."""
    return {"items": review.history(s.log, inspection_id)}


@api.get("/v1/review", responses=shape(S.Queue))
def review_queue(s: StationDep,
                 limit: Annotated[int, Query(ge=1, le=1000, description="Parts per page.")] = 50,
                 offset: Annotated[int, Query(ge=0, le=10 ** 12, description="Parts to skip.")] = 0) -> dict:
    """The parts awaiting a person (review decisions, and photos unlike the training photos),
    oldest first, with ``total`` awaiting."""
    items, total = review.queue(s.log, limit, offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@api.get("/v1/models", responses=shape(S.Registry))
def models(s: StationDep) -> dict:
    """The model registry: every registered model and which is active (``serving``: this station's)."""
    return {"items": registry.models(s.log), "active": registry.active(s.log), "serving": s.predictor.model_id}


@api.post("/v1/models/{model_id}/promote", responses={**shape(S.Promoted), 403: {"description": "not an engineer's token"},
                                                      404: {"description": "no such model in the registry"}})
def promote(s: StationDep, who: Annotated[review.Person, Depends(engineer)], model_id: str) -> dict:
    """Make a registered model the active one; stations that follow the registry switch to it
    (this one before answering, the others within seconds)."""
    try:
        entry = registry.promote(s.log, model_id, who.name)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    if s.follower is not None:
        s.follower.check()
    return {**entry, "serving": s.predictor.model_id}


@api.get("/v1/me", responses=shape(S.Me))
async def me(who: PersonDep) -> dict:
    return {"name": who.name, "role": who.role}


ISO_TIME = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?$"


@api.get("/v1/stats", responses=shape(S.Stats))
def stats(s: StationDep, since: Annotated[Optional[str], Query(
        pattern=ISO_TIME, description="Also count from this UTC time on (e.g. the shift's start), hour by hour.")] = None) -> dict:
    """Final decisions (a person's disposition where there is one, else the model's), the parts
    awaiting review apart, and the reject rate of the decided parts (defective / (ok +
    defective)) over the last hour, the last 24 hours and all time, from the log (every station
    writing to it); the model's own decisions beside (``model``); this server's own."""
    return s.stats(since)


@api.get("/v1/drift")
async def drift(s: StationDep) -> dict:
    """Where the line stands: ``state`` (ok / warning / alarm), the ``reasons``, and each signal
    over the rolling window of this model's judgements (``station.drift``)."""
    return s.drift_state()


@api.get("/v1/model", responses=shape(S.ModelInfo))
async def model(s: StationDep) -> dict:
    return s.model()


@api.get("/metrics")
async def prometheus(s: StationDep) -> Response:
    s.drift_state()  # the drift gauges as of now
    return Response(s.metrics.text(), media_type=CONTENT_TYPE)


@public.get("/healthz", responses={**shape(S.Health), 503: {"description": "unhealthy: the same shape"}})
async def healthz(s: StationDep) -> JSONResponse:
    """200 when the model is loaded, the log answers (within half a second, as the log this
    station opened) and its writes neither fail nor hang; 503 when not (no token needed, so it
    names neither the database nor the error)."""
    return await s.health()


@api.get("/v1/health")
async def health(s: StationDep) -> JSONResponse:
    """``/healthz`` with the details: the log's target, the writer's state (last commit, the
    failing write's time and error, a commit under way, requests queued), the decode slots, and
    a failure's text."""
    return await s.health(details=True)


@public.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def docs(request: Request) -> str:
    return api_reference(request.app.openapi(), str(request.base_url))


PAGE = (resources.files("castinspect") / "station" / "web" / "index.html").read_text()


@public.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> str:
    return PAGE
