"""The inspection log on real databases: SQLite (WAL) and a real PostgreSQL server."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from castinspect.core.records import Inspection
from castinspect.station.counts import final_counts, model_counts
from castinspect.station.database import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Database,
    Target,
    migrate,
    parse_url,
)
from castinspect.station.log import InspectionLog


def make(decision: str, p: float = 0.5, source: str = "a.jpeg", when: datetime | None = None) -> Inspection:
    insp = Inspection(source=source, label="def_front" if decision == "defective" else "ok_front", score=p,
                      p_defect=p, decision=decision, threshold=0.5, model="m1")
    if when is not None:
        insp.time = when.isoformat(timespec="milliseconds")
    return insp


def test_parse_url():
    assert parse_url("line.db") == Target("sqlite", "line.db")
    assert parse_url("sqlite:///rel/line.db") == Target("sqlite", "rel/line.db")
    assert parse_url("sqlite:////abs/line.db") == Target("sqlite", "/abs/line.db")
    assert parse_url("postgresql://u@h:5433/db").dialect == "postgresql"
    assert parse_url("postgres://u@h/db").location == "postgresql://u@h/db"
    assert parse_url("postgresql+psycopg://u:secret@h/db").describe() == "postgresql://u@h:5432/db"
    for bad in ("mysql://h/db", "sqlite://", "sqlite:///"):
        with pytest.raises(ValueError, match="sqlite|unsupported"):
            parse_url(bad)


def test_record_page_get_and_filter(db_url):
    with InspectionLog.open(db_url, station="line-1") as log:
        assert log.schema_version() == SCHEMA_VERSION and log.migrated_from == 0
        items = [make("ok", 0.1, "p0.jpeg"), make("defective", 0.9, "p1.jpeg"), make("ok", 0.2, "p2.jpeg")]
        log.record(items, [1.0, 2.0, 3.0])
        page, total = log.page(limit=2)
        assert total == 3 and [r["source"] for r in page] == ["p2.jpeg", "p1.jpeg"]  # newest first
        page, total = log.page(limit=2, offset=2)
        assert [r["source"] for r in page] == ["p0.jpeg"] and total == 3
        page, total = log.page(decision="defective")
        assert total == 1 and page[0]["id"] == items[1].id and page[0]["station"] == "line-1"
        row = log.get(items[0].id)
        assert row["p_defect"] == pytest.approx(0.1) and row["latency_ms"] == pytest.approx(1.0)
        assert row["time"] == items[0].time and row["decision"] == "ok"
        assert log.get("no-such-id") is None


def test_stats_windows(db_url):
    now = datetime.now(timezone.utc)
    with InspectionLog.open(db_url) as log:
        log.record([make("defective", 0.9, when=now - timedelta(days=2)),
                    make("ok", when=now - timedelta(hours=3)),
                    make("defective", 0.8, when=now - timedelta(minutes=5)),
                    make("ok", when=now - timedelta(minutes=1)),
                    make("review", when=now - timedelta(minutes=1))])
        s = log.stats(now)
        # the reject rate is of the decided parts: one awaiting review is neither rejected nor passed
        assert s["last_hour"] == {"ok": 1, "defective": 1, "awaiting_review": 1, "total": 3, "decided": 2,
                                  "reject_rate": pytest.approx(1 / 2),
                                  "model": {"ok": 1, "defective": 1, "review": 1},
                                  "labels": {"def_front": 1, "ok_front": 2}}
        assert s["last_24h"]["total"] == 4 and s["all"]["total"] == 5
        assert s["all"]["reject_rate"] == pytest.approx(2 / 4)


def test_counters_match_the_rows(db_url):
    """The stats come from counters kept in the same transaction as the rows: after records of two
    models, a retried commit and a duplicate key, they equal what counting the rows gives."""
    now = datetime.now(timezone.utc)
    with InspectionLog.open(db_url) as log:
        items = [make(d, when=now - timedelta(minutes=m)) for d, m in
                 [("ok", 1), ("ok", 90), ("defective", 3), ("review", 2000), ("defective", 59)]]
        other = make("ok")
        other.model = "m2"
        log.record(items + [other])
        log.record(items[:2])  # a retry of rows already in: nothing added, nothing counted
        keyed = make("defective")
        assert log.record([keyed], keys=["k-1"]) == set()
        again = make("defective")
        assert log.record([again], keys=["k-1"]) == {again.id}  # the key was taken: not recorded
        assert log.find_key("k-1")["id"] == keyed.id
        for since in (None, (now - timedelta(hours=1)).isoformat(timespec="milliseconds"),
                      (now - timedelta(days=1)).isoformat(timespec="milliseconds")):
            where, params = ("WHERE substr(time, 1, 16) >= ?", [since[:16]]) if since else ("", [])
            expected = {d: n for d, n in log.query(f"SELECT decision, COUNT(*) FROM inspections {where} "
                                                    f"GROUP BY decision", params)}
            decisions, labels = model_counts(log, since)
            assert {d: n for d, n in final_counts(log, since).items() if n} == expected  # no dispositions yet
            assert {d: n for d, n in decisions.items() if n} == expected
        assert log.page()[1] == 7 and log.page(decision="defective")[1] == 3
        first, last, total = log.ends("m1", 2, 2)
        assert [r["id"] for r in first] == [items[0].id, items[1].id] and total == 6
        assert [r["id"] for r in last] == [items[4].id, keyed.id]


def test_a_waiter_that_gives_up_is_told_the_truth(tmp_path):
    """A commit not confirmed in time: a request still in the queue is taken out (certainly not
    recorded); with the writer stuck behind another process's lock, the answer says so."""
    from castinspect.station.log import LogUnavailable

    db = tmp_path / "log.db"
    with InspectionLog.open(db, commit_timeout=0.5) as log:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            errors = []

            def attempt():
                try:
                    log.record([make("ok")])
                except LogUnavailable as exc:
                    errors.append(exc)
            first = threading.Thread(target=attempt)
            first.start()
            while log.writer.state()["commit_running_s"] is None:  # the writer is on it, stuck on the lock
                time.sleep(0.01)
            queued = [threading.Thread(target=attempt) for _ in range(3)]
            for t in queued:
                t.start()
            for t in [first, *queued]:
                t.join()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert len(errors) == 4
        # the one the writer was busy with may land after its waiter left; the queued ones not
        assert sum(e.recorded is False for e in errors) == 3 and all(e.recorded in (False, None) for e in errors)
        assert all(e.ids for e in errors)
        time.sleep(3)  # the writer's own attempt ends (the lock wait is bounded too)
        logged = {r["id"] for r in log.iter_rows()}
        assert not any(e.ids[0] in logged for e in errors if e.recorded is False)


