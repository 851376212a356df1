"""Checkpoints: weights + config + classes + threshold + format version, never a pickled module.

Everything in the file is a tensor or a plain Python value, so it loads with
``torch.load(weights_only=True)`` and survives any renaming of our code.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from castinspect.core.config import Config
from castinspect.models.network import Network, count_flops, count_parameters
from castinspect.models.registry import build_model, mirror_average

# 2: model.normalize ("per_image" or "fixed"); format-1 checkpoints all normalised with fixed constants.
# 3: model.flip_average; earlier checkpoints were calibrated (temperature, threshold) without it.
# 4: flip_average renamed mirror_average (read back from formats 3 and older).
# 5: ok_index -1 for a model without an OK class.
# 6: familiarity (``inference.familiarity`` state); earlier checkpoints have none.
FORMAT_VERSION = 6
NO_OK_CLASS = "defect types: no OK class, so no p(defect) and no operating threshold"
NO_FAMILIARITY = ("not measured: this model was trained before castinspect measured familiarity; "
                  "retrain it to have photos unlike its training photos flagged")


def run_model(path: str | os.PathLike) -> Path:
    """A model file as given, or the ``model.ckpt`` of a run directory train wrote."""
    path = Path(path)
    return path / "model.ckpt" if path.is_dir() else path


def bundled_model_path() -> Path:
    """The default model shipped inside the package (trained on the casting data)."""
    return Path(str(resources.files("castinspect") / "assets" / "model.ckpt"))


@dataclass
class Checkpoint:
    config: Config
    classes: list[str]
    ok_index: int | None  # None: no OK class (every class a defect type; no threshold)
    threshold: float
    state_dict: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)  # training data summary, metrics, epochs
    temperature: float = 1.0  # calibration: probabilities are softmax(logits / temperature)
    familiarity: dict[str, Any] | None = None  # ``Familiarity.to_state()``; None: not measured

    @property
    def model_id(self) -> str:
        """Short content hash of the weights: the same weights give the same id anywhere."""
        h = hashlib.sha256()
        for name in sorted(self.state_dict):
            h.update(name.encode())
            h.update(self.state_dict[name].detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    def build_network(self) -> Network:
        """The trained network, in evaluation mode."""
        model = build_model(self.config.model, len(self.classes))
        model.load_state_dict(self.state_dict)
        return model.eval()

    def metadata(self) -> dict[str, Any]:
        """What a Predictor needs besides the weights; an exported graph carries the same."""
        has_ok = self.ok_index is not None
        return {"classes": list(self.classes), "ok_index": self.ok_index,
                "threshold": float(self.threshold) if has_ok else None,
                "temperature": float(self.temperature), "input_size": int(self.config.model.input_size),
                "model_id": self.model_id, "backbone": self.config.model.backbone,
                "mirror_average": mirror_average(self.config.model), "locate": self.config.data.locate == "on",
                # what the training photos looked like (``data.quality``); None before it was recorded
                "quality_reference": self.info.get("quality_reference"),
                # how familiar photos look (``inference.familiarity``): an exported graph outputs
                # it; None for models trained before it was measured
                "familiarity": self.familiarity_summary()}

    def familiarity_summary(self) -> dict[str, Any] | None:
        f = self.familiarity
        if f is None:
            return None
        return {"method": f["method"], "share": float(f["share"]), "bank": len(f["bank"]),
                "photos": int(f.get("photos", 0)), "validation_photos": len(f["reference"])}


def describe(ckpt: Checkpoint, path: str | os.PathLike) -> dict[str, Any]:
    """A model file in a few plain values: classes, threshold, input size, backbone, cost,
    training data and metrics (``castinspect info``)."""
    net = ckpt.build_network()
    m = ckpt.config.model
    return {
        "model": ckpt.model_id,
        "file": str(path),
        "classes": ckpt.classes,
        "ok_class": ckpt.classes[ckpt.ok_index] if ckpt.ok_index is not None else None,
        "threshold": ckpt.threshold if ckpt.ok_index is not None else None,
        **({} if ckpt.ok_index is not None else {"task": NO_OK_CLASS}),
        "temperature": ckpt.temperature,
        "familiarity": ckpt.familiarity_summary() or NO_FAMILIARITY,
        "input_size": m.input_size,
        "backbone": m.backbone,
        **({"size": m.size} if m.backbone == "castnet" else {}),
        "mirror_average": net.mirror_average,  # each photo judged with its mirror image (flops count both)
        "parameters": count_parameters(net),
        "flops": count_flops(net, m.input_size),
        **{k: v for k, v in ckpt.info.items() if k not in ("parameters", "flops", "history")},
        "epochs_in_history": len(ckpt.info.get("history", [])),
    }


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written model."""
    payload = {
        "format_version": FORMAT_VERSION,
        "config": ckpt.config.to_dict(),
        "classes": list(ckpt.classes),
        "ok_index": -1 if ckpt.ok_index is None else int(ckpt.ok_index),
        "threshold": float(ckpt.threshold),
        "temperature": float(ckpt.temperature),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
        "info": ckpt.info,
        **({"familiarity": ckpt.familiarity} if ckpt.familiarity is not None else {}),
        **(extra or {}),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike | None = None) -> Checkpoint:
    """A checkpoint file; the bundled model when ``path`` is None."""
    path = Path(path) if path is not None else bundled_model_path()
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
        model_cfg.setdefault("flip_average", False)  # (read as mirror_average by Config.from_dict)
    return Checkpoint(
        config=Config.from_dict(config),
        classes=list(payload["classes"]),
        ok_index=None if int(payload["ok_index"]) < 0 else int(payload["ok_index"]),
        threshold=float(payload["threshold"]),
        state_dict=payload["state_dict"],
        info=payload.get("info", {}),
        temperature=float(payload.get("temperature", 1.0)),
        familiarity=payload.get("familiarity"),
    )


def load_resume_state(path: str | os.PathLike) -> dict[str, Any]:
    """The optimiser/scheduler/epoch state kept in ``last.ckpt`` beside the model."""
    return torch.load(path, map_location="cpu", weights_only=True)
