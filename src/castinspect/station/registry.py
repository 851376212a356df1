"""The model registry, in the inspection log: every model a line may run, and which one it runs.

A registered model is kept whole in the log (its checkpoint's bytes), with its id (the weights'
hash, the id every record names), when and by whom it was registered, a fingerprint of the data
it was trained on and its validation metrics. ``promote`` makes one the active model, with a row
in ``promotions`` (who, when); ``serve`` and ``watch`` without ``--model`` follow the active model
(``Follower``): every station on the log switches within seconds, without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from castinspect.core.records import utc_now
from castinspect.models.checkpoint import load_checkpoint, run_model
from castinspect.station.database import Database

FIELDS = ("id", "created", "source", "sha256", "data_fingerprint", "metrics", "classes", "active", "registered_by")
FOLLOW_EVERY = 5.0  # seconds between a station's looks at the registry


def model_file(path: str | os.PathLike) -> Path:
    """A checkpoint, or a run directory's ``model.ckpt``."""
    path = run_model(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{path}: register the checkpoint (.ckpt); an exported .onnx file is made from it")
    return path


def fingerprint(path: Path, data: dict | None) -> str | None:
    """What the model was trained on: the SHA-256 of its run's ``split.csv`` (every photo, its
    label and split) where the run directory is there, else of the data summary in the checkpoint."""
    split = path.parent / "split.csv"
    if split.is_file():
        return "split.csv:" + hashlib.sha256(split.read_bytes()).hexdigest()[:16]
    if data:
        return "summary:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return None


def register(log, path: str | os.PathLike, who: str) -> dict:
    """Add a model to the registry (a model already there is left as it is); its entry."""
    path = model_file(path)
    ckpt = load_checkpoint(path)  # a file that is not a checkpoint is refused here
    data = path.read_bytes()
    entry = {"id": ckpt.model_id, "created": utc_now(), "source": str(path.absolute()),
             "sha256": hashlib.sha256(data).hexdigest(), "data_fingerprint": fingerprint(path, ckpt.info.get("data")),
             "metrics": json.dumps(ckpt.info.get("metrics", {}).get("validation")), "classes": json.dumps(ckpt.classes),
             "active": 0, "registered_by": who}

    def work(db: Database) -> None:
        if db.execute("SELECT 1 FROM models WHERE id = ?", [entry["id"]]).fetchone() is None:
            db.execute(f"INSERT INTO models ({', '.join(FIELDS)}, bytes) VALUES ({', '.join('?' * (len(FIELDS) + 1))})",
                       [*(entry[f] for f in FIELDS), data])

    log.run(work)
    return get(log, entry["id"])


def _entry(row: tuple) -> dict:
    d = dict(zip(FIELDS, row))
    d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else None
    d["classes"] = json.loads(d["classes"])
    d["active"] = bool(d["active"])
    return d


def models(log) -> list[dict]:
    """Every registered model, oldest first (without its bytes)."""
    return [_entry(r) for r in log.query(f"SELECT {', '.join(FIELDS)} FROM models ORDER BY created, id")]


def get(log, model_id: str) -> dict | None:
    rows = log.query(f"SELECT {', '.join(FIELDS)} FROM models WHERE id = ?", [model_id])
    return _entry(rows[0]) if rows else None


def active(log) -> str | None:
    """The id of the active model, or None when none was ever promoted."""
    rows = log.query("SELECT id FROM models WHERE active = 1")
    return rows[0][0] if rows else None


def promote(log, model_id: str, who: str) -> dict:
    """Make a registered model the active one (the one before stays registered); its entry."""
    def work(db: Database) -> None:
        if db.execute("SELECT 1 FROM models WHERE id = ?", [model_id]).fetchone() is None:
            raise LookupError(f"no model {model_id} in the registry (castinspect model add first)")
        db.execute("UPDATE models SET active = CASE WHEN id = ? THEN 1 ELSE 0 END", [model_id])
        db.execute("INSERT INTO promotions (model, who, time) VALUES (?, ?, ?)", [model_id, who, utc_now()])

    log.run(work)
    return get(log, model_id)


def promotions(log) -> list[dict]:
    rows = log.query("SELECT model, who, time FROM promotions ORDER BY seq")
    return [dict(zip(("model", "who", "time"), r)) for r in rows]


def load(log, model_id: str, **predictor_args: Any):
    """A Predictor for a registered model (its bytes from the log, through a temporary file)."""
    from castinspect.inference.predict import Predictor

    rows = log.query("SELECT bytes FROM models WHERE id = ?", [model_id])
    if not rows:
        raise LookupError(f"no model {model_id} in the registry")
    with tempfile.TemporaryDirectory(prefix="castinspect-model-") as tmp:
        path = Path(tmp) / f"{model_id}.ckpt"
        path.write_bytes(bytes(rows[0][0]))
        return Predictor.load(path, **predictor_args)


class Follower:
    """Keeps a station on the registry's active model: every ``every`` seconds (and when told,
    ``check``), if another model is active, it is loaded and handed to ``switch``. A model that
    fails to load is reported to ``problem`` and the station keeps the one it has."""

    def __init__(self, log, current: str, switch: Callable, problem: Callable[[str], None],
                 every: float = FOLLOW_EVERY, **predictor_args: Any) -> None:
        self.log, self.current, self.switch, self.problem = log, current, switch, problem
        self.every, self.args = every, predictor_args
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="registry-follower", daemon=True)
        self._thread.start()

    def check(self) -> None:
        with self._lock:
            try:
                wanted = active(self.log)
            except Exception as exc:  # noqa: BLE001 - the log is down: health says so; try again later
                self.problem(f"the registry could not be read: {exc}")
                return
            if wanted is None or wanted == self.current:
                return
            try:
                predictor = load(self.log, wanted, **self.args)
            except Exception as exc:  # noqa: BLE001 - keep judging with the model in use
                self.problem(f"model {wanted} could not be loaded: {exc}")
                return
            self.switch(predictor)
            self.current = wanted

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.check()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
