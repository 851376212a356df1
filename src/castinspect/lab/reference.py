"""A reproduction of the seeds' typical CNN, the yardstick of ``castinspect bench``.

Three 3x3 conv blocks of 16, 32 and 64 filters without padding, each followed by 2x2 max pooling,
a dense layer of 224, dropout 0.2 and a sigmoid output, on 300x300 grayscale photos scaled to
[0, 1]; Adam at 1e-3, batch 32, random flips, up to 12 epochs with early stopping on validation
loss. It is trained on the same photos and validation split as ours, and judged on the same test
photos at 0.5.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 300


class SeedCNN(nn.Module):
    def __init__(self, size: int = INPUT_SIZE) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = size
        for _ in range(3):
            side = (side - 2) // 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 224), nn.ReLU(),
                                  nn.Dropout(0.2), nn.Linear(224, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of p(defective) for images (N, 1, S, S) in [0, 1]."""
        return self.head(self.features(x)).squeeze(1)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).unsqueeze(1).float().div_(255.0)


@torch.no_grad()
def p_defect(model: SeedCNN, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model.eval()
    out = [torch.sigmoid(model(to_tensor(images[i:i + batch_size]))) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def train_reference(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                    epochs: int = 12, patience: int = 3, batch_size: int = 32, seed: int = 0,
                    max_steps: int | None = None) -> tuple[SeedCNN, dict]:
    """Train as the seeds did; ``y`` is 1 for defective. ``max_steps`` cuts a run short (tests).
    Returns the model with the lowest validation loss and {epochs, seconds, steps, images/s}."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = SeedCNN(x_train.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_loss, stale, steps, seen = None, math.inf, 0, 0, 0
    t0 = time.perf_counter()
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(y_train), generator=g)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x = to_tensor(x_train[idx.numpy()])
            flip = torch.rand(2, generator=g)
            if flip[0] < 0.5:
                x = x.flip(3)
            if flip[1] < 0.5:
                x = x.flip(2)
            loss = F.binary_cross_entropy_with_logits(model(x), torch.from_numpy(y_train[idx.numpy()]).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            seen += len(idx)
            if max_steps and steps >= max_steps:
                break
        p = np.clip(p_defect(model, x_val), 1e-7, 1 - 1e-7)
        val_loss = float(-np.mean(y_val * np.log(p) + (1 - y_val) * np.log(1 - p)))
        if val_loss < best_loss:
            best_loss, best, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if stale >= patience or (max_steps and steps >= max_steps):
            break
    seconds = time.perf_counter() - t0
    model.load_state_dict(best)
    return model.eval(), {"epochs": epoch, "seconds": seconds, "steps": steps,
                          "train_images_per_s": seen / seconds, "best_val_loss": best_loss}
