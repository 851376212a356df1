"""The inspection log's writer: one thread commits whatever has queued up in one transaction
(group commit), so that under load many requests share one fsync and each still waits for its
own commit, at most a set time.

A waiter that gives up takes its request out of the queue if the writer has not started on it:
then it is certainly not recorded. A commit whose connection failed during COMMIT (PostgreSQL)
may have landed: its waiters hear "may not have been recorded", and the retry on a fresh
connection adds only the rows not already in (and counts only those).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from castinspect.core.records import utc_now
from castinspect.station.database import COLUMNS, Database

STALLED = 2.0  # seconds one commit may take before health calls the writer stalled
_KEY = COLUMNS.index("request_key")


class LogUnavailable(RuntimeError):
    """The log could not confirm a write (or answer a read) in time. ``recorded`` is False when
    the record is certainly not in the log (its transaction never committed, or it never left the
    queue), None when it may be (the connection failed while the commit was under way: look it up
    by id, or retry with the same idempotency key); ``ids`` are the records concerned."""

    def __init__(self, message: str, recorded: bool | None = False, ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.recorded = recorded
        self.ids = ids or []


@dataclass(eq=False)  # identity, not value: a waiter finds its own request in the queue
class Pending:
    rows: list[tuple]
    images: list[tuple]
    done: Future = field(default_factory=Future)
    work: Callable[[Database], Any] | None = None  # a job of its own (``Writer.submit_work``)

    @property
    def ids(self) -> list[str]:
        return [r[0] for r in self.rows]


class Writer:
    """The writer thread and its queue. ``same_file`` says whether the log at the path is still
    the one opened (a commit is refused otherwise); ``reconnect`` gives a fresh connection to the
    same log in place of a failed one."""

    def __init__(self, db: Database, describe: str, commit_timeout: float, same_file: Callable[[], bool],
                 reconnect: Callable[[Database], Database], location: str) -> None:
        self.db, self.describe, self.commit_timeout = db, describe, commit_timeout
        self._same_file, self._reconnect, self._location = same_file, reconnect, location
        self._queue: deque[Pending] = deque()
        self._cond = threading.Condition()
        self._closing = False
        # The writer's state, for an honest health check: when it last committed, the error of its
        # last attempt while that attempt failed (None once a commit succeeds again), and since
        # when the commit under way has been running.
        self.last_commit: str | None = None
        self.write_error: tuple[str, str] | None = None  # (time, error)
        self._busy_since: float | None = None
        # Hooks: rows to add in the same transaction as new records (the MQTT outbox), and who
        # to tell once a commit is in.
        self.on_new: Callable[[Database, list[tuple]], None] | None = None
        self.after_commit: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._write_loop, name="inspection-log-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: list[tuple], images: list[tuple]) -> Pending:
        return self._enqueue(Pending(rows, images))

    def submit_work(self, work: Callable[[Database], Any]) -> Pending:
        """Queue ``work(db)``, to run in a transaction of its own (a disposition, a model's
        registration): its result, or its error, is its caller's alone. A job must be safe to run
        twice (the retry after a connection failed during COMMIT)."""
        return self._enqueue(Pending([], [], work=work))

    def _enqueue(self, pending: Pending) -> Pending:
        with self._cond:
            if self._closing or not self._thread.is_alive():
                raise LogUnavailable(f"the inspection log {self.describe} is closed", False, pending.ids)
            self._queue.append(pending)
            self._cond.notify()
        return pending

    def wait(self, pending: Pending) -> set[str]:
        """Block until ``pending`` is committed (its duplicates: ids whose key was taken), at most
        ``commit_timeout``; raises LogUnavailable."""
        try:
            return pending.done.result(self.commit_timeout)
        except TimeoutError:
            problem = self.abandon(pending)
        if problem is None:
            return pending.done.result()
        raise problem

    async def wait_async(self, pending: Pending) -> set[str]:
        """``wait`` for a coroutine: it holds no thread."""
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(pending.done)), self.commit_timeout)
        except TimeoutError:
            problem = self.abandon(pending)
        if problem is None:
            return pending.done.result()
        raise problem

    def abandon(self, pending: Pending) -> LogUnavailable | None:
        """A waiter gives up on its commit: taken out of the queue if the writer has not started
        on it (certainly not recorded), else it may still land. None when the writer finished
        with it just as the wait ended (its outcome is known after all)."""
        with self._cond:
            if pending in self._queue:
                self._queue.remove(pending)
                return LogUnavailable(f"the inspection log did not commit within {self.commit_timeout:g} s: "
                                      "nothing recorded", False, pending.ids)
        if pending.done.done():
            return None
        return LogUnavailable(f"the inspection log did not confirm the commit within {self.commit_timeout:g} s: "
                              "the record may not have been recorded", None, pending.ids)

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                # everything that queued up while the last commit ran: one transaction
                batch = list(self._queue)
                self._queue.clear()
                self._busy_since = time.monotonic()
            try:
                records = [p for p in batch if p.work is None]
                if records:
                    self._write(records)
                for job in batch:
                    if job.work is not None:
                        self._run(job)
            finally:
                self._busy_since = None

    def _run(self, job: Pending) -> None:
        error: Exception | None = None
        ambiguous = False
        for attempt in range(2):
            if attempt:
                self.db = self._reconnect(self.db)
            try:
                if not self._same_file():
                    raise LogUnavailable(f"{self._location} is no longer the log this station opened")
                with self.db.transaction():
                    result = job.work(self.db)
            except (ValueError, LookupError, PermissionError) as exc:  # the request's own fault
                job.done.set_exception(exc)
                return
            except Exception as exc:  # noqa: BLE001 - any database error
                ambiguous |= self.db.committing and self.db.dialect == "postgresql"
                error = exc
                continue
            self.last_commit, self.write_error = utc_now(), None
            job.done.set_result(result)
            if self.after_commit is not None:
                self.after_commit()
            return
        text = f"{type(error).__name__}: {error}"
        self.write_error = (utc_now(), text)
        job.done.set_exception(LogUnavailable(f"inspection log unavailable ({text}): " + (
            "it may have been recorded" if ambiguous else "nothing recorded"), None if ambiguous else False))

    def _write(self, batch: list[Pending]) -> None:
        ambiguous, error = False, None
        for attempt in range(2):
            if attempt:  # a dropped connection (e.g. PostgreSQL restarted): once more on a fresh one
                self.db = self._reconnect(self.db)
            try:
                duplicates = self._commit(batch, self.db)
            except Exception as exc:  # noqa: BLE001 - any database error
                # The connection failed during COMMIT: PostgreSQL may have committed without our
                # hearing. (SQLite's commit is local and atomic: a failed one did not happen.)
                ambiguous |= self.db.committing and self.db.dialect == "postgresql"
                error = exc
                continue
            self.last_commit, self.write_error = utc_now(), None
            for p in batch:
                p.done.set_result({i for i in p.ids if i in duplicates})
            if self.after_commit is not None:
                self.after_commit()
            return
        text = f"{type(error).__name__}: {error}"
        self.write_error = (utc_now(), text)
        for p in batch:  # every waiter hears about it, and whether its record may be in
            p.done.set_exception(LogUnavailable(
                f"inspection log unavailable ({text}): " + (
                    "the record may not have been recorded" if ambiguous else "nothing recorded"),
                None if ambiguous else False, p.ids))

    def _commit(self, batch: list[Pending], db: Database) -> set[str]:
        """One transaction: the photos, the rows not already in (a retried commit that did land;
        an idempotency key already used), and the counters for exactly the rows added. Returns
        the ids not added because their key was taken."""
        if not self._same_file():
            raise LogUnavailable(f"{self._location} is no longer the log this station opened "
                                 "(moved, deleted or replaced): not writing to it")
        rows = [r for p in batch for r in p.rows]
        images = {sha: (sha, fmt, data, t) for p in batch for sha, fmt, data, t in p.images}
        with db.transaction():
            present = existing(db, "id", [r[0] for r in rows])
            taken = existing(db, "request_key", [r[_KEY] for r in rows if r[_KEY] is not None])
            new, duplicates = [], set()
            for r in rows:
                if r[0] in present:
                    continue
                if r[_KEY] is not None:
                    if r[_KEY] in taken:
                        duplicates.add(r[0])
                        continue
                    taken.add(r[_KEY])  # a second request with the same key in this batch
                new.append(r)
            if images:
                db.executemany("INSERT INTO images (sha256, format, bytes, first_seen) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (sha256) DO NOTHING", list(images.values()))
            if new:
                db.executemany(f"INSERT INTO inspections ({', '.join(COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(COLUMNS))})", new)
                count(db, new)
                if self.on_new is not None:
                    self.on_new(db, new)
        return duplicates

    def state(self) -> dict:
        """Whether the last commit attempt failed (and why), whether the one under way has run
        for longer than a commit should (a database that hangs), when one last succeeded, and how
        many requests wait for the writer."""
        busy = self._busy_since
        running = None if busy is None else time.monotonic() - busy
        return {"failing": self.write_error is not None, "stalled": running is not None and running > STALLED,
                "commit_running_s": None if running is None else round(running, 3),
                "last_commit": self.last_commit,
                "error_since": self.write_error[0] if self.write_error else None,
                "error": self.write_error[1] if self.write_error else None, "queued": len(self._queue)}

    def problem(self) -> tuple[str, str] | None:
        state = self.state()
        if state["failing"]:  # reads may answer while writes fail (a full disk, a read-only file)
            return "log writes failing", state["error"]
        if state["stalled"]:
            return "log writes not completing", f"a commit has run for {state['commit_running_s']} s"
        return None

    def close(self) -> bool:
        """Commit what is queued and stop; False when the thread is stuck on a database that
        hangs (it is a daemon, left behind rather than holding the process up)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(self.commit_timeout)
        return not self._thread.is_alive()


