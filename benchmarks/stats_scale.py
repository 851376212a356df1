"""Issue 19's stats at scale: what ``/v1/stats`` and the operator page's poll cost on a big log.

    .venv/bin/python benchmarks/stats_scale.py --rows 1000000 10000000
    .venv/bin/python benchmarks/stats_scale.py --rows 1000000 --db postgresql://user@host/empty_db

For each size, a fresh log (SQLite in a temporary folder unless --db names an empty PostgreSQL
database) is filled with that many synthetic inspections spread over the last 30 days (about
half of them in the last 24 hours, 10% defective, two models), written in batches through the
log's own insert and counter code. Then, median and worst of 50 calls each: ``log.stats()``
(what ``/v1/stats`` returns: the last hour, 24 hours and all time), ``log.page(15)`` (the page's
recent list and its total), and, for comparison, the query the stats made before (counting the
rows themselves). Target: stats at most 10 ms at 1M rows. Writes
benchmarks/results/stats_scale.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from castinspect.core.provenance import provenance
from castinspect.station.database import COLUMNS, Database
from castinspect.station.log import InspectionLog
from castinspect.station.writer import count

OUT = Path(__file__).parent / "results" / "stats_scale.json"
BATCH = 50_000


def fill(log: InspectionLog, rows: int, seed: int = 0) -> float:
    """``rows`` synthetic inspections, oldest first; seconds taken."""
    rng = np.random.default_rng(seed)
    now = datetime.now(timezone.utc)
    # half in the last 24 hours, the rest over the 29 days before: a busy line's log
    ages = np.where(rng.random(rows) < 0.5, rng.uniform(0, 86_400, rows), rng.uniform(86_400, 30 * 86_400, rows))
    ages = np.sort(ages)[::-1]
    db = Database(log.target)
    t0 = time.perf_counter()
    for start in range(0, rows, BATCH):
        batch = []
        for age in ages[start:start + BATCH]:
            bad = rng.random() < 0.1
            p = float(rng.beta(8, 2) if bad else rng.beta(2, 8))
            decision = "defective" if p >= 0.5 else "review" if p >= 0.4 else "ok"
            when = (now - timedelta(seconds=float(age))).isoformat(timespec="milliseconds")
            batch.append((uuid.uuid4().hex, when, "cam.jpeg", "def_front" if p >= 0.5 else "ok_front", p, p,
                          decision, 0.5, "model-a" if rng.random() < 0.8 else "model-b", None, 5.0, "line-1", None,
                          "[]", 0.5, 1, None))
        with db.transaction():
            db.executemany(f"INSERT INTO inspections ({', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' * len(COLUMNS))})", batch)
            count(db, batch)
    db.close()
    return time.perf_counter() - t0


def timed(fn, repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(times), 3), "max_ms": round(max(times), 3)}


def measure(url: str, rows: int) -> dict:
    with InspectionLog.open(url) as log:
        seconds = fill(log, rows)
        if log.target.dialect == "sqlite":
            log.query("ANALYZE")
        stats = log.stats()
        assert stats["all"]["total"] == rows, stats["all"]
        since = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat(timespec="milliseconds")

        def scan() -> None:  # what the stats did before issue 19, for comparison
            log.query("SELECT decision, label, COUNT(*) FROM inspections GROUP BY decision, label")
            log.query("SELECT decision, label, COUNT(*) FROM inspections WHERE time >= ? GROUP BY decision, label",
                       [since])
        out = {"rows": rows, "fill_seconds": round(seconds, 1), "last_24h": stats["last_24h"]["total"],
               "stats": timed(log.stats, 50), "page": timed(lambda: log.page(15), 50),
               "row_count_scan": timed(scan, 3)}
    print(f"{rows:>10,} rows: stats {out['stats']['median_ms']:.2f} ms (max {out['stats']['max_ms']:.2f}), "
          f"page {out['page']['median_ms']:.2f} ms, counting the rows {out['row_count_scan']['median_ms']:.0f} ms",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--db", help="an empty PostgreSQL database (default: SQLite files in a temporary folder)")
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="castinspect-stats-") as tmp:
        for n in args.rows:
            if args.db:
                from castinspect.station.database import parse_url
                conn = Database(parse_url(args.db))
                for table in ("inspections", "inspection_minutes", "inspection_hours", "inspection_totals", "images", "schema_version"):
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.close()
            results.append(measure(args.db or str(Path(tmp) / f"log_{n}.db"), n))
    dialect = "postgresql" if args.db else "sqlite"
    out = {"provenance": provenance(), "database": dialect, "target_ms": 10, "sizes": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
