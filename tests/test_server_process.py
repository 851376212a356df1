"""The server as a real process on loopback: a short bounded load (no errors, one log row per
acknowledged request), and a hard kill mid-load (nothing acknowledged is lost)."""

from __future__ import annotations

import threading
import time

import pytest
from services import benchmark

from castinspect.station.log import InspectionLog

load_test = benchmark("load_test")


def test_bounded_load_every_answer_logged_once(tmp_path):
    out = load_test.main(["--clients", "6", "--seconds", "3", "--single-seconds", "1",
                          "--db", str(tmp_path / "log.db"), "--json", str(tmp_path / "load.json")])
    assert out["errors"] == 0 and out["6_clients"]["ok"] > 0
    assert out["log_check"]["rows"] == out["log_check"]["acknowledged"]
    assert out["log_check"]["missing"] == out["log_check"]["duplicated"] == 0


def test_hard_kill_mid_load_keeps_every_acknowledged_record(tmp_path):
    db = str(tmp_path / "log.db")
    port = load_test.free_port()
    server = load_test.start_server(port, db)
    stop = threading.Event()
    results: list = []
    bodies = [load_test.multipart(p) for p in load_test.SAMPLES]
    clients = [threading.Thread(target=load_test.client_loop, args=(port, stop, results, bodies)) for _ in range(4)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 60
    while sum(r[1] == 200 for r in list(results)) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL mid-load: no shutdown handler runs
    server.wait()
    stop.set()
    for c in clients:
        c.join()
    acknowledged = [r[2] for r in results if r[1] == 200]
    assert len(acknowledged) >= 40
    assert any(r[1] == 0 for r in results), "the kill should have cut some requests off"

    server = load_test.start_server(port, db)  # restarts on the same log
    try:
        check = load_test.check_log(db, acknowledged)
        assert check["missing"] == 0 and check["duplicated"] == 0
        # a request cut off after its commit may be in the log without its answer: at most one per client
        assert check["unacknowledged_rows"] <= len(clients)
        again = load_test.summary(*load_test.run_load(port, 1, 0.5))
        assert again["errors"] == 0 and again["ok"] > 0
    finally:
        server.terminate()
        server.wait(30)
    with InspectionLog.open(db) as log:
        assert log.query("PRAGMA integrity_check")[0][0] == "ok"


@pytest.mark.parametrize("partitioned", [False, True], ids=["plain", "partitioned-by-month"])
def test_three_stations_on_one_postgresql_log_under_load(postgres, partitioned):
    """Three `serve` processes started together on one PostgreSQL log (fresh: they race to create
    its schema; or partitioned by month with scripts/postgres/partition-by-month.sql), each under
    load from its own clients: every acknowledged request is one row, under the station that
    answered it."""
    from concurrent.futures import ThreadPoolExecutor

    db = postgres.new_database()
    if partitioned:
        from test_retention import RECIPE, psql

        InspectionLog.open(db).close()
        psql(postgres, db, "-f", str(RECIPE))
    ports = [load_test.free_port() for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        servers = list(pool.map(lambda i: load_test.start_server(ports[i], db, ["--station", f"line-{i}"]), range(3)))
    try:
        with ThreadPoolExecutor(3) as pool:
            loads = list(pool.map(lambda port: load_test.run_load(port, 3, 4.0), ports))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(30)
    acknowledged = {i: [r[2] for r in results if r[1] == 200] for i, (results, _) in enumerate(loads)}
    assert all(len(ids) > 0 for ids in acknowledged.values())
    assert all(load_test.summary(*load)["errors"] == 0 for load in loads)
    check = load_test.check_log(db, [i for ids in acknowledged.values() for i in ids])
    assert check["rows"] == check["acknowledged"] and check["missing"] == check["duplicated"] == 0
    with InspectionLog.open(db) as log:
        for i, ids in acknowledged.items():
            assert {row["id"] for row in log.iter_rows(station=f"line-{i}")} == set(ids)
