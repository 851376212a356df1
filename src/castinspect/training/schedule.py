"""How long a run trains: epochs, patience, warm-up and the learning-rate curve, within a time limit.

The schedule is planned from the config (a step budget stretched for small datasets, capped for
large ones) and, when the run has a time limit, cut once early in training to what fits: the
first steps and one validation pass are timed, and the steps left are those whose training and
validation fit in the time left. Warm-up and patience shrink in proportion, and the cosine decay
is re-laid over the shorter run, so a time-limited run still ends at a learning rate of zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from castinspect.core.config import TrainConfig
from castinspect.data.datasets import Decoded
from castinspect.models.network import predict_probs

PROBE_STEPS = 6  # steps timed before a time-limited run is cut to fit; the first two are left out
TIME_MARGIN = 0.05  # of the time left: epochs ran ~5% over the probe's estimate here


def schedule_length(epochs: int, patience: int, steps_per_epoch: int, min_steps: int,
                    max_steps: int = 0) -> tuple[int, int]:
    """(epochs, patience) stretched by the same factor so a run makes at least ``min_steps`` steps,
    or shrunk so it makes at most ``max_steps`` (0: no cap; never below one epoch)."""
    steps = epochs * steps_per_epoch
    if max_steps and steps > max_steps:
        shrink = max_steps / steps
        return max(1, math.floor(epochs * shrink)), max(1, math.ceil(patience * shrink))
    stretch = max(1.0, min_steps / steps)
    return math.ceil(epochs * stretch), math.ceil(patience * stretch)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int
    warmup: int
    patience: int  # epochs without a better validation loss before stopping
    cut: bool = False  # shortened to fit a time limit

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def steps_in(self, epoch: int) -> int:
        """Steps in epoch ``epoch`` (from 0): the last one may be short."""
        return max(0, min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch))

    def lr(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup)

    def fit_time(self, seconds_left: float, step_seconds: float, val_seconds: float, done: int) -> None:
        """Cut the steps still to come (after ``done``) to those that fit in ``seconds_left``,
        counting one validation pass per epoch and a margin for what timing a few steps misses;
        a last epoch under a quarter of the others is dropped (its validation would cost more
        than its steps teach). Never below one more step."""
        seconds_left *= 1 - TIME_MARGIN
        spe, total = self.steps_per_epoch, self.total_steps

        def needs(total: int) -> float:
            return (total - done) * step_seconds + (math.ceil(total / spe) - done // spe) * val_seconds

        if needs(total) <= seconds_left:
            return
        while total > done + 1 and needs(total) > seconds_left:
            over = needs(total) - seconds_left
            total = max(done + 1, total - max(1, math.floor(over / (step_seconds + val_seconds / spe))))
        if total > spe and 0 < total % spe < spe / 4:
            total -= total % spe
        if total < self.total_steps:
            shrink = total / self.total_steps
            self.warmup = round(self.warmup * shrink)
            self.patience = max(1, math.ceil(self.patience * shrink))
            self.total_steps, self.cut = total, True

    def to_dict(self) -> dict:
        return asdict(self)


def plan(tc: TrainConfig, n_train: int) -> Schedule:
    """The schedule a config asks for on ``n_train`` photos (``train.lr``, ``min_steps`` and
    ``max_steps`` resolved)."""
    steps_per_epoch = math.ceil(n_train / tc.batch_size)
    epochs, patience = schedule_length(tc.epochs, tc.patience, steps_per_epoch, tc.min_steps, tc.max_steps)
    warmup = int(tc.warmup_epochs * steps_per_epoch * epochs / tc.epochs)
    return Schedule(steps_per_epoch, steps_per_epoch * epochs, warmup, patience)


class TimeProbe:
    """Times a run's first steps and one validation pass, then cuts its schedule to a deadline
    (under ``torchrun``, by rank 0's timing: every process must make the same steps)."""

    def __init__(self, schedule: Schedule, deadline: float, val: Decoded, model: torch.nn.Module,
                 progress, world=None) -> None:
        self.schedule, self.deadline, self.progress, self.world = schedule, deadline, progress, world
        sample = min(len(val.labels), 64)
        t = time.perf_counter()
        predict_probs(model, val.images[:sample])
        shares = world.size if world is not None else 1  # each process validates its share
        self.val_seconds = (time.perf_counter() - t) * len(val.labels) / max(1, sample) / shares
        self.t_first = None

    def after_step(self, i: int) -> None:
        if i == 1:
            self.t_first = time.perf_counter()  # steps 0 and 1 warm the allocator and caches up
        if i != PROBE_STEPS - 1 or self.t_first is None:
            return
        step_seconds = (time.perf_counter() - self.t_first) / (PROBE_STEPS - 2)
        planned = self.schedule.total_steps
        self.schedule.fit_time(self.deadline - time.perf_counter(), step_seconds, self.val_seconds, i + 1)
        if self.world is not None:
            vars(self.schedule).update(self.world.from_main(self.schedule.to_dict()))
        if self.schedule.cut:
            self.progress.replan(self.schedule.total_steps)
            self.progress.message(f"time limit: {self.schedule.total_steps} steps of {planned} fit "
                                  f"({step_seconds:.2f}s a step, {self.val_seconds:.1f}s a validation pass)")
