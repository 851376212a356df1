"""The learning curve's runs judged again with and without mirror averaging (``model.mirror_average``).

    .venv/bin/python benchmarks/curve_mirror.py runs/curve [--backbone efficientnet_lite0]

The curve's pretrained runs were trained before mirror averaging existed, and retraining them
all is many hours on 2 cores. Mirror averaging changes only how a trained network judges (the
training itself is the same), so this judges each run's saved ``model.ckpt`` twice, in one
process — the photo as taken, and averaged with its mirror image — on the run's own grouped
validation photos and on the curve's fixed test parts, at threshold 0.5 (the curve's), and
prints both side by side, per run and as the mean over seeds for each size.

One caution the numbers carry: each run's checkpoint (its best epoch) was chosen on validation
without mirror averaging; a run trained with it on may have kept another epoch.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from castinspect.core.decision import defect_probability
from castinspect.data.datasets import Decoded, decode_set, read_manifest
from castinspect.evaluation.metrics import binary_summary
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import load_checkpoint

VIEWS = {"as taken": False, "mirror-averaged": True}


def judge(run: Path, test: dict[int, Decoded]) -> dict[str, dict[str, dict]]:
    """{view: {"val"|"test": accuracy, escapes, false rejects}} for one run at threshold 0.5."""
    out: dict[str, dict[str, dict]] = {}
    val = None
    for view, mirror in VIEWS.items():
        ckpt = load_checkpoint(run / "run" / "model.ckpt")
        ckpt.config.model.mirror_average = mirror
        predictor = Predictor(ckpt, threshold=0.5, backend="onnxruntime")
        size = predictor.input_size
        if size not in test:  # one decode of the fixed test parts per input size
            test[size] = decode_set(read_manifest(run / "subset.csv", "test", predictor.classes), size)
        if val is None:
            val = decode_set(read_manifest(run / "subset.csv", "val", predictor.classes), size)
        out[view] = {}
        for name, data in (("val", val), ("test", test[size])):
            p = defect_probability(predictor.probabilities(data.images), predictor.ok_index)
            y = (data.labels != predictor.ok_index).astype(int)
            s = binary_summary(y, p, 0.5)
            out[view][name] = {"n": len(y), "accuracy": 1 - s["errors"] / len(y),
                               "escapes": s["escapes"], "false_rejects": s["false_rejects"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("curve_dir", type=Path)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--json", type=Path, help="write every run's numbers here")
    args = ap.parse_args()
    runs = sorted((args.curve_dir / args.backbone).glob("n*_s*"),
                  key=lambda r: (int(r.name[1:].split("_")[0]) if r.name[1:4] != "all" else 10**9, r.name))
    test: dict[int, Decoded] = {}
    results: dict[str, dict] = {}
    by_size: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        if not (run / "run" / "model.ckpt").exists():
            continue
        results[run.name] = r = judge(run, test)
        by_size[run.name.split("_")[0][1:]].append(r)
        print(run.name, "  ".join(f"{v}: val {r[v]['val']['accuracy']:.4f} test {r[v]['test']['accuracy']:.4f} "
                                  f"({r[v]['test']['escapes']}/{r[v]['test']['false_rejects']})" for v in VIEWS),
              flush=True)
    print(f"\nmean over seeds, threshold 0.5; test: {next(iter(test.values())).labels.size} photos of unseen parts")
    print(f"{'photos':>7s} {'seeds':>5s} | " + " | ".join(
        f"{v}: test acc  escapes / FR  val acc" for v in VIEWS))
    for size, rs in by_size.items():
        cells = []
        for v in VIEWS:
            mean = {k: np.mean([r[v]["test"][k] for r in rs]) for k in ("accuracy", "escapes", "false_rejects")}
            val = np.mean([r[v]["val"]["accuracy"] for r in rs])
            cells.append(f"{mean['accuracy']:.2%} {mean['escapes']:5.1f} / {mean['false_rejects']:5.1f}  {val:.2%}")
        print(f"{size:>7s} {len(rs):5d} | " + " | ".join(f"{c:>38s}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
