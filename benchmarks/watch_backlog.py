"""Issue 20's backlog: how fast ``castinspect watch`` works through photos written while it was
down, as a share of ``castinspect predict`` on the same photos.

    .venv/bin/python benchmarks/watch_backlog.py ../shared/data/casting_data --photos 5000

The first ``--photos`` training photos are copied into a temporary folder (unique names). Then,
in one run, each as one process, start-up included: ``castinspect predict FOLDER --format json``
(its output to /dev/null), and ``castinspect watch FOLDER --db NEW.db --once``, which judges,
commits every photo to a fresh SQLite log and moves it into its folder. Reported: photos/s of
each and their ratio (target: watch at least 0.8 of predict). Writes
benchmarks/results/watch_backlog.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from castinspect.core.provenance import provenance
from castinspect.station.log import InspectionLog

OUT = Path(__file__).parent / "results" / "watch_backlog.json"


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a data root with train/<class>/ photos")
    ap.add_argument("--photos", type=int, default=5000)
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args(argv)
    sources = sorted((args.data / "train").glob("*/*.jpeg"))[:args.photos]
    with tempfile.TemporaryDirectory(prefix="castinspect-backlog-") as tmp:
        folder = Path(tmp) / "camera"
        folder.mkdir()
        for i, p in enumerate(sources):
            shutil.copy(p, folder / f"{i:05d}_{p.name}")
        cli = [sys.executable, "-m", "castinspect"]
        predict_s = timed([*cli, "predict", str(folder), "--format", "json"])
        watch_s = timed([*cli, "watch", str(folder), "--db", str(Path(tmp) / "log.db"), "--once"])
        with InspectionLog.open(Path(tmp) / "log.db", create=False) as log:
            recorded = log.page()[1]
        left = sum(1 for _ in folder.glob("*.jpeg"))
    n = len(sources)
    out = {"provenance": provenance(), "photos": n, "recorded": recorded, "left_in_folder": left,
           "predict_seconds": round(predict_s, 2), "watch_seconds": round(watch_s, 2),
           "predict_photos_per_s": round(n / predict_s, 1), "watch_photos_per_s": round(n / watch_s, 1),
           "ratio": round(predict_s / watch_s, 3), "target_ratio": 0.8}
    print(json.dumps({k: v for k, v in out.items() if k != "provenance"}, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
