"""Which views of a photo to average at test time, judged on a run's grouped validation split.

    .venv/bin/python benchmarks/mirror_views.py runs/bundle4/seed0 [--target-recall 0.99]

Loads RUN_DIR/model.ckpt with mirror averaging off, judges RUN_DIR/split.csv's validation photos
under the line-variation suite once per view (the photo as taken, mirrored, turned by 90/180/270
degrees, transposed), then for each set of views averages their probabilities, chooses the
threshold on the clean validation photos for the target recall (as training does) and prints the
errors clean and under the suite. This is how ``model.mirror_average`` was chosen; it reads
validation photos only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from castinspect.data.datasets import read_manifest
from castinspect.evaluation.metrics import choose_threshold
from castinspect.evaluation.robustness import SUITE, suite_probabilities
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import load_checkpoint

VIEWS = {  # on (N, S, S) uint8 photos
    "id": lambda x: x,
    "fliplr": lambda x: x[:, :, ::-1],
    "flipud": lambda x: x[:, ::-1, :],
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot180": lambda x: x[:, ::-1, ::-1],
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "transpose": lambda x: x.transpose(0, 2, 1),
    "antitranspose": lambda x: np.rot90(x, 1, axes=(1, 2))[:, :, ::-1],
}
SETS = {
    "as taken": ["id"],
    "+ mirror (mirror_average)": ["id", "fliplr"],
    "+ turned 180": ["id", "rot180"],
    "both flips + 180": ["id", "fliplr", "flipud", "rot180"],
    "4 quarter turns": ["id", "rot90", "rot180", "rot270"],
    "all 8 symmetries": list(VIEWS),
}


class OneView:
    """The predictor's surface that ``suite_probabilities`` uses, judging one view of each photo."""

    def __init__(self, base: Predictor, view) -> None:
        self.base, self.view = base, view
        self.input_size, self.classes, self.ok_index = base.input_size, base.classes, base.ok_index

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.base.probabilities(np.ascontiguousarray(self.view(images)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--target-recall", type=float, default=0.99)
    args = ap.parse_args()
    ckpt = load_checkpoint(args.run_dir / "model.ckpt")
    ckpt.config.model.mirror_average = False  # single views; the sets below do the averaging
    base = Predictor(ckpt, backend="onnxruntime")
    images = read_manifest(args.run_dir / "split.csv", "val", base.classes)
    probs: dict[str, dict[str, np.ndarray]] = {}
    for name, view in VIEWS.items():
        t = time.perf_counter()
        probs[name], labels, _, _ = suite_probabilities(OneView(base, view), images)
        print(f"judged view {name} under the suite in {time.perf_counter() - t:.0f} s", flush=True)
    defect = (labels != base.ok_index).astype(int)
    print_header("views averaged", len(labels), defect, args.target_recall)
    for name, views in SETS.items():
        p = {v.name: 1 - np.mean([probs[w][v.name][:, base.ok_index] for w in views], axis=0) for v in SUITE}
        print_row(name, p, defect, args.target_recall)


def print_header(what: str, n: int, defect: np.ndarray, target_recall: float) -> None:
    print(f"\n{n} validation photos ({defect.sum()} defective), threshold for recall "
          f">= {target_recall} on the clean photos; errors are escapes / false rejects\n")
    print(f"{what:26s} threshold  clean    suite mean  worst    photometric  geometric  all errors  clean at 0.5")


def print_row(name: str, p: dict[str, np.ndarray], defect: np.ndarray, target_recall: float) -> None:
    """One line: p(defect) under each variation of the suite judged at the threshold that the
    clean photos give for ``target_recall``."""
    thr = choose_threshold(defect, p["original"], target_recall)
    rows = {}
    for v in SUITE:
        said = p[v.name] >= thr
        rows[v.name] = (int((defect & ~said).sum()), int((~defect.astype(bool) & said).sum()), v.kind)
    acc = [1 - (e + f) / len(defect) for e, f, _ in rows.values()]
    kinds = {k: [sum(x) for x in zip(*[(e, f) for e, f, kd in rows.values() if kd == k])]
             for k in ("photometric", "geometric")}
    print(f"{name:26s} {thr:9.3f}  {rows['original'][0]:2d} / {rows['original'][1]:<3d}  "
          f"{np.mean(acc):9.2%}  {min(acc):7.2%}  {kinds['photometric'][0]:4d} / {kinds['photometric'][1]:<4d} "
          f"{kinds['geometric'][0]:4d} / {kinds['geometric'][1]:<4d} {sum(e + f for e, f, _ in rows.values()):6d}"
          f"      {np.mean((p['original'] >= 0.5) == defect):.2%}", flush=True)


if __name__ == "__main__":
    main()
