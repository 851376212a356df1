"""Retention: deleting the inspections older than a site keeps, while the stats keep their counts.

A part still awaiting a person stays until it is settled (the queue and the stats' count of parts
awaiting review would otherwise disagree). Rows go a batch at a time, each batch in a
transaction of its own on the writer's connection (a station can keep recording; no statement
runs into the log's statement timeout), with its people's dispositions; its counts move to
``retired``, so a listing's total is the rows kept while the all-time and per-hour counters
still count every part. Then the minute counters and the stored photos no kept inspection
refers to. On PostgreSQL, a log partitioned by month (scripts/postgres/partition-by-month.sql)
drops whole months instead.
"""

from __future__ import annotations

from castinspect.station.database import Database

BATCH = 2000  # rows per transaction


def _batch(db: Database, before: str, size: int) -> int:
    seqs = [r[0] for r in db.execute("SELECT seq FROM inspections WHERE time < ? AND awaiting IS NULL "
                                     "ORDER BY seq LIMIT ?", (before, size)).fetchall()]
    if not seqs:
        return 0
    these = f"seq IN ({', '.join('?' * len(seqs))})"
    db.execute("INSERT INTO retired (model, decision, label, n) "
               "SELECT model, COALESCE(decision, ''), COALESCE(label, ''), COUNT(*) FROM inspections "
               f"WHERE {these} GROUP BY model, COALESCE(decision, ''), COALESCE(label, '') "
               "ON CONFLICT (model, decision, label) DO UPDATE SET n = retired.n + excluded.n", seqs)
    db.execute(f"DELETE FROM dispositions WHERE inspection_id IN (SELECT id FROM inspections WHERE {these})", seqs)
    db.execute(f"DELETE FROM inspections WHERE {these}", seqs)
    return len(seqs)


def _rest(db: Database, before: str) -> int:
    for table in ("inspection_minutes", "final_minutes"):
        db.execute(f"DELETE FROM {table} WHERE minute < ?", (before[:16],))
    return db.execute("DELETE FROM images WHERE first_seen < ? AND NOT EXISTS "
                      "(SELECT 1 FROM inspections WHERE image_sha256 = images.sha256)", (before,)).rowcount


def prune(log, before: str, batch: int = BATCH) -> dict[str, int]:
    """Delete ``log``'s inspections from before ``before`` (an ISO time, UTC; a date is its
    midnight), except those awaiting a person; returns how many inspections and stored photos went,
    and how many parts from before then still await a person."""
    deleted = 0
    while True:
        n = log.run(lambda db: _batch(db, before, batch))
        deleted += n
        if n < batch:
            break
    waiting = log.query("SELECT COUNT(*) FROM inspections WHERE time < ? AND awaiting IS NOT NULL", [before])[0][0]
    return {"inspections": deleted, "images": log.run(lambda db: _rest(db, before)), "awaiting": int(waiting)}
