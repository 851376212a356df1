"""Would an ensemble of seeds help? Several runs' models averaged, judged on validation.

    .venv/bin/python benchmarks/ensemble.py runs/bundle4/seed0 runs/bundle4/seed1

Judges the shared validation split (the first run's split.csv; runs of one data root and split
seed share it, as benchmarks/bundle_model.py's seeds do) under the line-variation suite with each
run's model as it would be bundled (mirror averaging as its config says), then prints each model
alone and the mean of their probabilities, each at the threshold its clean validation photos give
for the target recall (as training chooses it). An ensemble of k models costs k times the
network's work per photo. Validation photos only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from mirror_views import print_header, print_row

from castinspect.core.decision import defect_probability
from castinspect.data.datasets import read_manifest
from castinspect.evaluation.robustness import suite_probabilities
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", type=Path, nargs="+")
    ap.add_argument("--target-recall", type=float, default=0.99)
    args = ap.parse_args()
    p_defect: dict[str, dict[str, np.ndarray]] = {}
    for run in args.run_dirs:
        predictor = Predictor(load_checkpoint(run / "model.ckpt"), backend="onnxruntime")
        images = read_manifest(args.run_dirs[0] / "split.csv", "val", predictor.classes)
        probs, labels, _, _ = suite_probabilities(predictor, images)
        p_defect[str(run)] = {name: defect_probability(p, predictor.ok_index) for name, p in probs.items()}
        print(f"judged {run} under the suite", flush=True)
    defect = (labels != predictor.ok_index).astype(int)
    print_header("model", len(labels), defect, args.target_recall)
    for name, p in p_defect.items():
        print_row(Path(name).name, p, defect, args.target_recall)
    mean = {v: np.mean([p[v] for p in p_defect.values()], axis=0) for v in next(iter(p_defect.values()))}
    print_row(f"mean of {len(p_defect)}", mean, defect, args.target_recall)


if __name__ == "__main__":
    main()
