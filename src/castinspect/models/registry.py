"""The backbones, one row each: how to build it and every setting that depends on it.

Training, the predictor, export, Grad-CAM, the benchmarks and the CLI's choices all read this
table, so a backbone's learning rate, step budget, mirror averaging, bf16 use and sizes are
stated once. The measurements behind each default are in the docs (results: model sizes,
mirror averaging, learning curve).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from castinspect.core.config import Config, ModelConfig, backbone_named

if TYPE_CHECKING:
    from castinspect.models.network import Network


# The builders import their networks (and so PyTorch) only when called: reading this table, as
# the CLI's choices do, stays cheap.
def _castnet(cfg: ModelConfig, num_classes: int, mirror: bool, pretrained: bool) -> "Network":
    from castinspect.models.castnet import CastNet
    return CastNet(cfg, num_classes, mirror)


def _lite0(cfg: ModelConfig, num_classes: int, mirror: bool, pretrained: bool) -> "Network":
    from castinspect.models.litenet import LiteNet
    return LiteNet(cfg, num_classes, mirror, pretrained)


def _patchcore(cfg: ModelConfig, num_classes: int, mirror: bool, pretrained: bool) -> "Network":
    from castinspect.models.patchcore import PatchCore
    return PatchCore(cfg, num_classes, mirror, pretrained)


@dataclass(frozen=True)
class Backbone:
    name: str
    build: Callable[[ModelConfig, int, bool, bool], "Network"]  # (cfg, classes, mirror, pretrained)
    description: str
    lr: float  # fine-tuning ImageNet weights wants a gentler rate than training from scratch
    min_steps: int  # a small dataset gets more epochs, so that a run takes at least this many steps
    max_steps: int  # at most this many (0: no cap): a dearer backbone stays within minutes on a CPU
    mirror_average: bool  # judge each photo with its mirror image, by default
    bf16_training: bool  # bf16 autocast helps plain convolutions on AMX CPUs, hurts depthwise ones
    gradcam: str  # the feature map ``forward_features`` returns, which Grad-CAM reads
    # Early stages kept at their pretrained weights: their backward pass, at the highest
    # resolutions, is the dearest part of a fine-tuning step, and edges need no re-learning.
    freeze_stages: int
    sizes: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    default_size: str | None = None
    anomaly: bool = False  # fitted on good photos alone (``train --mode anomaly``), not trained by steps


BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("castnet", _castnet,
             "the compact CNN trained from scratch: fastest, less accurate on new parts",
             lr=3e-3, min_steps=1200, max_steps=0, mirror_average=False, bf16_training=True, freeze_stages=0,
             gradcam="the last stage (stride 16)",
             # widths: the stem's and each downsampling stage's channels; depths: 3x3 convolutions per stage
             sizes={"tiny": {"widths": (8, 16, 32, 64), "depths": (1, 1, 1, 1)},
                    "small": {"widths": (16, 32, 64, 96), "depths": (1, 1, 2, 2)},
                    "base": {"widths": (24, 48, 96, 160), "depths": (1, 2, 2, 2)}},
             default_size="small"),
    Backbone("efficientnet_lite0", _lite0,
             "EfficientNet-Lite0 with ImageNet weights (shipped in a package): the default",
             lr=1e-3, min_steps=300, max_steps=300, mirror_average=True, bf16_training=False, freeze_stages=2,
             gradcam="the last stride-16 stage (blocks 8-10), finer than the head's"),
    Backbone("patchcore", _patchcore,
             "an anomaly model on EfficientNet-Lite0's ImageNet features, fitted on good photos alone",
             lr=0.0, min_steps=0, max_steps=0, mirror_average=False, bf16_training=False, freeze_stages=0,
             gradcam="none: the anomaly map (patch distances to the memory bank) shows where", anomaly=True),
)}
# "auto": the pretrained backbone at every dataset size. It was ahead of the compact CNN on unseen
# parts at every size of the learning curve and under line variation (docs: results).
AUTO = "efficientnet_lite0"
# The backbones a classifier is trained on (``train --backbone``, the learning curve): not the
# anomaly model, which is fitted by ``train --mode anomaly``.
CLASSIFIERS = tuple(name for name, b in BACKBONES.items() if not b.anomaly)
SIZES = tuple(BACKBONES["castnet"].sizes)


def backbone_of(model: ModelConfig) -> Backbone:
    name = AUTO if model.backbone == "auto" else model.backbone
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {model.backbone!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[name]


def mirror_average(model: ModelConfig) -> bool:
    """Whether a model of this config averages each photo with its mirror image."""
    return backbone_of(model).mirror_average if model.mirror_average is None else model.mirror_average


def choose(cfg: Config, backbone: str | None = None, size: str | None = None) -> Config:
    """A copy of ``cfg`` on the backbone and size a user names (the CLI's ``--backbone`` and
    ``--size``): a size without a backbone means the compact CNN; a size is the compact CNN's."""
    out = copy.deepcopy(cfg)
    if backbone is None and size is None:
        return out
    out.model.backbone = backbone_named(backbone, size)
    chosen = backbone_of(out.model)
    if size is not None:
        if not chosen.sizes:
            raise ValueError(f"--size names a size of {', '.join(b.name for b in BACKBONES.values() if b.sizes)}, "
                             f"not of {chosen.name}")
        out.model.size, out.model.widths, out.model.depths = size, None, None
    return out


def resolve(cfg: Config) -> Config:
    """A copy of ``cfg`` as it will be trained: "auto" replaced by the backbone, and what was left
    to the backbone (learning rate, step budget, frozen stages, mirror averaging, size) filled in, so the saved
    config and the checkpoint say exactly what was trained."""
    out = copy.deepcopy(cfg)
    chosen = backbone_of(out.model)
    out.model.backbone = chosen.name
    t = out.train
    t.lr = chosen.lr if t.lr is None else t.lr
    t.min_steps = chosen.min_steps if t.min_steps is None else t.min_steps
    t.max_steps = chosen.max_steps if t.max_steps is None else t.max_steps
    t.freeze_stages = chosen.freeze_stages if t.freeze_stages is None else t.freeze_stages
    out.model.mirror_average = mirror_average(out.model)
    if chosen.sizes:
        m = out.model
        m.size = m.size or chosen.default_size
        if m.size not in chosen.sizes and (m.widths is None or m.depths is None):
            raise ValueError(f"unknown model size {m.size!r}; choose from {', '.join(chosen.sizes)}")
        preset = chosen.sizes.get(m.size, {})
        m.widths = tuple(m.widths if m.widths is not None else preset["widths"])
        m.depths = tuple(m.depths if m.depths is not None else preset["depths"])
    return out


def compact(size: str = "small", **overrides) -> ModelConfig:
    """The compact CNN's config at a named size (its widths and depths filled in)."""
    return resolve(Config(model=ModelConfig(backbone="castnet", size=size, **overrides))).model


def build_model(model: ModelConfig, num_classes: int, pretrained: bool = False) -> "Network":
    """The network a config names. ``pretrained`` loads ImageNet weights where the backbone has
    them (training only: a checkpoint's own weights replace them when a model is loaded)."""
    cfg = resolve(Config(model=model)).model
    return backbone_of(cfg).build(cfg, num_classes, cfg.mirror_average, pretrained)


def bf16_training(cfg: Config) -> bool:
    """Whether training runs under bf16 autocast: where the CPU has AMX and the backbone gains
    from it, or where the config insists (``train.bf16: on``)."""
    from castinspect.core.runtime import use_bf16

    return use_bf16(cfg.train.bf16) and (backbone_of(cfg.model).bf16_training or cfg.train.bf16 == "on")
