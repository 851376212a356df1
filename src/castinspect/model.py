"""The compact CNN: grayscale photo in, class logits out.

Every model has the same surface (``forward_features`` -> last conv stage, ``forward_head`` ->
logits) so Grad-CAM, export and the predictor need not know which size they hold.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from castinspect.config import ModelConfig

# Pixels reach the model as float in [0, 1]; it centres them itself, so every caller (training,
# predictor, exported graph) feeds the same thing and no one can forget the normalisation.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class CastNet(nn.Module):
    """Plain VGG-style stages, each halving the resolution, then avg+max pooling.

    Plain 3x3 convolutions rather than depthwise ones: on a CPU they run far closer to peak (and
    gain from bf16/AMX), and at this size the parameter saving of depthwise layers buys nothing.
    Max pooling next to average pooling lets one small blowhole dominate the decision instead of
    being averaged away over the whole part.
    """

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        if len(cfg.widths) != len(cfg.depths) or not cfg.widths:
            raise ValueError("model widths and depths must be non-empty and of equal length")
        stages = []
        c_in = 1
        for width, depth in zip(cfg.widths, cfg.depths):
            blocks = [conv_bn_relu(c_in, width, stride=2)]
            blocks += [conv_bn_relu(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(2 * c_in, num_classes)
        self.num_classes = num_classes
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    @property
    def cam_layer(self) -> nn.Module:
        """The layer Grad-CAM reads: the last convolutional stage."""
        return self.stages[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages((x - PIXEL_MEAN) / PIXEL_STD)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([feats.mean(dim=(2, 3)), feats.amax(dim=(2, 3))], dim=1)
        return self.fc(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(cfg: ModelConfig, num_classes: int) -> CastNet:
    return CastNet(cfg, num_classes)


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


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class logits (N, C) for decoded uint8 images (N, S, S); puts the model in eval mode."""
    model.eval()
    images = torch.as_tensor(images)
    out = [model(to_input(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes), np.float32)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict_probs(model: torch.nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256,
                  temperature: float = 1.0) -> np.ndarray:
    """Class probabilities (N, C): softmax of the logits divided by the calibration temperature."""
    return softmax(predict_logits(model, images, batch_size), temperature)
