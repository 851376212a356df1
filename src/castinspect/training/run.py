"""A training run end to end: fit, then the run's own evaluation, in its run directory.

RUN_DIR/config.yaml  split.csv  history.csv  model.ckpt  last.ckpt   (``train.fit``)
        metrics.json  report.html                                   (``finish_run``)
"""

from __future__ import annotations

import os
from pathlib import Path

from castinspect.core.config import Config
from castinspect.core.provenance import provenance
from castinspect.data.datasets import Decoded, ImageSet, is_manifest, load_split
from castinspect.evaluation.evaluate import (
    evaluate,
    evaluate_arrays,
    finite,
    headline,
    write_metrics,
)
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import Checkpoint, save_checkpoint
from castinspect.training.train import Progress, TrainResult, fit


def train_and_evaluate(cfg: Config, data_root: str | os.PathLike, run_dir: str | os.PathLike,
                       resume: bool = False, progress: Progress | None = None) -> tuple[TrainResult, dict]:
    """fit(), then metrics.json and report.html: validation, and the test split when there is one
    (reported only: by then every choice has been made on validation)."""
    result = fit(cfg, data_root, run_dir, resume=resume, progress=progress)
    test: ImageSet | None = None
    if is_manifest(data_root) or (Path(data_root) / "test").is_dir():
        test = load_split(data_root, "test", result.checkpoint.classes)
    metrics = finish_run(result.run_dir, result.checkpoint, result.val, test or None)  # an empty test is none
    return result, metrics


def finish_run(run_dir: str | os.PathLike, ckpt: Checkpoint, val: Decoded,
               test: ImageSet | None) -> dict:
    """After training: metrics on validation (what chose the model) and, for reporting only, on
    the test split when there is one. Writes metrics.json and report.html; returns the metrics."""
    from castinspect.evaluation.report import (
        write_report,  # matplotlib is imported only when reporting
    )

    run_dir = Path(run_dir)
    predictor = Predictor(ckpt)
    results = [evaluate_arrays(predictor, "validation", val.images, val.labels, val.paths)]
    if test is not None:
        results.append(evaluate(predictor, test))
    metrics = {
        "provenance": provenance(),
        "model": predictor.model_id,
        "threshold": predictor.threshold,
        "parameters": ckpt.info.get("parameters"),
        "flops": ckpt.info.get("flops"),
        "train_seconds": ckpt.info.get("train_seconds"),
        "epochs_run": ckpt.info.get("epochs_run"),
        **{r.name: r.metrics for r in results},
    }
    write_metrics(run_dir / "metrics.json", metrics)
    # The checkpoint carries its metrics so `castinspect info` can show them without the run dir.
    ckpt.info["metrics"] = finite({r.name: headline(r.metrics) for r in results})
    save_checkpoint(ckpt, run_dir / "model.ckpt")
    write_report(run_dir / "report.html", results, predictor, history_csv=run_dir / "history.csv")
    return metrics


def configure(config: str | os.PathLike | Config | None = None, run_dir: str | os.PathLike | None = None,
              resume: bool = False, backbone: str | None = None, size: str | None = None,
              epochs: int | None = None, seed: int | None = None, target_recall: float | None = None,
              strict: bool = False, device: str | None = None) -> Config:
    """The config a run trains with: ``config`` (a YAML file or a Config; default: the defaults),
    or on ``resume`` the run's own saved config, then the choices given here on top of it."""
    from castinspect.models.registry import choose

    if isinstance(config, Config):
        cfg = config
    elif config is not None:
        cfg = Config.load(config)
    elif resume and run_dir is not None and (Path(run_dir) / "config.yaml").exists():
        cfg = Config.load(Path(run_dir) / "config.yaml")
    else:
        cfg = Config()
    cfg = choose(cfg, backbone=backbone, size=size)
    if epochs is not None:
        cfg.train.epochs = epochs
    if seed is not None:
        cfg.train.seed = seed
    if target_recall is not None:
        cfg.train.target_recall = target_recall
    cfg.data.strict = cfg.data.strict or strict
    if device is not None:
        cfg.train.device = device
    return cfg
