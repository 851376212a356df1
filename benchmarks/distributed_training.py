"""One process against ``torchrun --standalone --nproc-per-node N`` (gloo on the CPU): the same
recipe, the same steps, on a small real set; wall time and the two models side by side.

    .venv/bin/python benchmarks/distributed_training.py [--per-class 300] [--epochs 4] [--json out.json]

For each dataset (the casting photos and NEU-DET's six steel defects): ``--per-class`` training
photos of each class (the first by name, linked into a temporary root), the default recipe
(EfficientNet-Lite0, 160 px, batch 64) for ``--epochs`` epochs with no step stretching, no
recipe search. Both runs split validation the same way (grouped, same seed), so the two models
are judged on the same photos: accuracy with its 95% interval, the validation loss and how many
decisions agree. The wall time is the whole ``castinspect train`` command; the ratio is one
process's time over N processes' time, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = {"casting": DATA / "casting_data" / "train", "neu_det": DATA / "neu_det" / "train"}


def subset(source: Path, root: Path, per_class: int) -> None:
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (root / "train" / folder.name).mkdir(parents=True)
        for photo in sorted(folder.iterdir())[:per_class]:
            (root / "train" / folder.name / photo.name).symlink_to(photo)


def recipe(path: Path, epochs: int) -> None:
    from castinspect.core.config import Config
    from castinspect.models.registry import choose

    cfg = choose(Config(), backbone="efficientnet_lite0")
    cfg.train.epochs, cfg.train.min_steps, cfg.train.max_steps = epochs, 0, 0
    cfg.train.patience = epochs  # every epoch runs in both: the same steps
    cfg.save(path)


def train(root: Path, out: Path, config: Path, processes: int) -> float:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                if processes > 1 else [sys.executable])
    cmd = [*launcher, "-m", "castinspect", "train", str(root), "--out", str(out), "--config", str(config),
           "--no-search", "--budget", "1h"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-3000:])
    return time.perf_counter() - t


def side_by_side(runs: dict[int, Path]) -> dict:
    from castinspect.data.datasets import read_manifest
    from castinspect.evaluation.rates import rate
    from castinspect.inference.predict import Predictor

    decisions, rows = {}, {}
    val = read_manifest(next(iter(runs.values())) / "split.csv", "val")
    for n, run in runs.items():
        assert read_manifest(run / "split.csv", "val").paths == val.paths, "both must validate on the same photos"
        predictor = Predictor.load(run / "model.ckpt")
        labels = [r.label for r in predictor.predict(val.paths)]
        truth = [val.classes[y] for y in val.labels]
        right = sum(a == b for a, b in zip(labels, truth))
        info = json.loads((run / "metrics.json").read_text())
        decisions[n] = labels
        rows[n] = {"processes": n, "steps": info["steps"], "train_seconds": info["train_seconds"],
                   "val_accuracy": rate(right, len(truth)), "val_loss": min(
                       h["val_loss"] for h in predictor.checkpoint.info["history"]),
                   "model": predictor.model_id}
    one, many = decisions.values()
    return {"validation_photos": len(val.paths), "runs": list(rows.values()),
            "decisions_agree": sum(a == b for a, b in zip(one, many))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--dataset", action="append", choices=sorted(SETS), help="(repeat; default: both)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "recipe.yaml"
        recipe(config, args.epochs)
        for name in args.dataset or sorted(SETS):
            root = Path(tmp) / name
            subset(SETS[name], root, args.per_class)
            runs = {n: Path(tmp) / f"{name}-{n}" for n in (1, args.processes)}
            wall = {n: train(root, run, config, n) for n, run in runs.items()}
            row = {"dataset": name, **side_by_side(runs), "wall_seconds": {str(n): s for n, s in wall.items()},
                   "speed_ratio": wall[1] / wall[args.processes]}
            print(json.dumps(row, indent=2), flush=True)
            results.append(row)
    from castinspect.core.provenance import provenance

    out = {"per_class": args.per_class, "epochs": args.epochs, "processes": args.processes,
           "cores": os.cpu_count(), "launcher": "torchrun --standalone (torch.distributed.run), gloo",
           "datasets": results, "provenance": provenance()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
