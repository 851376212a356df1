"""The inspection log: a durable record of every judgement, in SQLite or PostgreSQL.

    InspectionLog.open("castinspect.db")                      # SQLite (WAL), a bare path
    InspectionLog.open("sqlite:////var/lib/castinspect.db")   # SQLite, SQLAlchemy-style URL
    InspectionLog.open("postgresql://user@host:5432/name")    # several stations, one log

``record`` returns only once its rows are committed, so a caller that answers after it never
reports a judgement the log could lose. Writes go through one writer thread that commits whatever
has queued up in one transaction (group commit): under load many requests share one fsync, and
each still waits for its own commit.

The schema is versioned (``database.MIGRATIONS``). Timestamps are UTC ISO-8601 text of one fixed
width ("2026-11-22T07:38:53.123+00:00"): the same in both databases, exact on the round trip, and
ordered as text.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from castinspect.core.decision import DECISIONS
from castinspect.core.records import Inspection, utc_now
from castinspect.core.sinks import write_records
from castinspect.station.database import COLUMNS, Database, Target, migrate, parse_url

DEFAULT_DB = "castinspect.db"


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Pending:
    rows: list[tuple]
    images: list[tuple]
    done: Future


class InspectionLog:
    """Append and query inspections. Thread-safe: ``record`` from any thread (it blocks until the
    rows are committed), queries under a lock on a second connection."""

    def __init__(self, target: Target, station: str | None = None) -> None:
        self.target = target
        self.station = station
        self._reader = Database(target)
        self.migrated_from = migrate(self._reader)
        self._read_lock = threading.Lock()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._writer_db = Database(target)
        # The writer's state, for an honest health check: when it last committed, and the error of
        # its last attempt while that attempt failed (None once a commit succeeds again).
        self.last_commit: str | None = None
        self.write_error: tuple[str, str] | None = None  # (time, error)
        self._writer = threading.Thread(target=self._write_loop, name="inspection-log-writer", daemon=True)
        self._writer.start()

    @classmethod
    def open(cls, url: str | Path = DEFAULT_DB, station: str | None = None, create: bool = True) -> "InspectionLog":
        """The log at ``url`` (see ``database.parse_url``). With ``create`` False, a SQLite file
        that does not exist is an error instead of a new, empty log."""
        target = parse_url(url)
        if not create and target.dialect == "sqlite" and not Path(target.location).is_file():
            raise FileNotFoundError(f"{target.location}: no such inspection log")
        return cls(target, station)

    # -- writing -----------------------------------------------------------------------------

    def record(self, inspections: list[Inspection], latency_ms: list[float | None] | None = None,
               images: list[tuple[bytes, str | None] | None] | None = None) -> None:
        """Commit these inspections (with their latencies and, optionally, the photo bytes and
        format for audit); returns after the commit. Raises if the commit failed."""
        if not inspections:
            return
        latency_ms = latency_ms or [None] * len(inspections)
        images = images or [None] * len(inspections)
        rows, blobs = [], []
        for insp, ms, image in zip(inspections, latency_ms, images, strict=True):
            sha = None
            if image is not None:
                sha = image_key(image[0])
                blobs.append((sha, image[1], image[0], insp.time))
            rows.append((insp.id, insp.time, insp.source, insp.label, insp.score, insp.p_defect,
                         insp.decision, insp.threshold, insp.model,
                         json.dumps(insp.scores) if insp.scores is not None else None, ms, self.station, sha,
                         json.dumps(insp.reasons), insp.familiarity,
                         None if insp.familiar is None else int(insp.familiar)))
        if not self._writer.is_alive():
            raise RuntimeError(f"the inspection log {self.target.describe()} is closed")
        pending = _Pending(rows, blobs, Future())
        self._queue.put(pending)
        pending.done.result()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while True:  # everything that queued up while the last commit ran: one transaction
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                try:
                    self._commit(batch)
                except Exception:  # noqa: BLE001 - a dropped connection (e.g. PostgreSQL restarted):
                    self._writer_db = self._reconnect(self._writer_db)  # once more on a fresh one
                    self._commit(batch)
            except Exception as exc:  # noqa: BLE001 - every waiter hears about it
                self.write_error = (utc_now(), f"{type(exc).__name__}: {exc}")
                for p in batch:
                    p.done.set_exception(exc)
            else:
                self.last_commit, self.write_error = utc_now(), None
                for p in batch:
                    p.done.set_result(None)

    def writer_state(self) -> dict:
        """Whether the last commit attempt failed (and why), when one last succeeded, and how
        many requests wait for the writer."""
        return {"failing": self.write_error is not None, "last_commit": self.last_commit,
                "error_since": self.write_error[0] if self.write_error else None,
                "error": self.write_error[1] if self.write_error else None, "queued": self._queue.qsize()}

    def _commit(self, batch: list[_Pending]) -> None:
        db = self._writer_db
        images = {sha: (sha, fmt, data, t) for p in batch for sha, fmt, data, t in p.images}
        with db.transaction():
            if images:
                db.executemany("INSERT INTO images (sha256, format, bytes, first_seen) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (sha256) DO NOTHING", list(images.values()))
            # ON CONFLICT on the record's id: the retry of a commit that did land (its
            # acknowledgement lost with the connection) adds nothing twice.
            db.executemany(f"INSERT INTO inspections ({', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' * len(COLUMNS))}) ON CONFLICT (id) DO NOTHING",
                           [r for p in batch for r in p.rows])

    # -- reading -----------------------------------------------------------------------------

    def _reconnect(self, db: Database) -> Database:
        """A fresh connection in place of one that failed; the old one if none can be made now
        (the next failure tries again)."""
        try:
            fresh = Database(self.target)
        except Exception:  # noqa: BLE001 - still unreachable
            return db
        try:
            db.close()
        except Exception:  # noqa: BLE001 - it was broken already
            pass
        return fresh

    def _query(self, statement: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._read_lock:
            try:
                return self._reader.execute(statement, params).fetchall()
            except Exception:
                if self.target.dialect == "sqlite":
                    raise
                self._reader = self._reconnect(self._reader)  # one retry on a fresh connection
                return self._reader.execute(statement, params).fetchall()

    def page(self, limit: int = 50, offset: int = 0, decision: str | None = None) -> tuple[list[dict], int]:
        """(inspections newest first, the number of all rows matching the filter)."""
        where, params = ("WHERE decision = ?", [decision]) if decision else ("", [])
        total = self._query(f"SELECT COUNT(*) FROM inspections {where}", params)[0][0]
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM inspections {where} "
                           f"ORDER BY seq DESC LIMIT ? OFFSET ?", params + [limit, offset])
        return [_row_dict(r) for r in rows], int(total)

    def get(self, inspection_id: str) -> dict | None:
        rows = self._query(f"SELECT {', '.join(COLUMNS)} FROM inspections WHERE id = ?", [inspection_id])
        return _row_dict(rows[0]) if rows else None

    def image(self, sha256: str) -> tuple[bytes, str | None] | None:
        rows = self._query("SELECT bytes, format FROM images WHERE sha256 = ?", [sha256])
        return (bytes(rows[0][0]), rows[0][1]) if rows else None

    def counts(self, since: str | None = None) -> tuple[dict[str, int], dict[str, int]]:
        """Inspections per decision and per label (class, or defect type), all time or from
        ``since`` (an ISO time) on: one query for both."""
        where, params = ("WHERE time >= ?", [since]) if since else ("", [])
        rows = self._query(f"SELECT decision, label, COUNT(*) FROM inspections {where} "
                           f"GROUP BY decision, label", params)
        decisions, labels = {d: 0 for d in DECISIONS}, {}
        for decision, label, n in rows:
            decisions[decision] = decisions.get(decision, 0) + int(n)
            if label is not None:
                labels[label] = labels.get(label, 0) + int(n)
        return decisions, dict(sorted(labels.items()))

    def stats(self, now: datetime | None = None,
              windows: tuple[tuple[str, timedelta | None], ...] = (
                  ("last_hour", timedelta(hours=1)), ("last_24h", timedelta(days=1)), ("all", None))) -> dict:
        """Counts per decision and per label, and the reject rate (defective / all judged), over
        recent windows."""
        now = now or datetime.now(timezone.utc)
        out = {}
        for name, span in windows:
            since = (now - span).isoformat(timespec="milliseconds") if span else None
            c, labels = self.counts(since)
            total = sum(c.values())
            out[name] = {**c, "total": total, "reject_rate": c["defective"] / total if total else None,
                         "labels": labels}
        return out

    def iter_rows(self, batch: int = 1000) -> Iterator[dict]:
        """Every inspection, oldest first, a page at a time (bounded memory for a big log)."""
        last = 0
        while True:
            rows = self._query(f"SELECT seq, {', '.join(COLUMNS)} FROM inspections WHERE seq > ? "
                               f"ORDER BY seq LIMIT ?", [last, batch])
            if not rows:
                return
            for r in rows:
                yield _row_dict(r[1:])
            last = rows[-1][0]

    def export(self, out: IO[str], fmt: str = "csv") -> int:
        """Write every inspection to ``out`` as CSV, a JSON array or JSON lines (oldest first);
        returns the number of rows."""
        return sum(1 for _ in write_records(self.iter_rows(), fmt, out, list(COLUMNS)))

    def schema_version(self) -> int:
        return int(self._query("SELECT version FROM schema_version")[0][0])

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join()
        self._writer_db.close()
        self._reader.close()

    def __enter__(self) -> "InspectionLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _row_dict(row: tuple) -> dict:
    d = dict(zip(COLUMNS, row))
    d["scores"] = json.loads(d["scores"]) if d["scores"] else None
    d["reasons"] = json.loads(d["reasons"]) if d["reasons"] else []  # rows from before version 4: none
    d["familiar"] = None if d["familiar"] is None else bool(d["familiar"])
    return d
