"""Part localisation on or off: the same recipe trained twice, judged on its grouped validation
split (parts it never saw) as taken and under every line variation, the moved-camera ones too.

    .venv/bin/python benchmarks/locate.py ../shared/data/casting_data --backbone castnet --runs runs/locate

Both runs share the seed and the validation split (``data.split_seed``); only ``data.locate``
differs. Writes benchmarks/results/locate_<backbone>.json. Every choice it informs is made on
validation; the test split is not read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from castinspect.core.config import Config
from castinspect.core.provenance import provenance
from castinspect.data.datasets import read_manifest
from castinspect.evaluation.evaluate import (
    evaluate,
    evaluate_robustness,
    finite,
    headline,
)
from castinspect.inference.predict import Predictor
from castinspect.models.registry import choose
from castinspect.training.train import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--backbone", default="castnet")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--runs", default="runs/locate")
    ap.add_argument("--out", default=None, help="JSON result (default benchmarks/results/locate_<backbone>.json)")
    args = ap.parse_args()
    result = {"provenance": provenance(), "data": args.data, "backbone": args.backbone, "runs": {}}
    for locate in ("off", "on"):
        run_dir = Path(args.runs) / f"{args.backbone}_{locate}"
        cfg = choose(Config(), backbone=args.backbone)
        cfg.data.locate = locate
        if args.epochs:
            cfg.train.epochs = args.epochs
        t0 = time.perf_counter()
        ckpt = fit(cfg, args.data, run_dir, resume=True).checkpoint
        seconds = time.perf_counter() - t0
        predictor = Predictor(ckpt)
        val = read_manifest(run_dir / "split.csv", "val", ckpt.classes)
        ev = evaluate(predictor, val, split="val")
        suite = evaluate_robustness(predictor, ev)
        result["runs"][locate] = {"train_seconds": seconds, "threshold": predictor.threshold,
                                  "validation": headline(ev.metrics), "summary": suite.summary,
                                  "robustness": {k: {f: r[f] for f in ("kind", "accuracy", "escapes", "false_rejects")}
                                                 for k, r in suite.results.items()}}
        print(f"locate {locate}: validation accuracy {ev.metrics['accuracy']:.4f}, suite lowest "
              f"{suite.summary['lowest_accuracy']:.4f} ({suite.summary['lowest_accuracy_under']}), "
              f"camera lowest {suite.summary['lowest_accuracy_camera']:.4f}, {seconds:.0f} s", flush=True)
    off, on = (result["runs"][k]["robustness"] for k in ("off", "on"))
    print(f"{'variation':<20} {'off':>8} {'on':>8}")
    for name in off:
        print(f"{name:<20} {off[name]['accuracy']:>8.4f} {on[name]['accuracy']:>8.4f}")
    out = Path(args.out or f"benchmarks/results/locate_{args.backbone}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(finite(result), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
