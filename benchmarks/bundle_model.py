"""Train the bundled default model: the default recipe with one or more seeds, keep the one with
the lowest validation loss (all seeds share one validation split), copy it into the package.

    .venv/bin/python benchmarks/bundle_model.py ../shared/data/casting_data --seeds 0 --epochs 10 --target-recall 0.99

--reuse takes finished runs from --runs instead of training them again.

Every choice here is made on validation; the test split is evaluated by each run for its report
only. The default (pretrained EfficientNet-Lite0) takes about 20 minutes per seed on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from castinspect.core.config import Config
from castinspect.data.datasets import load_folder, split_dir
from castinspect.evaluation.report import read_history
from castinspect.models.checkpoint import bundled_model_path, load_checkpoint
from castinspect.models.network import predict_logits
from castinspect.training.inputs import split_train_val
from castinspect.training.run import finish_run, train_and_evaluate
from castinspect.training.train import operating_point


def retarget(run_dir: Path, data_root: str, target_recall: float) -> None:
    """Choose the run's threshold on its own validation split (rebuilt from the saved config and
    split seed) for a defect recall, and re-evaluate; the test split is only reported."""
    ckpt = load_checkpoint(run_dir / "model.ckpt")
    _, val, _ = split_train_val(ckpt.config, data_root)
    ckpt.temperature, ckpt.threshold = operating_point(predict_logits(ckpt.build_network(), val.images), val.labels,
                                                       ckpt.ok_index, ckpt.config.train.calibrate, target_recall)
    ckpt.info["threshold_rule"] = f"validation recall >= {target_recall}"
    ckpt.config.train.target_recall = target_recall
    test = load_folder(split_dir(data_root, "test"), ckpt.classes)
    metrics = finish_run(run_dir, ckpt, val, test)
    print(json.dumps({"threshold": ckpt.threshold, "validation": {k: metrics["validation"][k] for k in (
        "escapes", "false_rejects", "defect_recall", "false_reject_rate")}, "test": {k: metrics["test"][k] for k in (
        "escapes", "false_rejects", "defect_recall", "false_reject_rate")}}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_root")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", default="runs/bundle")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs in --runs")
    ap.add_argument("--epochs", type=int, default=None, help="train.epochs (default: the config's)")
    ap.add_argument("--target-recall", type=float, default=None,
                    help="then set every run's threshold on validation for this defect recall")
    args = ap.parse_args()
    best = None
    runs = []
    for seed in args.seeds:
        cfg = Config()
        cfg.train.seed = seed
        if args.epochs is not None:
            cfg.train.epochs = args.epochs
        run_dir = Path(args.runs) / f"seed{seed}"
        if args.reuse and (run_dir / "metrics.json").exists():
            val_loss = min(float(row["val_loss"]) for row in read_history(run_dir / "history.csv"))
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            result, metrics = train_and_evaluate(cfg, args.data_root, run_dir)
            val_loss = min(h["val_loss"] for h in result.history)
            print(json.dumps({"seed": seed, "best_val_loss": val_loss, "train_seconds": round(result.seconds, 1),
                              "val_errors": metrics["validation"]["errors"],
                              "test_errors": metrics.get("test", {}).get("errors")}), flush=True)
        runs.append(run_dir)
        if best is None or val_loss < best[0]:
            best = (val_loss, seed, run_dir)
    _, seed, run_dir = best
    if args.target_recall is not None:  # every run, so each can be judged at its own operating point
        for run in runs:
            retarget(run, args.data_root, args.target_recall)
    shutil.copy2(run_dir / "model.ckpt", bundled_model_path())
    shutil.copy2(run_dir / "metrics.json", bundled_model_path().with_name("model_metrics.json"))
    print(f"bundled seed {seed} from {run_dir} (lowest validation loss)")


if __name__ == "__main__":
    main()