def existing(db: Database, column: str, values: list[str]) -> set[str]:
    """Which of these ids (or keys) the log holds already: indexed lookups, 500 at a time."""
    found: set[str] = set()
    for i in range(0, len(values), 500):
        chunk = values[i:i + 500]
        found |= {r[0] for r in db.execute(f"SELECT {column} FROM inspections WHERE {column} IN "
                                            f"({', '.join('?' * len(chunk))})", chunk).fetchall()}
    return found


SPANS = (("minutes", "minute", 16), ("hours", "hour", 13), ("totals", None, 0))  # table, bucket, time width


def count(db: Database, rows: list[tuple]) -> None:
    """Add these rows to the counters of the model's decisions and of the final ones."""
    col = {c: i for i, c in enumerate(COLUMNS)}
    add_counts(db, "inspection", ("model", "decision", "label"), Counter(
        (r[col["time"]], r[col["model"]], r[col["decision"]] or "", r[col["label"]] or "") for r in rows))
    count_final(db, Counter((r[col["time"]], r[col["decision"]]) for r in rows if r[col["decision"]]))


def count_final(db: Database, changes: Counter) -> None:
    """Add ``changes`` ((time, final decision) -> n, n may be negative: a person's disposition
    moves a part from one decision to another) to the counters of final decisions; "review" is a
    part still awaiting a person."""
    add_counts(db, "final", ("decision",), changes)


