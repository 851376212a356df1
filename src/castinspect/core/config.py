"""One configuration object for a run: data, model and training settings.

Saved with every run (``RUN_DIR/config.yaml``) and inside every checkpoint, so a model can be
rebuilt and a run reproduced without any command-line state.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    """Where the photos are and how they are split."""

    positive_class: str = "def_front"  # with two classes, the defect class: its probability is the score
    # The good-part class: a class name; "auto" (or null): the class named "ok*" (with two classes,
    # the one that is not positive_class), none when no class is named so; "none": every class is
    # a defect type, and the model classifies the type.
    ok_class: str | None = "auto"
    val_fraction: float = 0.15  # carved from train, stratified, seeded; never the test split
    split_seed: int = 0  # apart from train.seed, so runs with different seeds share one validation set
    # Keep photos of one physical part (near-duplicates, found as by `castinspect audit`) on one
    # side of the validation split, so validation measures parts the model has not seen.
    grouped_split: bool = True
    strict: bool = False  # unreadable files are fatal instead of skipped
    # Crop each photo to a square around its part before the resize (``data.locate``), so that
    # framing, zoom and off-centre differences between cameras vanish: "on", "off", or "auto"
    # (on when a part stands on a background in nearly every training photo). Off by default
    # until a recipe with it is chosen on validation.
    locate: str = "off"


@dataclass
class ModelConfig:
    """The network: which backbone, its input size and normalisation (``models.registry``)."""

    # "auto" (the default): the backbone ``models.registry`` picks (today efficientnet_lite0,
    # ImageNet-pretrained). "castnet": the compact CNN trained from scratch (fastest).
    backbone: str = "auto"
    # The compact CNN's named size (tiny, small, base: ``models.registry``); naming one without a
    # backbone means castnet. widths/depths: its stages' channels and convolutions, None for the
    # size's own (recorded when training starts).
    size: str | None = None
    # 160 px, not 128: the defects that decide the hard cases are pinholes a few pixels wide.
    input_size: int = 160
    widths: tuple[int, ...] | None = None
    depths: tuple[int, ...] | None = None
    dropout: float = 0.2
    # "per_image": each photo is standardised by its own mean and spread inside the model, so a
    # brighter lamp or a flatter exposure reaches the convolutions unchanged (models/network.py).
    # "fixed": the same constants for every photo (checkpoints of format 1).
    normalize: str = "per_image"
    # Judge each photo and its mirror image and average the logits (evaluation only), for twice
    # the network's work per photo. None: the backbone's default (``models.registry``).
    mirror_average: bool | None = None


@dataclass
class AugmentConfig:
    """Training-time augmentation, applied to batches of tensors (see ``augment.py``)."""

    flips: bool = True  # horizontal/vertical flips and 90-degree turns: top view, round part
    quarter_turns: bool = True  # with flips: 90-degree turns too (off: flips and half turns only)
    rotate_deg: float = 180.0  # random rotation through any angle (parts arrive turned)
    shift: float = 0.06  # fraction of the image
    scale: float = 0.15  # +-15% zoom
    # Perspective: one edge of the frame up to 2 x tilt narrower than the opposite one, in a
    # random direction (a camera not square to the part).
    tilt: float = 0.05
    brightness: float = 0.4  # +-40%
    # Exposure off by up to this many stops either way, clipped as a sensor clips: over-exposure
    # erases the bright faces a gain alone (undone by per-photo standardisation) leaves intact.
    # Off where the training photos show no part on a background (``training.inputs``): on a
    # surface texture, clipping erases what the defect classes differ in.
    exposure: float = 1.0
    # The background around the part (as the localiser finds it) up to this much lighter or
    # darker, the part unchanged (in [0, 1] units), so that a model does not read a part's
    # quality from what it lies on. Off, like exposure, where no part stands on a background.
    background: float = 0.16
    contrast: float = 0.5  # +-50%
    gamma: float = 0.8  # log-uniform in [1/(1+g), 1+g]
    noise_std: float = 0.03  # in [0, 1] pixel units
    blur_prob: float = 0.2
    # A share of the batch re-compressed as JPEG at a random quality in [10, 90]: cameras and
    # archives on the line compress, and blocking otherwise reads as surface texture.
    jpeg_prob: float = 0.2


@dataclass
class TrainConfig:
    """Optimiser, schedule and stopping."""

    # lr, min_steps, max_steps and freeze_stages: None means the backbone's default, filled in by
    # ``models.registry.resolve`` when training starts; a value given in a config or option stands.
    epochs: int = 30
    # A small dataset gets more epochs, so that every run takes at least this many optimiser
    # steps (warm-up and patience stretch with it): 50 photos are one step per epoch, and 30
    # steps teach a CNN nothing. On a dataset of thousands of photos it changes nothing.
    min_steps: int | None = None
    # At most this many steps (0: no cap); epochs and patience shrink with it. Keeps a dearer
    # backbone's training on a large dataset within minutes on a CPU.
    max_steps: int | None = None
    # Early stages of a pretrained backbone kept at their ImageNet weights (None: the backbone's
    # default, ``models.registry``): a cheaper step. 0 fine-tunes every layer.
    freeze_stages: int | None = None
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    # Validate and keep an exponential moving average of the weights (and BatchNorm statistics),
    # per step, e.g. 0.995; 0 turns it off. It smooths the epoch-to-epoch swings on unseen parts;
    # off by default: it did not beat the best single epoch on validation (docs: training).
    ema_decay: float = 0.0
    patience: int = 10  # early stopping on validation loss
    # A validation split smaller than this cannot pick an epoch or fit a temperature (8 photos'
    # loss is noise): the run then goes to the end of its schedule and keeps the last weights.
    min_val_to_select: int = 100
    seed: int = 0
    deterministic: bool = False
    bf16: str = "auto"  # "auto" (on where the CPU has AMX), "on", "off"
    threads: int = 0  # 0: leave torch's default (all physical cores)
    device: str = "auto"  # "auto" (CUDA where PyTorch sees a GPU, else the CPU), "cpu", "cuda"
    target_recall: float | None = None  # choose the threshold on validation for this defect recall
    calibrate: bool = True  # temperature scaling on validation
    # Familiarity (``inference.familiarity``): the share of validation photos left outside what
    # counts as familiar, and how many training photos' embeddings the model keeps to compare with.
    familiarity_share: float = 0.005
    familiarity_bank: int = 500


@dataclass
class AnomalyConfig:
    """The anomaly model fitted on good photos alone (``train --mode anomaly``: ``training.anomaly``)."""

    input_size: int = 224  # the anomaly model's input side (model.input_size is a classifier's)
    # The pixels' normalisation (model.normalize is a classifier's): "auto" fits with "imagenet"
    # and "per_image" and keeps the higher ROC-AUC on validation (where validation has defects;
    # else "imagenet"), or one of them by name.
    normalize: str = "auto"
    fit_photos: int = 3000  # good training photos whose patches may enter the memory bank (a seeded draw)
    patches: int = 100_000  # patches drawn from them for the coreset selection to choose from
    bank: int = 10_000  # patches kept in the memory bank (greedy coreset)
    # Where the good photos show a part on a background: score only the places where at least
    # half of them show the part (a textured background then raises no alarm; a defect standing
    # out beyond the part's usual outline, such as flash, is not scored: set false for those).
    part_only: bool = True
    # A photo's score is the mean of its worst patches, this share of the places scored (at
    # least one; 0: the worst patch alone, as in the PatchCore paper).
    top_share: float = 0.1
    # The threshold by default: validation's good photos above it are this share (false rejects).
    false_reject: float = 0.01


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("widths", "depths"):
            if d["model"][key] is not None:
                d["model"][key] = list(d["model"][key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """Build a config from a (possibly partial) dict; unknown keys are an error."""
        d = d or {}
        unknown = set(d) - {"data", "model", "augment", "train", "anomaly"}
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)}")
        model = dict(d.get("model") or {})
        if "flip_average" in model:  # the name before mirror_average (checkpoint formats 3 and older)
            model.setdefault("mirror_average", model.pop("flip_average"))
            model.pop("flip_average", None)
        model["backbone"] = backbone_named(model.get("backbone"), model.get("size"))
        model_cfg = ModelConfig(**_known(ModelConfig, model))
        for key in ("widths", "depths"):
            if getattr(model_cfg, key) is not None:
                setattr(model_cfg, key, tuple(getattr(model_cfg, key)))
        return cls(
            data=DataConfig(**_known(DataConfig, d.get("data") or {})),
            model=model_cfg,
            augment=AugmentConfig(**_known(AugmentConfig, d.get("augment") or {})),
            train=TrainConfig(**_known(TrainConfig, d.get("train") or {})),
            anomaly=AnomalyConfig(**_known(AnomalyConfig, d.get("anomaly") or {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


SIZED_BACKBONE = "castnet"  # the named sizes are the compact CNN's


def backbone_named(backbone: str | None, size: str | None) -> str:
    """The backbone a user means: the one named; else the compact CNN when a size is named; else
    "auto". The one rule for YAML configs and command-line options alike."""
    return backbone or (SIZED_BACKBONE if size else "auto")


def _known(kind: type, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {kind.__name__} keys: {sorted(unknown)}")
    return values
