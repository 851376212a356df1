"""Retention on real databases: castinspect log prune on SQLite and PostgreSQL, and the PostgreSQL
recipe for a year of records (scripts/postgres/partition-by-month.sql): castinspect keeps working
on the partitioned log, and a month is dropped whole. Either way the stats keep every count and a
part still awaiting a person stays."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_inspection_log import make

from castinspect.station.counts import model_counts
from castinspect.station.database import SCHEMA_VERSION
from castinspect.station.log import InspectionLog
from castinspect.station.retention import prune

RECIPE = Path(__file__).resolve().parents[1] / "scripts" / "postgres" / "partition-by-month.sql"


def psql(postgres, url: str, *args: str) -> str:
    proc = subprocess.run([f"{postgres.bin}/psql", url, "-v", "ON_ERROR_STOP=1", "-qAt", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def partition_of(log: InspectionLog, inspection_id: str) -> str:
    return log.query("SELECT tableoid::regclass::text FROM inspections WHERE id = ?", (inspection_id,))[0][0]


@pytest.fixture
def partitioned(postgres):
    """A log with two months of records, then partitioned by the recipe, as a user would."""
    url = postgres.new_database()
    old = [make("defective", 0.9, f"old{i}.jpeg", datetime(2025, 10, 3 + i, 8, tzinfo=timezone.utc)) for i in range(3)]
    new = [make("ok", 0.1, f"new{i}.jpeg") for i in range(2)]
    with InspectionLog.open(url, station="line-1") as log:
        log.record(old + new, [1.0] * 5)
    psql(postgres, url, "-f", str(RECIPE))
    return url, old, new


def test_the_partitioned_log_takes_records_and_answers_as_before(postgres, partitioned):
    url, old, new = partitioned
    assert psql(postgres, url, "-c", "SELECT relkind FROM pg_class WHERE relname = 'inspections'") == "p"
    with InspectionLog.open(url, station="line-2") as log:
        assert log.schema_version() == SCHEMA_VERSION and log.migrated_from == SCHEMA_VERSION
        assert log.page(limit=10)[1] == 5
        assert partition_of(log, old[0].id) == "inspections_2025_10"
        assert log.get(new[0].id)["source"] == "new0.jpeg"
        later = [make("review", 0.5, "later.jpeg"), make("ok", 0.1, "clock-off.jpeg", datetime(2099, 1, 1, tzinfo=timezone.utc))]
        log.record(later, [1.0, 1.0])
        assert partition_of(log, later[0].id) == "inspections_" + datetime.now(timezone.utc).strftime("%Y_%m")
        assert partition_of(log, later[1].id) == "inspections_other"  # not a failed write
        assert log.page(decision="review")[1] == 1
        log.record(later[:1], [1.0])  # a retried commit of the same id adds no second row
        assert log.page(limit=10)[1] == 7


def test_dropping_a_month_keeps_its_counts(postgres, partitioned):
    url, old, new = partitioned
    with InspectionLog.open(url) as log:
        before, stats = model_counts(log), log.stats()["all"]
        log.run(lambda db: db.execute("UPDATE inspections SET awaiting = 1 WHERE id = ?", [old[1].id]))
    refused = subprocess.run([f"{postgres.bin}/psql", url, "-c", "SELECT castinspect_drop_months_before('2025-11')"],
                             capture_output=True, text=True)
    assert "inspections_2025_10: 1 parts still await a person" in refused.stderr
    assert psql(postgres, url, "-c", "SELECT castinspect_drop_months_before('2025-11', force => true)") == "1"
    assert psql(postgres, url, "-c", "SELECT castinspect_add_months(3)") == ""
    months = psql(postgres, url, "-c", "SELECT count(*) FROM pg_inherits WHERE inhparent = 'inspections'::regclass")
    assert int(months) >= 5  # this month, three ahead, the default (and any month of the records kept)
    with InspectionLog.open(url) as log:
        assert log.get(old[0].id) is None and log.get(new[0].id) is not None
        assert log.page(limit=10)[1] == 2
        assert model_counts(log) == before and log.stats()["all"] == stats  # the counters are not the rows


def test_prune_deletes_old_rows_but_not_their_counts_nor_a_part_awaiting_a_person(db_url):
    old = [make("defective", 0.9, f"old{i}.jpeg", datetime(2025, 10, 3 + i, 8, tzinfo=timezone.utc)) for i in range(5)]
    old[2].decision = "review"  # awaiting a person: it stays
    new = [make("ok", 0.1, "new.jpeg")]
    with InspectionLog.open(db_url) as log:
        log.record(old + new, [1.0] * 6)
        before, stats = model_counts(log), log.stats()["all"]
        assert prune(log, "2025-11-01", batch=2) == {"inspections": 4, "images": 0, "awaiting": 1}
        assert log.page(limit=10)[1] == 2 and [r["source"] for r in log.page(limit=10)[0]] == ["new.jpeg", "old2.jpeg"]
        assert log.page(decision="defective")[1] == 0
        assert model_counts(log) == before and log.stats()["all"] == stats
        assert prune(log, "2025-11-01")["inspections"] == 0  # nothing more to do


def test_log_prune_command(tmp_path):
    from typer.testing import CliRunner

    from castinspect.cli import app

    db = f"sqlite:///{tmp_path / 'log.db'}"
    with InspectionLog.open(db) as log:
        log.record([make("ok", 0.1, "old.jpeg", datetime(2025, 1, 2, tzinfo=timezone.utc)), make("ok", 0.1)], [1.0, 1.0])
    r = CliRunner().invoke(app, ["log", "prune", "--db", db, "--before", "2025-12-01"])
    assert r.exit_code == 0, r.output
    assert "1 inspections and 0 stored photos from before 2025-12-01 deleted" in r.output
    r = CliRunner().invoke(app, ["log", "prune", "--db", db, "--before", "last year"])
    assert r.exit_code != 0 and "--before 'last year': not an ISO 8601 time" in r.output
