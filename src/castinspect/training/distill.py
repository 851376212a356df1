"""Knowledge distillation: the compact CNN learns from a fine-tuned teacher.

Each training step, the teacher judges the batch as augmented (at its own input size, in
evaluation mode: with its mirror averaging and its calibration temperature; on the inference
backends' fastest, ONNX Runtime where installed, which judges it in a fraction of PyTorch's
time in evaluation mode), and the student,
fed the same views shrunk to its input size, learns ``alpha`` of the teacher's softened outputs
(Hinton et al.: KL divergence at temperature T, times T^2 so its gradients keep their scale)
and ``1 - alpha`` of the hard labels. The student keeps the teacher's threshold policy (the same
target recall, chosen on the same validation photos), its localisation setting and its
augmentation; its familiarity model is fitted on its own embeddings, as every model's is.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from castinspect.core.config import Config, TrainConfig
from castinspect.models.checkpoint import Checkpoint, load_checkpoint, run_model
from castinspect.models.registry import choose

ALPHA = 0.7  # the share of the loss that follows the teacher
# How far the teacher's outputs are softened: the dark knowledge in the small ones, which a task
# of several classes has (which wrong class a photo resembles). With two classes there is no
# other wrong class to tell of: softening then only flattens the targets, and the student
# learnt less from them than from the labels alone (docs: speed).
TEMPERATURE = 4.0
TWO_CLASS_TEMPERATURE = 1.0


@dataclass
class Teacher:
    """A trained model's judgement of each training batch, for the student to learn."""

    checkpoint: Checkpoint
    alpha: float = ALPHA
    temperature: float | None = None  # None: TEMPERATURE, or TWO_CLASS_TEMPERATURE for two classes
    backend: str = "auto"  # as the Predictor's: the teacher judges as it does at the line

    def __post_init__(self) -> None:
        if self.temperature is None:
            self.temperature = TWO_CLASS_TEMPERATURE if len(self.checkpoint.classes) == 2 else TEMPERATURE
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise ValueError("distillation: alpha must be in [0, 1] and the temperature positive")
        from castinspect.inference.backends import make_backend

        self.judge = make_backend(self.backend, self.checkpoint, None)
        self.input_size = int(self.checkpoint.config.model.input_size)
        self.model_id = self.checkpoint.model_id

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's calibrated probabilities of the float views ``x`` (N, 1, S, S) at the
        distillation temperature: softmax(log p / T) is softmax(z / (T_cal T)) for the logits z
        whose calibrated probabilities p the backend returns. The views are judged as the uint8
        photos they round to (a camera's photos are)."""
        images = x[:, 0].mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()
        probs, _ = self.judge.run(images)
        log_p = torch.from_numpy(probs).double().clamp_min(1e-300).log()
        return F.softmax(log_p / self.temperature, dim=1).float()

    def loss(self, logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor, label_smoothing: float) -> torch.Tensor:
        hard = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        kl = F.kl_div(F.log_softmax(logits / self.temperature, dim=1), soft.to(logits.device), reduction="batchmean")
        return self.alpha * kl * self.temperature ** 2 + (1 - self.alpha) * hard


def shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """The teacher's view at the student's input size (antialiased, as the decoder's area
    resize would make it)."""
    if x.shape[-1] == size:
        return x
    out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


def student_config(teacher: Checkpoint, size: str | None = None, input_size: int | None = None) -> Config:
    """The compact CNN with the teacher's data settings (localisation, split), augmentation and
    threshold policy; what depends on the backbone (learning rate, step budget, epochs) is the
    compact CNN's own."""
    cfg = choose(copy.deepcopy(teacher.config), "castnet", size)
    cfg.model.mirror_average = None
    if input_size is not None:
        cfg.model.input_size = input_size
    for name in ("lr", "min_steps", "max_steps", "freeze_stages"):
        setattr(cfg.train, name, None)
    own = TrainConfig()  # the compact CNN's schedule: a pretrained teacher's is shorter
    cfg.train.epochs, cfg.train.patience, cfg.train.warmup_epochs = own.epochs, own.patience, own.warmup_epochs
    rule = teacher.info.get("threshold_rule", "")
    if isinstance(rule, str) and rule.startswith("validation recall >= "):
        cfg.train.target_recall = float(rule.rsplit(" ", 1)[1])
    return cfg


def teacher_of(source: str | os.PathLike | None) -> tuple[Checkpoint, str | None]:
    """The teacher checkpoint (a run directory, a model file, or None: the bundled model) and the
    data it was trained on, where its run says (the run's split.csv keeps its validation)."""
    path = run_model(source) if source is not None else None
    ckpt = load_checkpoint(path)
    split = path.parent / "split.csv" if path is not None else None
    data = str(split) if split is not None and split.is_file() else (ckpt.info.get("data") or {}).get("root")
    return ckpt, data
