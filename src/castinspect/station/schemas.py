"""The shapes of the station's answers, for the API reference (``/docs``, ``/openapi.json``).

They document; they do not filter: the routes return plain dicts, and each route names its shape
in ``responses``, so a field added to an answer is never dropped by a stale model.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

Decision = Literal["ok", "defective", "review"]


class Judgement(BaseModel):
    id: str = Field(description="The record's id in the inspection log.")
    source: str = Field(description="The photo's name as uploaded (a label, never a path).")
    label: str = Field(description="The class the model chose (a defect type, or the OK class).")
    score: float = Field(description="p(label).")
    p_defect: Optional[float] = Field(description="p(defective); null for a model without an OK class.")
    decision: Decision = Field(description="ok, defective, or review (a person decides).")
    threshold: Optional[float] = Field(description="The operating threshold: defective when p_defect >= threshold.")
    reasons: list[str] = Field(description="Why the photo is unlike the training photos (unfamiliar, blurred, ...).")
    familiarity: Optional[float] = Field(description="How familiar the photo looks, 0-1 (null: not measured).")
    familiar: Optional[bool] = Field(description="Whether it is familiar enough to be judged on its own.")
    anomaly: Optional[float] = Field(None, description="The anomaly model's p(defect), where the station has one "
                                                       "(serve --anomaly-model); a part passes only if both pass.")
    model: str = Field(description="The id of the model that judged it.")
    time: str = Field(description="UTC, ISO 8601.")
    latency_ms: float = Field(description="Decode, judgement and commit, in milliseconds.")
    scores: Optional[dict[str, float]] = Field(None, description="p per class, for several defect types.")
    heatmap_png: Optional[str] = Field(None, description="With heatmap=1: base64 PNG of the photo, its heatmap "
                                                         "overlay (scaled by p(defect)) and the colour scale.")
    replayed: Optional[bool] = Field(None, description="True when an Idempotency-Key was recorded already: the "
                                                       "first answer, not a second record.")


class Failed(BaseModel):
    source: str
    error: str = Field(description="Why this photo was not judged.")


class Batch(BaseModel):
    items: list[Judgement | Failed] = Field(description="One per photo, in upload order.")
    judged: int
    errors: int


class Record(BaseModel):
    id: str
    time: str
    source: str
    label: Optional[str]
    score: Optional[float]
    p_defect: Optional[float]
    decision: Optional[Decision] = Field(description="The model's decision (a person's is ``disposition``).")
    threshold: Optional[float]
    model: str
    scores: Optional[dict[str, float]]
    latency_ms: Optional[float]
    station: Optional[str]
    image_sha256: Optional[str]
    reasons: list[str]
    familiarity: Optional[float]
    familiar: Optional[bool]
    anomaly: Optional[float] = Field(None, description="The anomaly model's p(defect), if one judged too.")
    request_key: Optional[str] = Field(description="The client's Idempotency-Key, or the watcher's key.")
    disposition: Optional[Literal["ok", "defective"]] = Field(description="The final person's decision, if any.")
    awaiting: bool = Field(description="Whether the part waits in the review queue.")


class Page(BaseModel):
    items: list[Record]
    total: int = Field(description="Every row matching the filter.")
    limit: int
    offset: int


class Window(BaseModel):
    ok: int = Field(description="Final decisions: a person's disposition where there is one, else the model's.")
    defective: int
    awaiting_review: int = Field(description="Parts still waiting for a person.")
    total: int
    decided: int = Field(description="ok + defective.")
    reject_rate: Optional[float] = Field(description="defective / decided; a part awaiting review is neither.")
    model: dict[str, int] = Field(description="The model's own decisions: ok, defective, review.")
    labels: dict[str, int] = Field(description="The model's labels (classes, or defect types).")


class Stats(BaseModel):
    last_hour: Window
    last_24h: Window
    all: Window
    since: Optional[Window] = Field(None, description="With ?since=: from that time on, with its ``hours``.")
    this_server: dict = Field(description="This server's own judgements since it started.")
    drift: dict = Field(description="The drift monitor's state and reasons.")


class ModelInfo(BaseModel):
    model: str
    classes: list[str]
    ok_class: Optional[str]
    task: str = Field(description="'ok / defective', or 'defect types' without an OK class.")
    threshold: Optional[float]
    input_size: int
    backend: str
    heatmaps: bool = Field(description="Whether heatmaps can be asked for (the checkpoint is served).")
    review_band: Optional[list[float]] = Field(description="[lo, hi): parts in it go to a person.")
    on_unfamiliar: str
    follows_registry: bool = Field(description="Whether the station switches to the registry's active model.")
    station: Optional[str]


class DispositionEntry(BaseModel):
    id: str
    inspection_id: str
    decision: Literal["ok", "defective"]
    label: str = Field(description="The class confirmed.")
    who: str = Field(description="The name of the token used.")
    role: Literal["operator", "engineer"]
    time: str
    note: Optional[str]


class Disposed(DispositionEntry):
    history: list[DispositionEntry] = Field(description="Every disposition of the part, oldest first.")


class Dispositions(BaseModel):
    items: list[DispositionEntry]


class Queue(Page):
    total: int = Field(description="Every part awaiting a person.")


class RegistryEntry(BaseModel):
    id: str
    created: str
    source: str
    sha256: str
    data_fingerprint: Optional[str]
    metrics: Optional[dict]
    classes: list[str]
    active: bool
    registered_by: str


class Registry(BaseModel):
    items: list[RegistryEntry]
    active: Optional[str]
    serving: str


class Promoted(RegistryEntry):
    serving: str = Field(description="The model this station judges with now.")


class Me(BaseModel):
    name: str
    role: Literal["operator", "engineer"]


class Health(BaseModel):
    status: str = Field(description="ok, or what is wrong (log unavailable, log writes failing, ...).")
    model: str
    schema_version: int


def shape(model: type[BaseModel]) -> dict:
    """``responses`` entry documenting a 200 answer's shape."""
    return {200: {"model": model, "description": "OK"}}
