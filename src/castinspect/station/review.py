"""People settle the parts the model was unsure of: the review queue and the dispositions.

A disposition is a person's decision on one inspection: ok or defective (and which class), who
(the name of the token they used), their role, when, and an optional note. Dispositions are
append-only: a second one supersedes the first for the counts, and both stay in the log. The
inspection's own row keeps the model's judgement untouched; ``disposition`` there is the final
person's decision, ``awaiting`` marks the parts in the queue (review decisions and photos unlike
the training photos, until someone settles them).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from castinspect.core.decision import DEFECTIVE, OK
from castinspect.core.records import utc_now
from castinspect.station.database import COLUMNS, Database
from castinspect.station.log import row_dict
from castinspect.station.writer import count_final

DISPOSITIONS = (OK, DEFECTIVE)
FIELDS = ("id", "inspection_id", "decision", "label", "who", "role", "time", "note")
MAX_NOTE = 500  # characters


@dataclass(frozen=True)
class Person:
    """Who is asking: the name of their token, and its role (``access.ROLES``)."""

    name: str
    role: str


def confirmed_label(decision: str, label: str | None, record_label: str | None, classes: list[str],
                    ok_class: str | None) -> str:
    """The class a disposition confirms: the one named, else the obvious one (the OK class for
    ok; the model's own label when it named a defect; the only defect class of a two-class
    model). Raises ValueError when it is not obvious or not one of the model's classes."""
    if decision not in DISPOSITIONS:
        raise ValueError(f"decision must be ok or defective, not {decision!r}")
    if decision == OK:
        if ok_class is None:
            raise ValueError("this model has no OK class (it classifies defect types): confirm a defect type")
        if label not in (None, ok_class):
            raise ValueError(f"ok confirms the OK class {ok_class!r}, not {label!r}")
        return ok_class
    defects = [c for c in classes if c != ok_class]
    if label is None:
        if record_label in defects:
            return record_label
        if len(defects) == 1:
            return defects[0]
        raise ValueError(f"say which defect type (label): one of {', '.join(defects)}")
    if label not in defects:
        raise ValueError(f"label {label!r} is not one of the model's defect classes ({', '.join(defects)})")
    return label


def dispose(log, inspection_id: str, decision: str, label: str, who: Person, note: str | None = None) -> dict:
    """Record a person's disposition of one inspection (committed before this returns) and move
    the part's final decision in the counters; the disposition as stored."""
    if note is not None and len(note) > MAX_NOTE:
        raise ValueError(f"note: at most {MAX_NOTE} characters")
    entry = {"id": uuid.uuid4().hex, "inspection_id": inspection_id, "decision": decision, "label": label,
             "who": who.name, "role": who.role, "time": utc_now(), "note": note}

    def work(db: Database) -> dict:
        if db.execute("SELECT 1 FROM dispositions WHERE id = ?", [entry["id"]]).fetchone():
            return entry  # the retry of a commit that landed
        row = db.execute("SELECT time, decision, disposition, station, source, request_key FROM inspections "
                         "WHERE id = ?", [inspection_id]).fetchone()
        if row is None:
            raise LookupError(f"no inspection {inspection_id}")
        when, model_decision, previous, station, source, key = row
        db.execute(f"INSERT INTO dispositions ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})",
                   [entry[f] for f in FIELDS])
        db.execute("UPDATE inspections SET disposition = ?, awaiting = NULL WHERE id = ?", [decision, inspection_id])
        before = previous or model_decision
        if before != decision:
            count_final(db, Counter({(when, before): -1, (when, decision): 1}))
        if log.on_disposition is not None:  # the line hears it (MQTT), from the same transaction
            log.on_disposition(db, {**entry, "model_decision": model_decision, "station": station, "source": source,
                                    "request_key": key})
        return entry

    return log.run(work)


def history(log, inspection_id: str) -> list[dict]:
    """Every disposition of one inspection, oldest first (the last is final)."""
    rows = log.query(f"SELECT {', '.join(FIELDS)} FROM dispositions WHERE inspection_id = ? ORDER BY seq",
                     [inspection_id])
    return [dict(zip(FIELDS, r)) for r in rows]


def queue(log, limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
    """The parts awaiting a person, oldest first (as they reach the review bin), and how many."""
    rows = log.query(f"SELECT {', '.join(COLUMNS)} FROM inspections WHERE awaiting = 1 ORDER BY seq "
                     f"LIMIT ? OFFSET ?", [limit, offset])
    total = log.query("SELECT COUNT(*) FROM inspections WHERE awaiting = 1")[0][0]
    return [row_dict(r) for r in rows], int(total)


def reviewed(log, batch: int = 1000):
    """Every inspection with a disposition, with its final one (label, who, when), oldest first:
    what ``dataset from-log`` turns into training photos."""
    last = 0
    while True:
        rows = log.query(
            f"SELECT d.seq, {', '.join('d.' + f for f in FIELDS)}, i.source, i.image_sha256, i.model, i.station "
            f"FROM dispositions d JOIN inspections i ON i.id = d.inspection_id "
            f"WHERE d.seq > ? AND d.seq = (SELECT MAX(seq) FROM dispositions WHERE inspection_id = d.inspection_id) "
            f"ORDER BY d.seq LIMIT ?", [last, batch])
        if not rows:
            return
        for r in rows:
            yield {**dict(zip(FIELDS, r[1:1 + len(FIELDS)])),
                   **dict(zip(("source", "image_sha256", "model", "station"), r[1 + len(FIELDS):]))}
        last = rows[-1][0]
