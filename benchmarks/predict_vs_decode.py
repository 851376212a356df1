"""End-to-end ``castinspect predict`` against the decode-only limit, in one run.

    .venv/bin/python benchmarks/predict_vs_decode.py [--repeat 10] [--model M ...] [--json out.json]

Both definitions, as issue 22 states them:
- decode-only: OpenCV's grey ``imread`` of the same files, in as many processes as cores,
  nothing else;
- end to end: one ``castinspect predict --format json`` process over the 7,348 casting photos
  listed ``--repeat`` times (73,480 paths), start-up and piped output included; no result is
  reused across identical files (each path is decoded and judged again).

Each model given (default: the bundled one) is timed the same way; the ratio is end-to-end
photos/s over decode-only photos/s measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "casting_data"


def _decode(paths: list[str]) -> int:
    import cv2

    cv2.setNumThreads(1)
    return sum(cv2.imread(p, cv2.IMREAD_GRAYSCALE) is not None for p in paths)


def decode_only(paths: list[str], processes: int) -> float:
    chunks = [paths[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(_decode, [c[:50] for c in chunks]))  # start-up and imports, not timed
        t = time.perf_counter()
        decoded = sum(pool.map(_decode, chunks))
        seconds = time.perf_counter() - t
    assert decoded == len(paths), "every photo must decode"
    return len(paths) / seconds


def end_to_end(listing: Path, n: int, model: str | None) -> dict:
    cmd = [sys.executable, "-m", "castinspect", "predict", "--files-from", str(listing), "--format", "json",
           *(["--model", model] if model else [])]
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-2000:])
    records = json.loads(proc.stdout)
    assert len(records) == n and all(r["error"] is None for r in records)
    return {"model": records[0]["model"], "model_file": model or "bundled", "photos": n, "seconds": seconds,
            "photos_per_s": n / seconds, "summary": proc.stderr.decode().strip().splitlines()[-1]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--model", action="append", help="a model to time (repeat; default: the bundled model)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    photos = sorted(str(p) for p in DATA.glob("*/*/*.jpeg"))
    paths = photos * args.repeat
    processes = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "paths.txt"
        listing.write_text("\n".join(paths) + "\n")
        decode = decode_only(paths, processes)
        runs = [end_to_end(listing, len(paths), m) for m in (args.model or [None])]
    out = {"photos": len(photos), "paths": len(paths), "processes_for_decode": processes,
           "decode_only_photos_per_s": decode,
           "definitions": {"decode_only": f"cv2.imread(IMREAD_GRAYSCALE) of the same paths in {processes} processes",
                           "end_to_end": "one `castinspect predict --files-from LIST --format json` process, "
                                         "start-up and piped output included"},
           "models": [{**r, "vs_decode_only": r["photos_per_s"] / decode} for r in runs]}
    from castinspect.core.provenance import provenance

    out["provenance"] = provenance()
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
