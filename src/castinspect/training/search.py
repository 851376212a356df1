"""A recipe search within a time budget: Optuna's TPE over the choices that differ between products.

Every trial trains a recipe on the run's training photos for a third of the steps its final fit
would make (``TRIAL_SHARE``) and is judged on the grouped validation split only: the validation
error rate at the model's own decision, plus a tenth of the validation loss so that near-ties go
to the more confident recipe. Successive halving stops weak trials at their first epochs.
Trial 0 is the recipe as configured; another recipe replaces it only if it beat trial 0 by more
than one validation photo's error.

The study lives in ``RUN_DIR/search.db`` (Optuna's SQLite storage): ``--resume`` continues it.
``RUN_DIR/search.csv`` lists every trial's recipe, validation numbers and time.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from castinspect.core.config import Config
from castinspect.training.inputs import TrainingData
from castinspect.training.schedule import plan
from castinspect.training.train import Progress, train_model

DEFAULT_BUDGET = 600.0  # seconds for the whole train command: search, final fit, evaluation, report
MIN_TRIAL = 5.0  # seconds: the search stops when less is left
# A trial is the recipe's own schedule in miniature, a third of its steps (warm-up and cosine
# decay included): trials cut short by time instead (tens of steps on a dataset of thousands)
# favoured recipes that learn fast and generalise worse, measured on both datasets.
TRIAL_SHARE = 1 / 3
MAX_TRIALS = 24
SEARCH_SHARE = 0.5  # of the time left after decoding, the rest for the final fit and its evaluation

# What the searched choices set. Photometric strength scales today's ranges (brightness,
# contrast, gamma, noise, blur, JPEG; exposure from the base recipe's own); "moved" framing covers a camera moved or changed
# (zoom 0.7-1.3, off-centre 15%).
PHOTOMETRIC = {"none": 0.0, "light": 0.5, "full": 1.0}
GEOMETRIC = {  # (flips, quarter_turns, rotate_deg)
    "any_rotation": (True, True, 180.0),
    "quarter_turns": (True, True, 0.0),
    "flips": (True, False, 0.0),
    "none": (False, False, 0.0),
}
FRAMING = {"steady": (0.15, 0.06), "moved": (0.3, 0.15)}  # (zoom, shift)
INPUT_SIZES = (128, 160, 192, 224)
BACKBONES = ("efficientnet_lite0", "castnet")
FIELDS = ["trial", "state", "seconds", "steps", "val_acc", "val_loss", "objective", "chosen", "params"]


@dataclass
class SearchResult:
    config: Config  # the chosen recipe (unresolved: the final fit resolves it)
    trials: list[dict]  # every trial's row (search.csv), the chosen one marked


def apply(base: Config, params: dict) -> Config:
    """The recipe a trial's choices make from ``base`` (choices not among ``params`` are kept)."""
    cfg = copy.deepcopy(base)
    m, a, t = cfg.model, cfg.augment, cfg.train
    if "backbone" in params:
        m.backbone = params["backbone"]
        t.freeze_stages, t.min_steps, t.max_steps = None, None, None  # the backbone's own
    if "input_size" in params:
        m.input_size = params["input_size"]
    if "photometric" in params:
        k = PHOTOMETRIC[params["photometric"]]
        d = type(a)()
        a.brightness, a.contrast, a.gamma = d.brightness * k, d.contrast * k, d.gamma * k
        a.exposure = base.augment.exposure * k  # from the base's own: off where the data rules it out
        a.noise_std, a.blur_prob, a.jpeg_prob = d.noise_std * k, d.blur_prob * k, d.jpeg_prob * k
    if "geometric" in params:
        a.flips, a.quarter_turns, a.rotate_deg = GEOMETRIC[params["geometric"]]
    if "framing" in params:
        a.scale, a.shift = FRAMING[params["framing"]]
    if "normalize" in params:
        m.normalize = params["normalize"]
    if "mirror_average" in params:
        m.mirror_average = params["mirror_average"]
    if "lr_scale" in params:
        from castinspect.models.registry import backbone_of

        t.lr = backbone_of(m).lr * params["lr_scale"]
    if "locate" in params:
        cfg.data.locate = params["locate"]
    return cfg


def base_params(base: Config, locate_choice: bool) -> dict:
    """The configured recipe in the search's terms: trial 0."""
    from castinspect.models.registry import backbone_of

    a, m = base.augment, base.model
    params = {
        "input_size": m.input_size,
        "photometric": min(PHOTOMETRIC, key=lambda k: abs(PHOTOMETRIC[k] - a.brightness / type(a)().brightness)),
        "geometric": next((k for k, v in GEOMETRIC.items() if v == (a.flips, a.quarter_turns, a.rotate_deg)),
                          "any_rotation"),
        "framing": min(FRAMING, key=lambda k: abs(FRAMING[k][0] - a.scale)),
        "normalize": m.normalize,
        "mirror_average": m.mirror_average if m.mirror_average is not None else backbone_of(m).mirror_average,
        "lr_scale": 1.0 if base.train.lr is None else base.train.lr / backbone_of(m).lr,
    }
    if "backbone" not in fixed_choices(base):
        params["backbone"] = backbone_of(m).name
    if locate_choice:
        params["locate"] = "on"
    return params


def fixed_choices(base: Config) -> set[str]:
    """Choices the user made and the search leaves alone: a named backbone."""
    return {"backbone"} if base.model.backbone != "auto" else set()


