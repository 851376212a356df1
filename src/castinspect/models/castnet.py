"""CastNet: the compact CNN trained from scratch (``--backbone castnet``), the fastest backbone."""

from __future__ import annotations

import torch
from torch import nn

from castinspect.core.config import ModelConfig
from castinspect.models.network import Network, avg_max_pool, normalize_pixels


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class CastNet(Network):
    """Plain VGG-style stages, each halving the resolution, then avg+max pooling.

    Plain 3x3 convolutions rather than depthwise ones: on a CPU they run far closer to peak (and
    gain from bf16/AMX), and at this size the parameter saving of depthwise layers buys nothing.
    ``cfg`` has its widths and depths filled in (``registry.resolve``).
    """

    def __init__(self, cfg: ModelConfig, num_classes: int, mirror_average: bool = False) -> None:
        super().__init__()
        if not cfg.widths or not cfg.depths or len(cfg.widths) != len(cfg.depths):
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
        self.normalize = cfg.normalize
        self.mirror_average = mirror_average
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(normalize_pixels(x, self.normalize))

    def forward_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        return avg_max_pool(feats)
