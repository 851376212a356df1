"""The inspection log: a durable record of every judgement, in SQLite or PostgreSQL.

    InspectionLog.open("castinspect.db")                      # SQLite (WAL), a bare path
    InspectionLog.open("sqlite:////var/lib/castinspect.db")   # SQLite, SQLAlchemy-style URL
    InspectionLog.open("postgresql://user@host:5432/name")    # several stations, one log

``record`` returns only once its rows are committed, so a caller that answers after it never
reports a judgement the log could lose; writes go through one writer thread (``station.writer``:
group commit, bounded waits). Reads run on a reader thread of their own and are waited for a
bounded time; ``probe`` checks, on a third, that the log answers and is still the log opened.

The schema is versioned (``database.MIGRATIONS``). Timestamps are UTC ISO-8601 text of one fixed
width ("2026-11-22T07:38:53.123+00:00"): the same in both databases, exact on the round trip, and
ordered as text.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from castinspect.core.records import Inspection, utc_now
from castinspect.core.sinks import write_records
from castinspect.station.counts import WINDOWS, hourly, summary
from castinspect.station.database import (
    COLUMNS,
    SCHEMA_VERSION,
    Database,
    Target,
    identity,
    migrate,
    parse_url,
)
from castinspect.station.writer import LogUnavailable, Pending, Writer, write_probe

DEFAULT_DB = "castinspect.db"
COMMIT_TIMEOUT = 10.0  # seconds a request waits for its commit (or a read for the log) before 503
PROBE_TIMEOUT = 0.5  # seconds health waits for the log to answer
MIN_FREE = 1 << 20  # bytes free on a SQLite log's disk below which it is called full


def not_answering(timeout: float) -> tuple[str, str]:
    return "log not answering", f"the log did not answer a health check within {timeout:g} s"


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class InspectionLog:
    """Append and query inspections. Thread-safe: ``record`` from any thread (it blocks until the
    rows are committed, at most ``commit_timeout`` seconds), queries under a lock on a second
    connection (waiting at most as long for it)."""

    def __init__(self, target: Target, station: str | None = None, commit_timeout: float = COMMIT_TIMEOUT) -> None:
        self.target = target
        self.station = station
        self.commit_timeout = commit_timeout
        self._reader = Database(target)
        self.migrated_from, self.log_id = migrate(self._reader)
        self._file = self._reader.file  # the SQLite file opened, by device and inode
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="inspection-log-reader")
        self._probe = ThreadPoolExecutor(1, thread_name_prefix="inspection-log-probe")
        self._probe_db: Database | None = None
        self._probing: Future | None = None
        self._probe_lock = threading.Lock()
        self.writer = Writer(Database(target), target.describe(), commit_timeout, self._same_file,
                             self._reconnect, target.location)
        # a disposition's message for the line, written in its transaction (``enable_outbox``)
        self.on_disposition: Callable[[Database, dict], None] | None = None

    @classmethod
    def open(cls, url: str | Path = DEFAULT_DB, station: str | None = None, create: bool = True,
             commit_timeout: float = COMMIT_TIMEOUT) -> "InspectionLog":
        """The log at ``url`` (see ``database.parse_url``). With ``create`` False, a SQLite file
        that does not exist is an error instead of a new, empty log."""
        target = parse_url(url)
        if not create and target.dialect == "sqlite" and not Path(target.location).is_file():
            raise FileNotFoundError(f"{target.location}: no such inspection log")
        return cls(target, station, commit_timeout)

    # -- writing -----------------------------------------------------------------------------

    def record(self, inspections: list[Inspection], latency_ms: list[float | None] | None = None,
               images: list[tuple[bytes, str | None] | None] | None = None,
               keys: list[str | None] | None = None, hashes: list[str | None] | None = None) -> set[str]:
        """Commit these inspections (with their latencies, optionally the photo bytes and format
        for audit, the clients' idempotency keys, and the photos' SHA-256 where their bytes are
        not kept); returns after the commit, or raises ``LogUnavailable``. Returns the ids of the
        inspections not recorded because a record with the same key already was (the caller
        answers with that one: ``find_key``)."""
        pending = self.submit(inspections, latency_ms, images, keys, hashes)
        return set() if pending is None else self.writer.wait(pending)

    async def record_async(self, inspections: list[Inspection], latency_ms: list[float | None] | None = None,
                           images: list[tuple[bytes, str | None] | None] | None = None,
                           keys: list[str | None] | None = None, hashes: list[str | None] | None = None) -> set[str]:
        """``record`` for a coroutine: the wait for the commit holds no thread."""
        pending = self.submit(inspections, latency_ms, images, keys, hashes)
        return set() if pending is None else await self.writer.wait_async(pending)

    def submit(self, inspections: list[Inspection], latency_ms: list[float | None] | None = None,
               images: list[tuple[bytes, str | None] | None] | None = None,
               keys: list[str | None] | None = None, hashes: list[str | None] | None = None) -> Pending | None:
        """Queue these inspections for the writer; its ``done`` future says when they are in."""
        if not inspections:
            return None
        n = len(inspections)
        latency_ms, images, keys, hashes = (v or [None] * n for v in (latency_ms, images, keys, hashes))
        rows, blobs = [], []
        for insp, ms, image, key, sha in zip(inspections, latency_ms, images, keys, hashes, strict=True):
            if image is not None:
                sha = sha or image_key(image[0])  # the station hashed the photo already
                blobs.append((sha, image[1], image[0], insp.time))
            rows.append((insp.id, insp.time, insp.source, insp.label, insp.score, insp.p_defect,
                         insp.decision, insp.threshold, insp.model,
                         json.dumps(insp.scores) if insp.scores is not None else None, ms, self.station, sha,
                         json.dumps(insp.reasons), insp.familiarity,
                         None if insp.familiar is None else int(insp.familiar), key,
                         None, 1 if insp.decision == "review" or insp.familiar is False else None, insp.anomaly))
        return self.writer.submit(rows, blobs)

    def enable_outbox(self, station: str, build: Callable[[dict], tuple[str, str]],
                      after_commit: Callable[[], None] | None = None,
                      build_disposition: Callable[[dict, str], tuple[str, str]] | None = None) -> None:
        """From now on every new record also leaves a message in the outbox, in the same
        transaction: ``build(record)`` gives its (topic, payload); ``after_commit`` is told when
        a commit is in (``station.mqtt`` sends the outbox). With ``build_disposition(entry,
        station)``, so does every disposition recorded here, for the station of the part (this
        one's where the part names none), whose publisher sends it."""
        def add(db: Database, rows: list[tuple]) -> None:
            now = utc_now()
            db.executemany("INSERT INTO outbox (station, topic, payload, created) VALUES (?, ?, ?, ?)",
                           [(station, *build(row_dict(r)), now) for r in rows])

        def add_disposition(db: Database, entry: dict) -> None:
            to = entry.get("station") or station
            db.execute("INSERT INTO outbox (station, topic, payload, created) VALUES (?, ?, ?, ?)",
                       (to, *build_disposition(entry, to), utc_now()))
        self.writer.on_new, self.writer.after_commit = add, after_commit
        if build_disposition is not None:
            self.on_disposition = add_disposition

    def run(self, work: Callable[[Database], Any]) -> Any:
        """``work(db)`` in a transaction of its own on the writer's connection (a disposition, a
        model's registration); its result once committed, at most ``commit_timeout`` seconds."""
        return self.writer.wait(self.writer.submit_work(work))

    # -- health ------------------------------------------------------------------------------

    def probe(self) -> Future:
        """A check that the log answers and is still the log this station opened (same file, same
        identity, the expected schema), on a thread of its own; its result is None when all is
        well, else (what is wrong, in words safe to show anyone; the detail). A check that has not
        come back is shared, not repeated: a database that hangs ties up one thread, not one per
        health request."""
        with self._probe_lock:
            if self._probing is None or self._probing.done():
                self._probing = self._probe.submit(self._check)
            return self._probing

    def _same_file(self) -> bool:
        """For SQLite, whether the file at the log's path is the one this station opened."""
        if self._file is None:
            return True
        try:
            now = os.stat(self.target.location)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (self._file.st_dev, self._file.st_ino)

    def _check(self) -> tuple[str, str] | None:
        try:
            if not self._same_file():
                if not os.path.exists(self.target.location):
                    return "log file gone", f"{self.target.location} is gone (moved or deleted)"
                return "log file replaced", f"{self.target.location} was replaced by another file"
            if self._file is not None:
                free = shutil.disk_usage(Path(self.target.location).absolute().parent).free
                if free < MIN_FREE:  # a small write may still fit; a record with its photo will not
                    return "log disk full", f"{free} bytes free on the log's disk (at least {MIN_FREE} wanted)"
            if self._probe_db is None:
                self._probe_db = Database(self.target, create=False)
            problem = self._same_log(self._probe_db)
            if problem:
                return "not the same log", problem
            failed = self.writer.write_error
            if failed is not None:
                # The writer's last commit failed and nothing has been written since: would one go
                # through now (the disk has room again, the file is back)? Then health recovers on
                # an idle line too.
                try:
                    write_probe(self._probe_db)
                except Exception as exc:  # noqa: BLE001 - the database answers, but refuses writes
                    return "log writes failing", f"{type(exc).__name__}: {exc}"
                if self.writer.write_error is failed:
                    self.writer.write_error = None
            return None
        except Exception as exc:  # noqa: BLE001 - any database error: a fresh connection next time
            if self._probe_db is not None:
                try:
                    self._probe_db.close()
                except Exception:  # noqa: BLE001 - it was broken already
                    pass
                self._probe_db = None
            return "log unavailable", f"{type(exc).__name__}: {exc}"

    def _same_log(self, db: Database) -> str | None:
        if self._file is not None and db.file is not None and \
                (db.file.st_dev, db.file.st_ino) != (self._file.st_dev, self._file.st_ino):
            # another file at the path; its content may even look right (the old write-ahead log
            # beside it is read into it), but it is not the file this station opened
            return "another file is at the log's path"
        version, log_id = identity(db)
        if log_id != self.log_id:
            return "the database reached is not the log this station opened (another identity)"
        if version != SCHEMA_VERSION:
            return f"the log's schema changed under this station (version {version}, expected {SCHEMA_VERSION})"
        return None

    # -- reading -----------------------------------------------------------------------------

    def _reconnect(self, db: Database) -> Database:
        """A fresh connection in place of one that failed, to the same log (never a new one: a
        SQLite file that is not there is not created, a database of another identity is not
        used); the old one if none can be made now (the next failure tries again)."""
        if not self._same_file():
            # Not even opened: SQLite would read the old write-ahead log beside it into another
            # file, and on closing move its pages there (records lost from the original).
            return db
        try:
            fresh = Database(self.target, create=False)
        except Exception:  # noqa: BLE001 - still unreachable, or the file is gone
            return db
        try:
            problem = self._same_log(fresh)
        except Exception:  # noqa: BLE001 - no schema at all
            problem = "not an inspection log"
        if problem:
            fresh.close()
            return db
        try:
            db.close()
        except Exception:  # noqa: BLE001 - it was broken already
            pass
        return fresh

    def query(self, statement: str, params: Iterable[Any] = ()) -> list[tuple]:
        """A read on the reader's own thread, waited for at most ``commit_timeout``: a read stuck on
        a database that hangs ties up that thread, not the caller (who hears LogUnavailable), and
        reads queued behind it give up when their time has passed."""
        deadline = time.monotonic() + self.commit_timeout
        future = self._reads.submit(self._read, statement, params, deadline)
        try:
            return future.result(self.commit_timeout)
        except TimeoutError:
            future.cancel()
            raise LogUnavailable(f"the inspection log did not answer within {self.commit_timeout:g} s") from None

    def _read(self, statement: str, params: Iterable[Any], deadline: float) -> list[tuple]:
        if time.monotonic() > deadline:  # its caller has given up already
            raise LogUnavailable("the inspection log did not answer in time")
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
        total = self.query(f"SELECT (SELECT COALESCE(SUM(n), 0) FROM inspection_totals {where}) - "
                           f"(SELECT COALESCE(SUM(n), 0) FROM retired {where})", params * 2)[0][0]
        rows = self.query(f"SELECT {', '.join(COLUMNS)} FROM inspections {where} "
                           f"ORDER BY seq DESC LIMIT ? OFFSET ?", params + [limit, offset])
        return [row_dict(r) for r in rows], int(total)

    def get(self, inspection_id: str) -> dict | None:
        rows = self.query(f"SELECT {', '.join(COLUMNS)} FROM inspections WHERE id = ?", [inspection_id])
        return row_dict(rows[0]) if rows else None

    def find_key(self, key: str) -> dict | None:
        """The inspection recorded with this idempotency key, if any."""
        return self.find_keys([key]).get(key)

    def find_keys(self, keys: list[str]) -> dict[str, dict]:
        """The inspections recorded with these keys, by key (indexed lookups, 500 at a time)."""
        found: dict[str, dict] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self.query(f"SELECT {', '.join(COLUMNS)} FROM inspections WHERE request_key IN "
                               f"({', '.join('?' * len(chunk))})", chunk)
            found.update((r["request_key"], r) for r in map(row_dict, rows))
        return found

    def image(self, sha256: str) -> tuple[bytes, str | None] | None:
        rows = self.query("SELECT bytes, format FROM images WHERE sha256 = ?", [sha256])
        return (bytes(rows[0][0]), rows[0][1]) if rows else None

    def stats(self, now: datetime | None = None, since: str | None = None) -> dict:
        """Counts over the last hour, the last 24 hours and all time, and from ``since`` on (an ISO
        time, e.g. the shift's start) with its hours (``station.counts``)."""
        out = summary(self, now, WINDOWS + ((("since", since),) if since else ()))
        if since:
            out["since"]["from"], out["since"]["hours"] = since, hourly(self, since)
        return out

    def ends(self, model: str, first: int, last: int) -> tuple[list[dict], list[dict], int]:
        """A model's first ``first`` records, its last ``last`` after those (both oldest first),
        and how many it has: what the drift monitor resumes from, without reading the whole log."""
        head = self.query(f"SELECT seq, {', '.join(COLUMNS)} FROM inspections WHERE model = ? "
                           f"ORDER BY seq LIMIT ?", [model, first])
        after = head[-1][0] if head else 0
        tail = self.query(f"SELECT seq, {', '.join(COLUMNS)} FROM inspections WHERE model = ? AND seq > ? "
                           f"ORDER BY seq DESC LIMIT ?", [model, after, last])
        total = self.query("SELECT COALESCE(SUM(n), 0) FROM inspection_totals WHERE model = ?", [model])[0][0]
        return [row_dict(r[1:]) for r in head], [row_dict(r[1:]) for r in reversed(tail)], int(total)

    def iter_rows(self, batch: int = 1000, since: str | None = None, until: str | None = None,
                  station: str | None = None, decision: str | None = None) -> Iterator[dict]:
        """The inspections, oldest first, a page at a time (bounded memory for a big log); only
        those from ``since`` and before ``until`` (ISO times, UTC; a date is its midnight), of
        one ``station`` or one ``decision``, where given."""
        given = [(c, v) for c, v in (("time >= ?", since), ("time < ?", until), ("station = ?", station),
                                      ("decision = ?", decision)) if v is not None]
        also, params = "".join(f" AND {c}" for c, _ in given), [v for _, v in given]
        last = 0
        while True:
            rows = self.query(f"SELECT seq, {', '.join(COLUMNS)} FROM inspections WHERE seq > ?{also} "
                               f"ORDER BY seq LIMIT ?", [last, *params, batch])
            if not rows:
                return
            for r in rows:
                yield row_dict(r[1:])
            last = rows[-1][0]

    def export(self, out: IO[str], fmt: str = "csv", **where: str | None) -> int:
        """Write the inspections to ``out`` as CSV, a JSON array or JSON lines (oldest first),
        filtered as ``iter_rows``; returns the number of rows."""
        return sum(1 for _ in write_records(self.iter_rows(**where), fmt, out, list(COLUMNS)))

    def schema_version(self) -> int:
        return int(self.query("SELECT version FROM schema_version")[0][0])

    def close(self) -> None:
        """Commit what is queued and close. A writer or reader stuck on a database that hangs is
        left behind (their threads are daemons) rather than holding the process up."""
        idle = self.writer.close()
        for pool in (self._reads, self._probe):
            try:
                pool.submit(lambda: None).result(self.commit_timeout if idle else 0.1)  # behind any read under way
            except TimeoutError:
                idle = False
            pool.shutdown(wait=False, cancel_futures=True)
        if not idle:
            return
        for db in (self.writer.db, self._reader, self._probe_db):
            if db is not None:
                try:
                    db.close()
                except Exception:  # noqa: BLE001 - closing a broken connection
                    pass

    def __enter__(self) -> "InspectionLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def row_dict(row: tuple) -> dict:
    d = dict(zip(COLUMNS, row))
    d["scores"] = json.loads(d["scores"]) if d["scores"] else None
    d["reasons"] = json.loads(d["reasons"]) if d["reasons"] else []  # rows from before version 4: none
    d["familiar"] = None if d["familiar"] is None else bool(d["familiar"])
    d["awaiting"] = bool(d["awaiting"])  # in the review queue
    return d
