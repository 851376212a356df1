"""The Predictor: the one path from photos to Inspections, behind every entry point.

    file / bytes -> io.load_for_model -> model -> softmax -> decision -> Inspection

``castinspect predict``, ``evaluate`` and (later) the server and folder watcher all call it, so
they cannot drift apart.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from castinspect.checkpoint import Checkpoint, load_checkpoint
from castinspect.decision import decide, defect_probability, predicted_index
from castinspect.io import ImageError, load_for_model
from castinspect.model import predict_probs
from castinspect.records import Inspection

Source = str | os.PathLike | bytes


def bundled_model_path() -> Path:
    """The default model shipped inside the package (trained on the casting data)."""
    return Path(str(resources.files("castinspect") / "assets" / "model.ckpt"))


class Predictor:
    """Judges photos with one model at one operating threshold."""

    def __init__(self, checkpoint: Checkpoint, threshold: float | None = None,
                 review_band: tuple[float, float] | None = None, workers: int | None = None) -> None:
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], not {threshold}")
        if review_band is not None and not 0.0 <= review_band[0] <= review_band[1] <= 1.0:
            raise ValueError(f"review band must be 0 <= LO <= HI <= 1, not {review_band}")
        self.checkpoint = checkpoint
        self.classes = checkpoint.classes
        self.ok_index = checkpoint.ok_index
        self.input_size = checkpoint.config.model.input_size
        self.threshold = checkpoint.threshold if threshold is None else float(threshold)
        self.review_band = review_band
        self.model = checkpoint.build_model()
        self.model_id = checkpoint.model_id
        self.workers = workers or min(4, os.cpu_count() or 1)

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, **kwargs) -> "Predictor":
        """A predictor for a checkpoint file, or for the bundled model when ``model`` is None."""
        return cls(load_checkpoint(model or bundled_model_path()), **kwargs)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities for decoded, preprocessed uint8 images (N, S, S)."""
        return predict_probs(self.model, images, temperature=self.checkpoint.temperature)

    def judge(self, sources: Sequence[str], probs: np.ndarray) -> list[Inspection]:
        """Turn probabilities into Inspections at this predictor's threshold."""
        p_def = defect_probability(probs, self.ok_index)
        idx = predicted_index(probs, self.ok_index, self.threshold)
        binary = len(self.classes) == 2
        out = []
        for src, row, p, i in zip(sources, probs, p_def, idx):
            out.append(Inspection(
                source=src,
                label=self.classes[i],
                score=float(p) if binary else float(row[i]),
                p_defect=float(p),
                decision=decide(float(p), self.threshold, self.review_band),
                threshold=self.threshold,
                model=self.model_id,
                scores=None if binary else {c: float(v) for c, v in zip(self.classes, row)},
            ))
        return out

    def failed(self, source: str, error: Exception) -> Inspection:
        reason = error.reason if isinstance(error, ImageError) else str(error)
        return Inspection(source=source, label=None, score=None, p_defect=None, decision=None,
                          threshold=self.threshold, model=self.model_id, error=reason)

    def _load(self, item: tuple[str, Source]) -> np.ndarray | ImageError:
        name, src = item
        try:
            return load_for_model(src, self.input_size, name=name)
        except ImageError as exc:
            return exc

    def iter_predict(self, sources: Iterable[Source], names: Iterable[str] | None = None,
                     batch_size: int = 64) -> Iterator[Inspection]:
        """Judge photos in input order, a batch at a time; a bad file yields an Inspection with
        ``error`` set and the rest go on. Memory holds one batch of decoded images at most."""
        items = iter(_named(sources, names))
        with ThreadPoolExecutor(self.workers) as pool:
            while batch := _take(items, batch_size):
                decoded = list(pool.map(self._load, batch))
                good = [i for i, d in enumerate(decoded) if not isinstance(d, ImageError)]
                judged: dict[int, Inspection] = {}
                if good:
                    probs = self.probabilities(np.stack([decoded[i] for i in good]))
                    for i, insp in zip(good, self.judge([batch[i][0] for i in good], probs)):
                        judged[i] = insp
                for i, (name, _) in enumerate(batch):
                    yield judged.get(i) or self.failed(name, decoded[i])

    def predict(self, sources: Iterable[Source], names: Iterable[str] | None = None,
                batch_size: int = 64) -> list[Inspection]:
        return list(self.iter_predict(sources, names, batch_size))

    def predict_one(self, source: Source, name: str | None = None) -> Inspection:
        return self.predict([source], None if name is None else [name])[0]


def _named(sources: Iterable[Source], names: Iterable[str] | None) -> Iterator[tuple[str, Source]]:
    if names is None:
        for s in sources:
            yield ("<bytes>" if isinstance(s, (bytes, bytearray)) else str(s)), s
    else:
        yield from zip(names, sources, strict=True)


def _take(items: Iterator, n: int) -> list:
    out = []
    for item in items:
        out.append(item)
        if len(out) == n:
            break
    return out
