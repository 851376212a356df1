"""Fault injection against the real station: a uvicorn server on loopback (in this process, or
``castinspect serve`` as a process where its memory is measured), a real PostgreSQL cluster of
its own (frozen with SIGSTOP, shut down fast under load), a real SQLite file (locked, moved,
replaced, on a full disk). Each test reproduces one way a bad day at the plant looked, and shows
what the station does now: bounded waits, honest 503s and health, no record lost or doubled.
The docs' table "When things go wrong" lists these tests."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest

from castinspect.inference.predict import Predictor
from castinspect.station.app import Limits, create_app
from castinspect.station.log import InspectionLog

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "castinspect" / "assets" / "samples"
PHOTOS = sorted(SAMPLES.glob("*/*.jpeg"))
DEFECTIVE = sorted((SAMPLES / "def_front").glob("*.jpeg"))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


@pytest.fixture(scope="module")
def own_postgres():
    """A PostgreSQL cluster for this module alone: freezing the session's would stall other tests."""
    from services import PostgresServer

    server = PostgresServer()
    yield server
    postgres_processes(server, signal.SIGCONT)
    server.stop()


def postgres_processes(server, sig: int) -> int:
    """Send ``sig`` to the cluster's postmaster and every process it started; how many."""
    master = int((server.data / "postmaster.pid").read_text().split()[0])
    pids = [master]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.append(int(stat.parent.name))
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return len(pids)


def multipart(data: bytes, name: str = "part.jpeg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Answer(NamedTuple):
    status: int
    body: dict
    seconds: float
    retry_after: str | None = None


def post(port: int, data: bytes, headers: dict | None = None, timeout: float = 60) -> Answer:
    """One POST /v1/inspect on a fresh connection."""
    body, ctype = multipart(data)
    t = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/inspect", body=body, headers={"Content-Type": ctype, **(headers or {})})
        r = conn.getresponse()
        payload = r.read()
        return Answer(r.status, json.loads(payload) if payload.startswith(b"{") else {"raw": payload[:200]},
                      time.monotonic() - t, r.getheader("Retry-After"))
    finally:
        conn.close()


def get(port: int, path: str, timeout: float = 10) -> tuple[int, float]:
    t = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status, time.monotonic() - t
    finally:
        conn.close()


class Station:
    """The real app on uvicorn in a thread, with its own log; stopped on exit."""

    def __init__(self, predictor, url, commit_timeout: float = 2.0, limits: Limits | None = None, **app) -> None:
        from services import ThreadedServer

        self.log = InspectionLog.open(url, commit_timeout=commit_timeout)
        self.server = ThreadedServer(create_app(predictor, self.log, limits=limits, **app), limits)
        self.port = self.server.port

    def __enter__(self) -> "Station":
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.log.close()


def rows(url: str) -> dict[str, dict]:
    with InspectionLog.open(url, create=False) as log:
        return {r["id"]: r for r in log.iter_rows()}


# -- photos that cannot be judged, and photos that cost memory ---------------------------------

def test_tiny_photos_are_refused_not_passed(predictor, tmp_path):
    """Defective photos shrunk to 8x8 and 16x16 px were judged ok (53 and 58 of 60): now 422."""
    with Station(predictor, tmp_path / "log.db") as s:
        for side in (8, 16):
            for path in DEFECTIVE:
                tiny = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (side, side), interpolation=cv2.INTER_AREA)
                a = post(s.port, cv2.imencode(".png", tiny)[1].tobytes())
                assert a.status == 422 and "too small" in a.body["detail"], a
    assert rows(tmp_path / "log.db") == {}


