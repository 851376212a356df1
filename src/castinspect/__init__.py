"""castinspect: visual inspection of metal castings, as a library.

    import castinspect

    predictor = castinspect.load_model()                  # the bundled model, or a .ckpt / .onnx path
    insp = predictor.predict_one("part.jpg")              # an Inspection: label, p_defect, decision
    for insp in predictor.predict(["a.jpg", "b.png"]):    # many photos, decoded in parallel
        print(insp.source, insp.decision, insp.p_defect)

    run, metrics = castinspect.train("photos/", "runs/mine")      # ROOT/train/<class>/ or ROOT/<class>/
    result = castinspect.evaluate(castinspect.load_model("runs/mine/model.ckpt"), "photos/test")
    with castinspect.InspectionLog.open("line1.db") as log:       # the station's durable record
        log.record([insp])

The names are imported on first use, so ``import castinspect`` loads no model and no PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from castinspect.core import __version__

if TYPE_CHECKING:
    from castinspect.core.config import Config
    from castinspect.core.records import Inspection
    from castinspect.evaluation.evaluate import Evaluation
    from castinspect.inference.predict import Predictor
    from castinspect.station.log import InspectionLog
    from castinspect.training.train import TrainResult

__all__ = ["Config", "Evaluation", "Inspection", "InspectionLog", "Predictor", "__version__", "evaluate",
           "load_model", "train"]

_LAZY = {"Config": "castinspect.core.config", "Inspection": "castinspect.core.records",
         "Evaluation": "castinspect.evaluation.evaluate", "Predictor": "castinspect.inference.predict",
         "InspectionLog": "castinspect.station.log"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'castinspect' has no attribute {name!r}")


def load_model(model: str | None = None, **options: Any) -> "Predictor":
    """A Predictor for a checkpoint (.ckpt), an exported .onnx file, or the bundled model (None).
    ``options``: threshold, review_band, backend, workers."""
    from castinspect.inference.predict import Predictor
    return Predictor.load(model, **options)


def train(data: str, run_dir: str, config: "str | Config | None" = None, budget: float = 600.0,
          search: bool = True, **choices: Any) -> "tuple[TrainResult, dict]":
    """Search a recipe (unless ``search`` is off), train on ``data`` into ``run_dir`` and evaluate
    (validation, and the test split when there is one), all within ``budget`` seconds; returns
    (the run, its metrics). ``config``: a YAML file or a Config, the search's starting point;
    ``choices``: backbone, size, epochs, seed, target_recall, strict, device, as on the command line."""
    from castinspect.training.run import configure, train_and_evaluate
    return train_and_evaluate(configure(config, **choices), data, run_dir, budget=budget, search=search)


def evaluate(predictor: "Predictor", data: str, **options: Any) -> "Evaluation":
    """Judge the labelled photos of ``data`` (class folders or a manifest) and compare with their
    labels: ``result.metrics``. ``options``: train_root, split, strict."""
    from castinspect.evaluation.evaluate import evaluate as run
    return run(predictor, data, **options)
