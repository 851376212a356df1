"""A training run end to end, within a time budget: the recipe search, the final fit, then the
run's own evaluation, in its run directory.

RUN_DIR/search.db  search.csv                                       (``search.search``)
        config.yaml  split.csv  history.csv  model.ckpt  last.ckpt   (``train.fit``)
        metrics.json  report.html                                   (``finish_run``)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from castinspect.core.config import Config
from castinspect.core.provenance import provenance
from castinspect.core.runtime import training_device
from castinspect.data.datasets import (
    Decoded,
    ImageSet,
    is_manifest,
    load_split,
    read_manifest,
)
from castinspect.evaluation.evaluate import (
    TrainingPhotos,
    evaluate,
    evaluate_arrays,
    finite,
    headline,
    write_metrics,
)
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import Checkpoint, save_checkpoint
from castinspect.training.distributed import World, join, leave
from castinspect.training.inputs import (
    TrainingData,
    part_on_background,
    resolve_locate,
    resolve_part_augmentation,
)
from castinspect.training.search import DEFAULT_BUDGET, SEARCH_SHARE
from castinspect.training.search import search as run_search
from castinspect.training.train import Progress, TrainResult, fit, prepare_run_dir


def train_and_evaluate(cfg: Config, data_root: str | os.PathLike, run_dir: str | os.PathLike,
                       resume: bool = False, progress: Progress | None = None,
                       budget: float = DEFAULT_BUDGET, search: bool = False,
                       teacher=None) -> tuple[TrainResult | None, dict]:
    """A whole run within ``budget`` seconds: the recipe search (unless ``search`` is off), the
    final fit with the chosen recipe, then metrics.json and report.html: validation, and the test
    split when there is one (reported only: by then every choice has been made on validation).
    ``teacher``: a ``distill.Teacher`` the model also learns from (no search then). Under
    ``torchrun`` the processes train together (``distributed``); rank 0 returns the run, the
    others (None, {})."""
    t0 = time.perf_counter()
    progress = progress or Progress()
    world = join(training_device(cfg.train.device), budget + 1800)  # one process unless under torchrun
    try:
        return _train_and_evaluate(cfg, data_root, Path(run_dir), resume, progress, budget, search, teacher, world, t0)
    finally:
        leave()


def _train_and_evaluate(cfg: Config, data_root, run_dir: Path, resume: bool, progress: Progress, budget: float,
                        search: bool, teacher, world: World, t0: float) -> tuple[TrainResult | None, dict]:
    if world.main:
        prepare_run_dir(run_dir, resume)
    if resume and (run_dir / "last.ckpt").exists():
        search = False  # the final fit had begun: its recipe is the run's config.yaml
    elif world.main:
        cfg.save(run_dir / "config.yaml")  # the search's starting point, which --resume reads back
    located = cfg.data.locate == "auto"
    locate_choice = search and located and part_on_background(data_root, cfg.data.split_seed)
    base = cfg if locate_choice else resolve_locate(cfg, data_root)
    if located and not locate_choice:
        progress.message(f"part localisation: {base.data.locate} (data.locate auto)")
    data = TrainingData(base, data_root)
    train, val = data.decoded(base.model.input_size, base.data.locate == "on")
    base = resolve_part_augmentation(base, train, progress)  # for the search's trials as for the final fit
    test: ImageSet | None = None
    if is_manifest(data_root) or (Path(data_root) / "test").is_dir():
        test = load_split(data_root, "test", train.classes)
    reserve = evaluation_reserve(len(val.labels) + (len(test) if test is not None else 0),
                                 len(train.labels) if test is not None else 0)
    trials, cfg = None, base  # resolved once: the fit does not decide (and announce) it again
    if search and world.main:
        left = budget - (time.perf_counter() - t0) - reserve
        found = run_search(base, data, run_dir, SEARCH_SHARE * left, progress, locate_choice, resume)
        cfg, trials = found.config, found.trials
        progress.message(f"recipe: {describe_recipe(cfg)}")
    if search:
        cfg = world.from_main(cfg)  # the other processes wait here for rank 0's recipe
    result = fit(cfg, data_root, run_dir, resume=True, progress=progress, deadline=t0 + budget - reserve, data=data,
                 teacher=teacher)
    if result is None:
        return None, {}  # not rank 0: it evaluates and reports
    metrics = finish_run(result.run_dir, result.checkpoint, result.val, test or None, trials)  # an empty test is none
    metrics["run_seconds"] = time.perf_counter() - t0
    write_metrics(run_dir / "metrics.json", metrics)
    return result, metrics


def evaluation_reserve(photos: int, compared: int = 0) -> float:
    """Seconds kept back from a run's budget for its final evaluation and report (a generous
    guess: the model that will be evaluated does not exist yet), and for fingerprinting the
    ``compared`` training photos the test photos are checked against."""
    return 15.0 + 0.01 * photos + 0.004 * compared


def describe_recipe(cfg: Config) -> str:
    from castinspect.models.registry import resolve

    cfg = resolve(cfg)
    m, a, t = cfg.model, cfg.augment, cfg.train
    return (f"{m.backbone}, {m.input_size}px, {m.normalize}, mirror {m.mirror_average}, lr {t.lr:.2g}, "
            f"brightness {a.brightness:g}, rotation {a.rotate_deg:g}, flips {a.flips}, zoom {a.scale:g}, "
            f"locate {cfg.data.locate}")


def finish_run(run_dir: str | os.PathLike, ckpt: Checkpoint, val: Decoded,
               test: ImageSet | None, search: list[dict] | None = None) -> dict:
    """After training: metrics on validation (what chose the model) and, for reporting only, on
    the test split when there is one. Writes metrics.json and report.html; returns the metrics."""
    from castinspect.evaluation.report import (
        write_report,  # matplotlib is imported only when reporting
    )

    run_dir = Path(run_dir)
    predictor = Predictor(ckpt)
    results = [evaluate_arrays(predictor, "validation", val.images, val.labels, val.paths)]
    if test is not None:  # checked against the photos fitted: a test split of near-copies is no test
        fitted = TrainingPhotos(read_manifest(run_dir / "split.csv", "train").paths, "the run's split.csv")
        results.append(evaluate(predictor, test, training=fitted))
    metrics = {
        "provenance": provenance(),
        "model": predictor.model_id,
        "threshold": predictor.threshold,
        "parameters": ckpt.info.get("parameters"),
        "flops": ckpt.info.get("flops"),
        "train_seconds": ckpt.info.get("train_seconds"),
        "epochs_run": ckpt.info.get("epochs_run"),
        "steps": ckpt.info.get("steps"),
        **{r.name: r.metrics for r in results},
    }
    if search is not None:
        metrics["search"] = search
    write_metrics(run_dir / "metrics.json", metrics)
    # The checkpoint carries its metrics so `castinspect info` can show them without the run dir.
    ckpt.info["metrics"] = finite({r.name: headline(r.metrics) for r in results})
    save_checkpoint(ckpt, run_dir / "model.ckpt")
    write_report(run_dir / "report.html", results, predictor, history_csv=run_dir / "history.csv", search=search)
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