def test_concurrent_records_each_committed_once(db_url):
    """Many threads recording at once (group commit): every row lands exactly once."""
    with InspectionLog.open(db_url) as log:
        ids: list[str] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            for i in range(25):
                insp = make("ok", source=f"t{k}-{i}.jpeg")
                log.record([insp])
                with lock:
                    ids.append(insp.id)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows, total = log.page(limit=1000)
        assert total == 200 and sorted(r["id"] for r in rows) == sorted(ids)


def test_images_are_content_addressed(db_url):
    with InspectionLog.open(db_url) as log:
        a, b = make("ok"), make("ok")
        log.record([a], images=[(b"\xff\xd8\xffsame bytes", "jpeg")])
        log.record([b], images=[(b"\xff\xd8\xffsame bytes", "jpeg")])
        sha = log.get(a.id)["image_sha256"]
        assert sha == log.get(b.id)["image_sha256"] and log.image(sha) == (b"\xff\xd8\xffsame bytes", "jpeg")
        assert len(log.query("SELECT sha256 FROM images")) == 1


def test_export_csv(db_url):
    with InspectionLog.open(db_url) as log:
        items = [make("ok", 0.25, "x,1.jpeg"), make("defective", 0.75, "y.jpeg")]
        log.record(items)
        buf = io.StringIO()
        assert log.export(buf, "csv") == 2
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["source"] for r in rows] == ["x,1.jpeg", "y.jpeg"]  # oldest first, commas quoted
    assert float(rows[1]["p_defect"]) == 0.75 and rows[0]["id"] == items[0].id


def test_migrates_an_old_log_and_keeps_its_rows(db_url):
    """A log written at schema version 1 is brought up to date on open, its rows intact; it then
    takes the photos of a model without an OK class (no threshold)."""
    db = Database(parse_url(db_url))
    import castinspect.station.database as il
    saved = il.MIGRATIONS
    try:
        il.MIGRATIONS, il.SCHEMA_VERSION = saved[:1], 1
        assert migrate(db)[0] == 0
        db.execute("INSERT INTO inspections (id, time, source, threshold, model, decision) "
                   "VALUES ('old', '2026-01-01T00:00:00.000+00:00', 'old.jpeg', 0.5, 'm0', 'ok')")
    finally:
        il.MIGRATIONS, il.SCHEMA_VERSION = saved, len(saved)
        db.close()
    with InspectionLog.open(db_url) as log:
        assert log.migrated_from == 1 and log.schema_version() == len(MIGRATIONS)
        row = log.get("old")
        assert row["source"] == "old.jpeg" and row["image_sha256"] is None
        assert log.stats()["all"]["total"] == 1 and log.stats()["all"]["ok"] == 1  # counters filled from the rows
        assert row["reasons"] == [] and row["familiarity"] is None and row["familiar"] is None
        log.record([make("ok")], images=[(b"\x89PNG\r\n\x1a\nxx", "png")])  # the new column works
        typed = Inspection(source="t.jpeg", label="scratch", score=0.9, p_defect=None, decision="defective",
                           threshold=None, model="types", scores={"scratch": 0.9, "blowhole": 0.1})
        log.record([typed])
        assert log.page()[1] == 3 and log.get(typed.id)["threshold"] is None
        seqs = [r[0] for r in log.query("SELECT seq FROM inspections ORDER BY seq")]
        assert seqs == sorted(set(seqs)) and len(seqs) == 3  # numbering carried on after the rebuild


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "log.db"
    InspectionLog.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        InspectionLog.open(path)


def test_sqlite_log_is_in_wal_mode(tmp_path):
    with InspectionLog.open(tmp_path / "log.db") as log:
        assert log.query("PRAGMA journal_mode")[0][0] == "wal"


def test_record_after_close_is_refused_not_hung(tmp_path):
    log = InspectionLog.open(tmp_path / "log.db")
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.record([make("ok")])
