"""The Predictor: the one path from photos to Inspections, behind every entry point.

    file / bytes -> io.load_for_model -> backend (model + calibrated softmax) -> decision -> Inspection

``castinspect predict``, ``evaluate`` and (later) the server and folder watcher all call it, so
they cannot drift apart.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from castinspect.backends import make_backend
from castinspect.checkpoint import Checkpoint, load_checkpoint
from castinspect.decision import decide, defect_probability, predicted_index
from castinspect.io import ImageError, load_for_model, preprocess, read_image
from castinspect.records import Inspection

Source = str | os.PathLike | bytes


def bundled_model_path() -> Path:
    """The default model shipped inside the package (trained on the casting data)."""
    return Path(str(resources.files("castinspect") / "assets" / "model.ckpt"))


class Predictor:
    """Judges photos with one model at one operating threshold, on one backend.

    Built from a checkpoint (any backend; heatmaps need it) or from an exported ``.onnx`` file
    (ONNX Runtime or OpenVINO): both carry the classes, threshold, temperature and input size.
    """

    def __init__(self, checkpoint: Checkpoint | None = None, threshold: float | None = None,
                 review_band: tuple[float, float] | None = None, workers: int | None = None,
                 backend: str = "auto", onnx_model: bytes | str | None = None) -> None:
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], not {threshold}")
        if review_band is not None and not 0.0 <= review_band[0] <= review_band[1] <= 1.0:
            raise ValueError(f"review band must be 0 <= LO <= HI <= 1, not {review_band}")
        if checkpoint is None and onnx_model is None:
            raise ValueError("a Predictor needs a checkpoint or an ONNX model")
        if checkpoint is not None:
            from castinspect.export import metadata
            meta = metadata(checkpoint)
        else:
            from castinspect.export import read_metadata
            meta = read_metadata(onnx_model)
        self.checkpoint = checkpoint
        self.classes: list[str] = meta["classes"]
        self.ok_index: int = meta["ok_index"]
        self.input_size: int = meta["input_size"]
        self.temperature: float = meta["temperature"]
        self.model_id: str = meta["model_id"]
        self.threshold = meta["threshold"] if threshold is None else float(threshold)
        self.review_band = review_band
        self.backend = make_backend(backend, checkpoint, onnx_model)
        self._cam_model = None  # built on the first heatmap request
        self.workers = workers or min(4, os.cpu_count() or 1)

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, **kwargs) -> "Predictor":
        """A predictor for a checkpoint file, an exported ``.onnx`` file, or the bundled model
        when ``model`` is None."""
        if model is not None and str(model).lower().endswith(".onnx"):
            if not Path(model).is_file():
                raise FileNotFoundError(f"{model}: no such model file")
            return cls(None, onnx_model=str(model), **kwargs)
        return cls(load_checkpoint(model or bundled_model_path()), **kwargs)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities for decoded, preprocessed uint8 images (N, S, S)."""
        if len(images) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return self.backend.probabilities(images)

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
                     batch_size: int = 64, prefetch: int = 2) -> Iterator[Inspection]:
        """Judge photos in input order, a batch at a time, as a pipeline: while the model judges
        one batch, the decoder threads (OpenCV releases the GIL, so they run in parallel) are
        already decoding the next ``prefetch`` batches. A bad file yields an Inspection with
        ``error`` set and the rest go on. Memory holds at most 1 + prefetch batches, however
        many photos come in: ``sources`` may be a generator over a million files."""
        items = iter(_named(sources, names))
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque[tuple[list, list[Future]]] = deque()

            def submit() -> None:
                if batch := _take(items, batch_size):
                    pending.append((batch, [pool.submit(self._load, item) for item in batch]))

            for _ in range(max(1, prefetch)):
                submit()
            while pending:
                batch, futures = pending.popleft()
                submit()  # keeps ``prefetch`` batches decoding while this one is judged
                decoded = [f.result() for f in futures]
                good = [i for i, d in enumerate(decoded) if not isinstance(d, ImageError)]
                judged: dict[int, Inspection] = {}
                if good:
                    probs = self.probabilities(np.stack([decoded[i] for i in good]))
                    for i, insp in zip(good, self.judge([batch[i][0] for i in good], probs)):
                        judged[i] = insp
                for i, (name, _) in enumerate(batch):
                    yield judged.get(i) or self.failed(name, decoded[i])

    def require_checkpoint(self) -> None:
        if self.checkpoint is None:
            raise ValueError("heatmaps need the model's checkpoint (.ckpt): an exported .onnx model "
                             "has no gradients; pass --model with the checkpoint it was exported from")

    def heatmaps(self, images: np.ndarray) -> np.ndarray:
        """Grad-CAM heatmaps (N, S, S) in [0, 1] for decoded images: where the model saw defect.
        They need the checkpoint's gradients, whatever backend judges the photos."""
        self.require_checkpoint()
        if self._cam_model is None:
            self._cam_model = self.checkpoint.build_model()
        from castinspect.explain import gradcam
        return gradcam(self._cam_model, images, self.ok_index)

    def explain_one(self, source: Source, name: str | None = None) -> tuple[Inspection, np.ndarray | None,
                                                                              np.ndarray | None]:
        """(Inspection, the photo in gray at full size, its heatmap at model size); for a file
        that cannot be read, (Inspection with ``error``, None, None)."""
        name = _name_of(source, name)
        try:
            gray = read_image(source, name)
        except ImageError as exc:
            return self.failed(name, exc), None, None
        insp, heat = self.judge_photo(gray, name, heatmap=True)
        return insp, gray, heat

    def judge_photo(self, gray: np.ndarray, name: str, heatmap: bool = False) -> tuple[Inspection, np.ndarray | None]:
        """One decoded photo (gray, any size): its Inspection and, if asked, its heatmap at model size."""
        x = preprocess(gray, self.input_size)[None]
        return self.judge([name], self.probabilities(x))[0], (self.heatmaps(x)[0] if heatmap else None)

    def predict(self, sources: Iterable[Source], names: Iterable[str] | None = None,
                batch_size: int = 64) -> list[Inspection]:
        return list(self.iter_predict(sources, names, batch_size))

    def predict_one(self, source: Source, name: str | None = None) -> Inspection:
        """One photo, decoded and judged on the calling thread: the line's one-at-a-time path,
        without the batch pipeline's thread hand-offs."""
        name = _name_of(source, name)
        decoded = self._load((name, source))
        if isinstance(decoded, ImageError):
            return self.failed(name, decoded)
        return self.judge([name], self.probabilities(decoded[None]))[0]


def _name_of(source: Source, name: str | None) -> str:
    """The name a photo is reported under: ``name``, else its path, else "<bytes>"."""
    return next(_named([source], None if name is None else [name]))[0]


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
