"""Checkpoints: weights + config + classes + threshold + format version, never a pickled module.

Everything in the file is a tensor or a plain Python value, so it loads with
``torch.load(weights_only=True)`` and survives any renaming of our code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from castinspect.config import Config
from castinspect.model import CastNet, build_model

# 2: model.normalize ("per_image" or "fixed"); format-1 checkpoints all normalised with fixed constants.
# 3: model.flip_average; earlier checkpoints were calibrated (temperature, threshold) without it.
FORMAT_VERSION = 3


@dataclass
class Checkpoint:
    config: Config
    classes: list[str]
    ok_index: int
    threshold: float
    state_dict: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)  # training data summary, metrics, epochs
    temperature: float = 1.0  # calibration: probabilities are softmax(logits / temperature)

    @property
    def model_id(self) -> str:
        """Short content hash of the weights: the same weights give the same id anywhere."""
        h = hashlib.sha256()
        for name in sorted(self.state_dict):
            h.update(name.encode())
            h.update(self.state_dict[name].detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    def build_model(self) -> CastNet:
        model = build_model(self.config.model, len(self.classes))
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written model."""
    payload = {
        "format_version": FORMAT_VERSION,
        "config": ckpt.config.to_dict(),
        "classes": list(ckpt.classes),
        "ok_index": int(ckpt.ok_index),
        "threshold": float(ckpt.threshold),
        "temperature": float(ckpt.temperature),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
        "info": ckpt.info,
        **(extra or {}),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        first_line = (str(exc).strip().splitlines() or [""])[0][:120]
        raise ValueError(f"{path}: not a castinspect checkpoint ({type(exc).__name__}: {first_line})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise ValueError(f"{path}: not a castinspect checkpoint (no format_version)")
    if payload["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {payload['format_version']} is newer than this castinspect "
            f"reads ({FORMAT_VERSION}); upgrade castinspect"
        )
    config = payload["config"]
    model_cfg = config.setdefault("model", {})
    model_cfg.setdefault("backbone", "castnet")  # written before there was a choice
    if payload["format_version"] < 2:
        model_cfg.setdefault("normalize", "fixed")
    if payload["format_version"] < 3:
        model_cfg.setdefault("flip_average", False)
    return Checkpoint(
        config=Config.from_dict(config),
        classes=list(payload["classes"]),
        ok_index=int(payload["ok_index"]),
        threshold=float(payload["threshold"]),
        state_dict=payload["state_dict"],
        info=payload.get("info", {}),
        temperature=float(payload.get("temperature", 1.0)),
    )


def load_resume_state(path: str | os.PathLike) -> dict[str, Any]:
    """The optimiser/scheduler/epoch state kept in ``last.ckpt`` beside the model."""
    return torch.load(path, map_location="cpu", weights_only=True)