def add_counts(db: Database, prefix: str, columns: tuple[str, ...], changes: Counter) -> None:
    """Add ``changes`` ((time, *columns) -> n) to the per-minute, per-hour and all-time counters
    ``prefix_minutes``, ``prefix_hours``, ``prefix_totals``, in one fixed order of keys (two
    stations' transactions lock the same counter rows in the same order: no deadlock)."""
    for span, bucket, width in SPANS:
        table = f"{prefix}_{span}"
        counts: Counter = Counter()
        for (when, *rest), n in changes.items():
            counts[(when[:width], *rest) if bucket else tuple(rest)] += n
        names = ([bucket] if bucket else []) + list(columns)
        db.executemany(f"INSERT INTO {table} ({', '.join(names)}, n) VALUES ({', '.join('?' * (len(names) + 1))}) "
                       f"ON CONFLICT ({', '.join(names)}) DO UPDATE SET n = {table}.n + excluded.n",
                       [(*k, n) for k, n in sorted(counts.items()) if n])


class _RollBack(Exception):
    pass


def write_probe(db: Database) -> None:
    """A write that changes nothing: a committed no-op update (the file takes a write), and an
    inspection row inserted and rolled back (the table takes one). Raises if either fails."""
    with db.transaction():
        db.execute("UPDATE schema_version SET version = version")
    try:
        with db.transaction():
            db.execute("INSERT INTO inspections (id, time, source, model) VALUES (?, ?, '', '')",
                       (f"health-probe-{uuid.uuid4().hex}", utc_now()))
            raise _RollBack
    except _RollBack:
        pass
