"""One `castinspect train` command as a user runs it, timed from a cold start (a new process),
summarised as a JSON result: wall time, steps, the search's trials, validation and test numbers.

    .venv/bin/python benchmarks/train_run.py ../shared/data/neu_det --name neu_det_default
    .venv/bin/python benchmarks/train_run.py ../shared/data/casting_data --name casting_no_search -- --no-search

Arguments after ``--`` go to `castinspect train`. Writes benchmarks/results/<name>.json; the run
directory is runs/<name> (replaced). The test numbers are reported only: nothing is chosen on them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from castinspect.core.provenance import provenance
from castinspect.evaluation.evaluate import finite, headline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--name", required=True)
    args, train_args = ap.parse_known_args()  # what follows --: options for castinspect train
    args.train_args = [a for a in train_args if a != "--"]
    run_dir = Path("runs") / args.name
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [str(Path(sys.executable).with_name("castinspect")), "train", args.data, "--out", str(run_dir),
               *args.train_args]
    t = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if run_dir.is_dir():  # what the command printed on the way: the search's trials among it
        (run_dir / "train.log").write_text(done.stderr)
    if done.returncode:
        sys.exit(f"castinspect train failed ({done.returncode}):\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result = {
        "provenance": provenance(),
        "train_command": " ".join(["castinspect", *command[1:]]),
        **{k: metrics.get(k) for k in ("model", "threshold", "parameters", "flops", "epochs_run")},
        "wall_seconds": round(wall, 1),
        "run_seconds": round(metrics["run_seconds"], 1),
        "train_seconds": round(metrics["train_seconds"], 1),
        "steps": metrics.get("steps"),
        "recipe": (run_dir / "config.yaml").read_text(),
        "search": metrics.get("search"),
        **{split: finite(headline(metrics[split])) for split in ("validation", "test") if split in metrics},
    }
    for split in ("validation", "test"):
        if split in metrics:
            result[split]["misclassified"] = metrics[split].get("misclassified")
    out = Path("benchmarks/results") / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.name}: {wall:.0f}s wall, {metrics.get('steps')} steps; "
          + "; ".join(f"{s} {result[s]['accuracy']:.4f} ({result[s]['n']} photos)"
                      for s in ("validation", "test") if s in result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
