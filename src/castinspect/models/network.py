"""What every network shares: grayscale photo in, class logits out, through one surface.

``forward_features`` -> the feature map Grad-CAM reads, ``forward_head`` -> logits, and ``views``:
the photos a model in evaluation mode judges for each input. With mirror averaging (decided per
backbone in ``registry``) those are the photo and its left-right mirror image, whose logits are
averaged: a top view of a round part has no handedness, so the mirror image is as true a photo of
it as the original. The forward pass itself does it, so validation, calibration, the threshold,
the predictor, Grad-CAM and the exported graph all see the same judgement. Training sees single
random views (flips among them).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Pixels reach the model as float in [0, 1]; it normalises them itself, so every caller
# (training, predictor, exported graph) feeds the same thing and no one can forget it.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25
MIN_STD = 0.02  # a nearly flat photo is not blown up into amplified noise
IMAGENET_MEAN, IMAGENET_STD = 0.449, 0.226  # ImageNet's RGB means and spreads, averaged: a grey photo's


def normalize_pixels(x: torch.Tensor, mode: str) -> torch.Tensor:
    """"per_image": standardise each photo by its own mean and spread. A lamp drifting brighter
    or darker and a flatter exposure are (up to clipping) a gain and an offset on the pixels; this
    removes them exactly instead of hoping augmentation taught the model to ignore them.
    "fixed": one mean and spread for every photo (models of checkpoint format 1). "imagenet":
    the grey level of ImageNet's channel means and spreads, for pretrained features used as they
    are (the anomaly model): a photo's absolute brightness is part of what they describe."""
    if mode == "fixed":
        return (x - PIXEL_MEAN) / PIXEL_STD
    if mode == "imagenet":
        return (x - IMAGENET_MEAN) / IMAGENET_STD
    if mode != "per_image":
        raise ValueError(f"unknown normalisation {mode!r}; 'per_image', 'fixed' or 'imagenet'")
    mean = _image_mean(x)
    std = _image_mean((x - mean).square()).sqrt()
    return (x - mean) / std.clamp_min(MIN_STD)


def _image_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over each image, rows first, then the row means: one float32 sum over every pixel
    (as ONNX Runtime does it) drifts visibly from PyTorch's; a row at a time does not."""
    return x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True).mean(dim=1, keepdim=True)


def avg_max_pool(feats: torch.Tensor) -> torch.Tensor:
    """Average and max pooling side by side: max pooling lets one small blowhole dominate the
    decision instead of being averaged away over the whole part."""
    return torch.cat([feats.mean(dim=(2, 3)), feats.amax(dim=(2, 3))], dim=1)


class Network(nn.Module):
    """The surface of every backbone. Subclasses define ``forward_features`` and
    ``forward_embedding`` and set ``num_classes``, ``normalize``, ``mirror_average``, ``dropout``
    and ``fc`` (the linear classifier on the embedding)."""

    num_classes: int
    normalize: str
    mirror_average: bool = False
    dropout: nn.Module
    fc: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        """The penultimate vector (N, D) the classifier reads: what familiarity measures."""
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_embedding(feats)))

    def early_stages(self, n: int) -> list[nn.Module]:
        """The modules of the first ``n`` stages, which fine-tuning may keep at their pretrained
        weights (``train.freeze_stages``); a backbone trained from scratch has none to keep."""
        if n:
            raise ValueError(f"{type(self).__name__} is trained from scratch: it has no pretrained stages to freeze")
        return []

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The photos judged for ``x``: with mirror averaging in evaluation, also its mirror image."""
        return [x, x.flip(-1)] if self.mirror_average and not self.training else [x]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One pass per view rather than one of a doubled batch: the same speed on a CPU, and a
        # graph without the batch reshapes that INT8 quantisation's shape inference rejects.
        views = self.views(x)
        logits = self.forward_head(self.forward_features(views[0]))
        for view in views[1:]:
            logits = logits + self.forward_head(self.forward_features(view))
        return logits / len(views) if len(views) > 1 else logits

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embedding), each averaged over the views: the logits equal ``forward``'s."""
        views = self.views(x)
        embeddings = [self.forward_embedding(self.forward_features(v)) for v in views]
        logits = sum(self.fc(self.dropout(e)) for e in embeddings) / len(views)
        return logits, sum(embeddings) / len(views)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one forward pass on one image (convolutions and linear layers)."""
    total = 0

    def hook(module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += k * out.numel()
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, input_size, input_size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S) -> float (N, 1, S, S) in [0, 1], channels_last (faster convs on CPU)."""
    x = images.unsqueeze(1).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


def in_batches(model: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int, run) -> list:
    """``run`` (the model or one of its methods) on decoded uint8 images, ``batch_size`` at a
    time, in eval mode on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    images = torch.as_tensor(images)
    with torch.no_grad():
        return [run(to_input(images[i:i + batch_size]).to(device)) for i in range(0, len(images), batch_size)]


def predict_logits(model: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class logits (N, C) for decoded uint8 images (N, S, S); puts the model in eval mode."""
    out = [z.cpu() for z in in_batches(model, images, batch_size, model)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes), np.float32)


def predict_outputs(model: Network, images: np.ndarray | torch.Tensor,
                    batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C), embeddings (N, D)) for decoded uint8 images (N, S, S), each averaged over
    the model's views as it judges them (``Network.forward_with_embedding``)."""
    parts = in_batches(model, images, batch_size, model.forward_with_embedding)
    if not parts:
        return np.zeros((0, model.num_classes), np.float32), np.zeros((0, 0), np.float32)
    return torch.cat([z for z, _ in parts]).cpu().numpy(), torch.cat([e for _, e in parts]).cpu().numpy()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict_probs(model: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256,
                  temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (N, C): softmax of the logits divided by the calibration temperature."""
    return softmax(predict_logits(model, images, batch_size), temperature)
