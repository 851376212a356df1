"""Load test of ``castinspect serve`` on loopback: latency one client at a time, then throughput
with many concurrent clients, then a check of the log against the answers.

    .venv/bin/python benchmarks/load_test.py [--clients 16] [--seconds 30] [--db URL] [--backend B] [--batch N] [--json out.json]

It starts the real server (a subprocess, the bundled model, a fresh SQLite log unless --db is
given), posts real 300x300 casting photos over keep-alive HTTP/1.1 connections, one thread per
client, and then asserts: no errors, and every request that got a 200 has exactly one row in the
log (and the log has no other rows). Client and server share this machine's cores, so the
numbers are for the pair, measured together.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "src" / "castinspect" / "assets" / "samples").glob("*/*.jpeg"))


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def client_loop(port: int, stop: threading.Event, results: list, bodies: list) -> None:
    """Post photos until ``stop``; append (latency_s, status, id or error) per request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while not stop.is_set():
        body, ctype = bodies[i % len(bodies)]
        i += 1
        t = time.perf_counter()
        try:
            conn.request("POST", "/v1/inspect", body=body, headers={"Content-Type": ctype})
            r = conn.getresponse()
            payload = r.read()
            dt = time.perf_counter() - t
            results.append((dt, r.status, json.loads(payload).get("id") if r.status == 200 else payload[:200]))
        except (OSError, http.client.HTTPException) as exc:
            results.append((time.perf_counter() - t, 0, repr(exc)))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def run_load(port: int, clients: int, seconds: float) -> tuple[list, float]:
    bodies = [multipart(p) for p in SAMPLES]
    stop = threading.Event()
    per_thread: list[list] = [[] for _ in range(clients)]
    threads = [threading.Thread(target=client_loop, args=(port, stop, per_thread[k], bodies)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return [r for rs in per_thread for r in rs], time.perf_counter() - t0


def summary(results: list, elapsed: float) -> dict:
    ok = [r for r in results if r[1] == 200]
    lat = np.array([r[0] for r in ok]) * 1000 if ok else np.zeros(1)
    return {"requests": len(results), "ok": len(ok), "errors": len(results) - len(ok),
            "requests_per_s": len(ok) / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "seconds": elapsed,
            "error_samples": [str(r[2]) for r in results if r[1] != 200][:5]}


def start_server(port: int, db: str, extra: list[str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "castinspect", "serve", "--port", str(port), "--db", db, *(extra or [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError("server did not come up in 60 s")


def check_log(db: str, ids: list[str]) -> dict:
    """Every acknowledged id exactly once, and nothing else, in the log."""
    from castinspect.station.log import InspectionLog

    with InspectionLog.open(db) as log:
        logged = [row["id"] for row in log.iter_rows()]
    counts: dict[str, int] = {}
    for i in logged:
        counts[i] = counts.get(i, 0) + 1
    return {"acknowledged": len(ids), "rows": len(logged),
            "missing": sum(1 for i in ids if i not in counts),
            "duplicated": sum(1 for n in counts.values() if n > 1),
            "unacknowledged_rows": len(set(logged) - set(ids))}


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--single-seconds", type=float, default=10.0, help="the one-client latency phase")
    ap.add_argument("--db", help="log URL (default: a fresh SQLite file)")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--backend", help="the server's --backend (default: its own, auto)")
    ap.add_argument("--model", help="the server's --model (default: the bundled model)")
    ap.add_argument("--batch", type=int, help="the server's --batch (default: its own)")
    args = ap.parse_args(argv)
    db = args.db or os.path.join(tempfile.mkdtemp(prefix="castinspect-load-"), "log.db")
    port = free_port()
    server = start_server(port, db, [*(["--backend", args.backend] if args.backend else []),
                                     *(["--model", args.model] if args.model else []),
                                     *(["--batch", str(args.batch)] if args.batch else [])])
    phases = {}
    try:
        phases["warm_up"] = run_load(port, 1, 1.0)  # not in the numbers below, but in the log check
        phases["single_client"] = run_load(port, 1, args.single_seconds)
        phases[f"{args.clients}_clients"] = run_load(port, args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(30)
    out: dict = {name: summary(*phases[name]) for name in phases if name != "warm_up"}
    acknowledged = [r[2] for results, _ in phases.values() for r in results if r[1] == 200]
    out["log_check"] = check_log(db, acknowledged)
    out["errors"] = sum(len(results) for results, _ in phases.values()) - len(acknowledged)
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    lc = out["log_check"]
    if out["errors"] or lc["missing"] or lc["duplicated"] or lc["unacknowledged_rows"]:
        sys.exit("FAILED: errors, or the log does not hold exactly one row per acknowledged request")
    return out


if __name__ == "__main__":
    main()