def suggest(trial, base: Config, locate_choice: bool) -> dict:
    params = {}
    if "backbone" not in fixed_choices(base):
        params["backbone"] = trial.suggest_categorical("backbone", BACKBONES)
    params["input_size"] = trial.suggest_categorical("input_size", INPUT_SIZES)
    params["photometric"] = trial.suggest_categorical("photometric", tuple(PHOTOMETRIC))
    params["geometric"] = trial.suggest_categorical("geometric", tuple(GEOMETRIC))
    params["framing"] = trial.suggest_categorical("framing", tuple(FRAMING))
    params["normalize"] = trial.suggest_categorical("normalize", ("per_image", "fixed"))
    params["mirror_average"] = trial.suggest_categorical("mirror_average", (True, False))
    params["lr_scale"] = trial.suggest_float("lr_scale", 0.3, 3.0, log=True)
    if locate_choice:
        params["locate"] = trial.suggest_categorical("locate", ("on", "off"))
    return params


def objective_value(val_acc: float, val_loss: float) -> float:
    return (1 - val_acc) + 0.1 * val_loss


def search(base: Config, data: TrainingData, run_dir: Path, seconds: float, progress: Progress | None = None,
           locate_choice: bool = False, resume: bool = False) -> SearchResult:
    """Search recipes around ``base`` for ``seconds`` (at most ``MAX_TRIALS`` trials) on ``data``'s
    grouped validation split; returns the best recipe. ``locate_choice``: localisation is one of
    the choices (``data.locate: auto`` on photos where a part stands on a background)."""
    import optuna

    from castinspect.models.registry import resolve

    progress = progress or Progress()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{os.path.abspath(run_dir / 'search.db')}"
    if not resume and (run_dir / "search.db").exists():
        (run_dir / "search.db").unlink()
    study = optuna.create_study(
        study_name="recipe", storage=storage, load_if_exists=True, direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=base.train.seed, n_startup_trials=3),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    spent = sum(t.user_attrs.get("seconds", 0.0) for t in study.trials)
    if not study.trials:
        study.enqueue_trial(base_params(base, locate_choice))
    left = seconds - spent

    def run_trial(trial: "optuna.Trial") -> float:
        t = time.perf_counter()
        params = suggest(trial, base, locate_choice)
        cfg = resolve(apply(base, params))
        train, val = data.decoded(cfg.model.input_size, cfg.data.locate == "on")
        steps = max(1, round(plan(cfg.train, len(train.labels)).total_steps * TRIAL_SHARE))
        cfg.train.min_steps = cfg.train.max_steps = steps
        deadline = t + max(MIN_TRIAL, left)  # no trial outlasts the search
        chosen = [{"val_loss": math.inf}]

        def on_epoch(row: dict) -> None:
            # reported: the objective of the epoch the trial would keep (the lowest validation loss)
            chosen[0] = min(chosen[0], row, key=lambda r: r["val_loss"])
            for key in ("val_acc", "val_loss"):  # kept for a pruned trial's row too
                trial.set_user_attr(key, chosen[0][key])
            trial.report(objective_value(chosen[0]["val_acc"], chosen[0]["val_loss"]), row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned()

        trial.set_user_attr("seconds", 0.0)
        try:
            trained = train_model(cfg, train, val, deadline=deadline, on_epoch=on_epoch)
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - t)
        trial.set_user_attr("steps", trained.steps)
        return objective_value(chosen[0]["val_acc"], chosen[0]["val_loss"])

    def report(study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
        nonlocal left
        left -= trial.user_attrs.get("seconds", 0.0)
        best = study.best_trial if any(t.state.name == "COMPLETE" for t in study.trials) else None
        value = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        so_far = f"; best {best.value:.4f} (trial {best.number})" if best else ""
        progress.message(f"search trial {trial.number}: {describe(trial.params)} -> {value}{so_far}; "
                         f"{max(0.0, left):.0f}s left")
        if left < MIN_TRIAL or len(study.trials) >= MAX_TRIALS:
            study.stop()

    if left >= MIN_TRIAL and len(study.trials) < MAX_TRIALS:
        progress.message(f"recipe search: {left:.0f}s; each trial a third of its recipe's steps")
        study.optimize(run_trial, callbacks=[report], catch=(RuntimeError, ValueError))
    chosen = choose_trial(study, len(data.decoded(base.model.input_size, base.data.locate == "on")[1].labels))
    trials = [{**row, "chosen": chosen is not None and row["trial"] == chosen.number} for row in trial_rows(study)]
    write_trials(run_dir / "search.csv", trials)
    return SearchResult(copy.deepcopy(base) if chosen is None else apply(base, chosen.params), trials)


def choose_trial(study, n_val: int):
    """The best complete trial, unless it beats the configured recipe (trial 0) by less than one
    validation photo's error (1 / n_val): a short trial's lead that small is noise, and the
    configured recipe was measured on full runs."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        return None
    best = min(done, key=lambda t: t.value)
    configured = next((t for t in done if t.number == 0), None)
    if configured is not None and best.value > configured.value - 1 / max(1, n_val):
        return configured
    return best


def describe(params: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def trial_row(t) -> dict:
    a = t.user_attrs
    return {"trial": t.number, "state": t.state.name.lower(), "seconds": round(a.get("seconds", 0.0), 1),
            "steps": a.get("steps"), "val_acc": a.get("val_acc"), "val_loss": a.get("val_loss"),
            "objective": t.value if t.value is not None else (min(t.intermediate_values.values())
                                                              if t.intermediate_values else None),
            "params": describe(t.params)}


def trial_rows(study) -> list[dict]:
    return [trial_row(t) for t in study.trials]


def write_trials(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
