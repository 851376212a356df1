"""Whether another way of running a model judges as the checkpoint does: decisions compared on
the same photos (a backend, an INT8 graph), and the accuracy guard on INT8 exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import Checkpoint


def decisions(predictor, images: np.ndarray) -> list[tuple[str | None, str | None]]:
    """Each photo's (decision, label) by ``predictor`` on decoded model inputs."""
    probs, familiarity = predictor.judge(images)
    return [(i.decision, i.label) for i in predictor.inspections([""] * len(images), probs, None, familiarity)]


def agreement(reference, other, images: np.ndarray) -> dict:
    """How many decisions ``other`` changes against ``reference`` on the same photos."""
    a, b = decisions(reference, images), decisions(other, images)
    changed = sum(x != y for x, y in zip(a, b))
    return {"photos": len(images), "changed": changed, "agreement": 1 - changed / len(images) if len(images) else None}


def guard_int8(ckpt: Checkpoint, int8_path: Path, images: np.ndarray, max_changed: int) -> dict:
    """Accuracy-controlled quantisation: the INT8 graph is kept only if, on these photos (the
    validation photos: never those it was calibrated on, never the test split), it changes at
    most ``max_changed`` of the checkpoint's decisions; otherwise the file is removed and the
    refusal raised. Returns the agreement."""
    result = agreement(Predictor(ckpt, backend="pytorch"), Predictor(None, onnx_model=str(int8_path)), images)
    result["max_changed"] = max_changed
    if result["changed"] > max_changed:
        int8_path.unlink(missing_ok=True)
        raise ValueError(f"INT8 changes {result['changed']} of {result['photos']} validation decisions (at most "
                         f"{max_changed} allowed): not kept. Export without --int8, or allow more with --max-changed")
    return result