def _hwm(pid: int) -> int:
    """Peak resident memory of a process so far, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def test_decompression_uploads_stay_within_the_stated_memory_bound(tmp_path):
    """A 2 KB lossless WebP of 7000x7000 px and a 16-bit RGBA PNG cost +280 MB and +750 MB each, and
    about 40 were decoded at once. Now at most --decode-slots decode at once, each within about 6
    bytes per pixel of the limit: 16 such uploads at once, 2 slots, stay within that bound."""
    from services import benchmark

    lt = benchmark("load_test")

    webp = cv2.imencode(".webp", np.zeros((7000, 7000), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    rgba = np.zeros((5000, 5000, 4), np.uint16)
    rgba[::40] = 60000
    png = cv2.imencode(".png", rgba, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    assert len(webp) < 10_000 and len(png) < 2_000_000
    port = lt.free_port()
    server = lt.start_server(port, str(tmp_path / "log.db"), ["--decode-slots", "2", "--queue-wait", "60"])
    try:
        assert post(port, PHOTOS[0].read_bytes())[0] == 200  # warm: the model's own memory counted first
        before = _hwm(server.pid)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda d: post(port, d, timeout=300), [webp, png] * 8))
        growth = _hwm(server.pid) - before
        print(f"peak memory growth, 16 uploads at once, 2 slots: {growth / 2 ** 20:.0f} MiB")
        assert all(a.status in (200, 422) for a in answers), [a[:2] for a in answers]
        bound = 2 * 6 * 50_000_000 + 100 * 2 ** 20  # two slots at 6 B/px of 50 MP, and the uploads themselves
        assert growth < bound, f"peak memory grew {growth / 2 ** 20:.0f} MiB"
        refused = post(port, cv2.imencode(".png", np.zeros((8000, 8000), np.uint8))[1].tobytes())
        assert refused[0] == 422 and "too large" in refused[1]["detail"]  # 64 MP: over the limit, unread
    finally:
        server.terminate()
        server.wait(30)


# -- the connection itself -------------------------------------------------------------------

def test_slow_headers_and_slow_bodies_are_cut_off(predictor, tmp_path):
    """A connection that never finished its headers stayed open for ever (slowloris)."""
    limits = Limits(header_timeout=1.0, body_timeout=1.0)
    with Station(predictor, tmp_path / "log.db", limits=limits) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/inspect HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
            t = time.monotonic()
            assert sock.recv(100) == b""  # closed by the server
            assert time.monotonic() - t < 5
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
            body, ctype = multipart(PHOTOS[0].read_bytes())
            sock.sendall(f"POST /v1/inspect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:100])  # half a body
            answer = sock.recv(1000)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert post(s.port, PHOTOS[0].read_bytes())[0] == 200  # and the station goes on


def test_a_burst_queues_a_flood_is_told_to_come_back(predictor, tmp_path):
    """16 clients at once all get 200 under the default limits; beyond the slots and their queue, a
    503 with Retry-After, nothing recorded, instead of the whole burst decoding at once."""
    data = [p.read_bytes() for p in PHOTOS]
    with Station(predictor, tmp_path / "a.db") as s:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: post(s.port, data[i % len(data)]), range(64)))
        assert [a.status for a in answers] == [200] * 64
        assert len({a.body["id"] for a in answers}) == 64 == len(rows(tmp_path / "a.db"))
    big = cv2.imencode(".webp", np.full((6000, 6000), 128, np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    limits = Limits(decode_slots=1, queue_depth=2, queue_wait=0.2)
    with Station(predictor, tmp_path / "b.db", limits=limits) as s:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda d: post(s.port, d), [big] * 12))
        busy = [a for a in answers if a.status == 503]
        assert busy and all("station busy" in a.body["detail"] and a.retry_after == "1" for a in busy)
        assert len(rows(tmp_path / "b.db")) == sum(a.status == 200 for a in answers) > 0


def test_cross_origin_posts_are_refused(predictor, tmp_path):
    """A page on another site recorded a fake inspection on a station without a token."""
    with Station(predictor, tmp_path / "log.db", trusted_hosts={"127.0.0.1", "localhost"}) as s:
        assert post(s.port, PHOTOS[0].read_bytes(), {"Origin": "http://evil.example"}).status == 403
        assert post(s.port, PHOTOS[0].read_bytes(), {"Host": "rebound.example"})[0] == 421
        assert post(s.port, PHOTOS[0].read_bytes())[0] == 200  # a script with neither header
    assert len(rows(tmp_path / "log.db")) == 1


# -- a database that hangs, fails or goes away ------------------------------------------------

def test_frozen_postgres_costs_a_bounded_wait_and_health_says_so(predictor, own_postgres):
    """PostgreSQL frozen (SIGSTOP, as a partition looks): uploads hung with no timeout; after 42,
    the page, /healthz and /metrics stopped answering too. Now: 503 within the commit timeout,
    /healthz 503 within a second, the page and metrics served throughout, and back once it thaws."""
    url = own_postgres.new_database()
    photo = PHOTOS[0].read_bytes()
    with Station(predictor, url, commit_timeout=2.0) as s:
        assert post(s.port, photo)[0] == 200
        assert get(s.port, "/healthz")[0] == 200
        assert postgres_processes(own_postgres, signal.SIGSTOP) >= 2
        try:
            with ThreadPoolExecutor(60) as pool:
                # 50 readers and 10 writers at once: more than the 40 threads of the pool
                readers = [pool.submit(get, s.port, "/v1/stats", 30) for _ in range(50)]
                writers = [pool.submit(post, s.port, photo) for _ in range(10)]
                time.sleep(0.5)
                for path in ("/healthz", "/metrics", "/", "/v1/model"):
                    status, seconds = get(s.port, path, timeout=5)
                    assert seconds < 1.0, (path, seconds)
                    assert status == (503 if path == "/healthz" else 200), path
                answers = [w.result() for w in writers]
                reads = [r.result() for r in readers]
            for a in answers:
                assert a.status == 503 and a.seconds < 2.0 + 1.5, a
                assert a.body["recorded"] in (False, None) and a.body["id"]
            assert all(status == 503 for status, _ in reads)
        finally:
            postgres_processes(own_postgres, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while get(s.port, "/healthz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert get(s.port, "/healthz")[0] == 200
        assert post(s.port, photo).status == 200
    logged = rows(url)
    for a in answers:
        if a.body["recorded"] is False:  # "nothing recorded" was true
            assert a.body["id"] not in logged


def test_held_sqlite_lock_costs_a_bounded_wait(predictor, tmp_path):
    """Another process holding the SQLite write lock froze uploads for up to 60 s."""
    db = tmp_path / "log.db"
    with Station(predictor, db, commit_timeout=10.0) as s:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            status, body, seconds, _ = post(s.port, PHOTOS[0].read_bytes())
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert status == 503 and body["recorded"] is False and seconds < 8
        assert post(s.port, PHOTOS[0].read_bytes())[0] == 200
    assert body["id"] not in rows(db) and len(rows(db)) == 1


def test_log_file_moved_or_replaced_is_refused_and_never_recreated(predictor, tmp_path):
    """The log file moved aside: the writer reconnected to the path, created an empty file
    without tables, answered 503 to everything, with health green. Now: 503, health 503, no new
    file; another file put in its place is not written to either; the original back, all is well."""
    db = tmp_path / "log.db"
    photo = PHOTOS[0].read_bytes()
    with Station(predictor, db) as s:
        assert post(s.port, photo)[0] == 200
        db.rename(tmp_path / "aside.db")
        moved = post(s.port, photo)
        assert moved.status == 503 and moved.body["recorded"] is False
        assert get(s.port, "/healthz")[0] == 503
        assert not db.exists()
        with InspectionLog.open(tmp_path / "other.db"):
            pass
        shutil.copy(tmp_path / "other.db", db)  # another log in its place
        assert post(s.port, photo)[0] == 503 and get(s.port, "/healthz")[0] == 503
        db.unlink()
        (tmp_path / "aside.db").rename(db)  # the original back
        assert get(s.port, "/healthz")[0] == 200
        assert post(s.port, photo)[0] == 200
    assert len(rows(db)) == 2 and rows(tmp_path / "other.db") == {}


def test_full_disk_makes_health_fail_and_loses_nothing(predictor, tmp_path):
    """Health said 200 while every write failed on a full disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        db = disk / "log.db"
        photos = [p.read_bytes() for p in PHOTOS]
        acknowledged, refused = [], []
        with Station(predictor, db, store_images=True) as s:
            assert post(s.port, photos[0])[0] == 200
            filler = disk / "filler"
            with open(filler, "wb") as fh:  # the rest of the disk
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                        fh.flush()
                except OSError:
                    pass
            for i in range(40):  # distinct photos (stored once per content): the log must grow
                noisy = cv2.imdecode(np.frombuffer(photos[i % len(photos)], np.uint8), cv2.IMREAD_GRAYSCALE)
                noisy = np.clip(noisy.astype(int) + np.random.default_rng(i).integers(-3, 4, noisy.shape), 0, 255)
                a = post(s.port, cv2.imencode(".png", noisy.astype(np.uint8))[1].tobytes())
                (acknowledged if a.status == 200 else refused).append(a.body)
                if a.status == 503:
                    break
            assert refused and refused[-1]["recorded"] is False
            assert get(s.port, "/healthz")[0] == 503
            filler.unlink()
            assert post(s.port, photos[0])[0] == 200
            assert get(s.port, "/healthz")[0] == 200
        logged = rows(db)
        assert all(b["id"] in logged for b in acknowledged)
        assert all(b["id"] not in logged for b in refused)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_postgres_fast_shutdown_under_load_leaves_no_ambiguous_record(predictor, own_postgres):
    """During PostgreSQL fast shutdowns 1 and 3 records were committed while their clients heard
    "nothing recorded", and a retry recorded the part twice. Now every record the database holds
    was answered 200 (or is the first answer a retry with the same key got back), every 200 is in
    it, and no part is in twice."""
    url = own_postgres.new_database()
    photos = [p.read_bytes() for p in PHOTOS]
    stop = threading.Event()
    answers: list[tuple[str, int, dict]] = []  # (key, status, body), every attempt
    final: dict[str, str] = {}  # key -> the id its 200 named

    def client(c: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"line-{c}-part-{n}"
            for _ in range(200):  # retried with the same key until it is answered 200
                try:
                    status, body, _, _ = post(s.port, photos[n % len(photos)], {"Idempotency-Key": key}, timeout=30)
                except OSError:
                    status, body = 0, {}
                answers.append((key, status, body))
                if status == 200:
                    final[key] = body["id"]
                    break
                time.sleep(0.1)
            n += 1

    with Station(predictor, url, commit_timeout=5.0) as s:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
        for t in threads:
            t.start()
        try:
            for _ in range(2):
                time.sleep(1.5)
                own_postgres.halt()  # fast shutdown: open connections cut, under load
                time.sleep(0.5)
                own_postgres.start()
            time.sleep(1.5)
        finally:
            stop.set()
            for t in threads:
                t.join(120)
    logged = rows(url)
    print("attempts", len(answers), "by status", {c: sum(a[1] == c for a in answers) for c in {a[1] for a in answers}},
          "may have been recorded", sum(a[2].get("recorded", 0) is None for a in answers), "parts", len(final))
    by_key = {r["request_key"]: r["id"] for r in logged.values()}
    assert len(by_key) == len(logged)  # no part twice
    assert any(status == 503 for _, status, _ in answers), "the shutdowns should have cost some requests"
    assert set(final) == set(by_key)  # every key in the log was finally answered 200, and the other way
    assert all(by_key[k] == i for k, i in final.items())  # with the record the log holds
    for key, status, body in answers:
        if status == 503 and body.get("recorded") is False:
            assert body["id"] not in logged  # "nothing recorded" was true
