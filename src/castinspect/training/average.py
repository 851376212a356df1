"""The weight average a run ships instead of its last step's weights."""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """An exponential moving average of a model's weights and BatchNorm statistics.

    When on (``train.ema_decay`` > 0) it is validated, kept and shipped instead of the last step's
    weights: on parts the model has not seen, single-step weights can swing widely from epoch to
    epoch; the average does not. The decay ramps up over the first steps so a short run is not dominated
    by its random initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, new in zip(self.model.state_dict().values(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(new, 1 - d)
            else:
                avg.copy_(new)  # e.g. BatchNorm's batch counter
