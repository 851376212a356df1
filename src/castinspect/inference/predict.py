"""The Predictor: the one path from photos to Inspections, behind every entry point.

    file / bytes -> core.io (decode, preprocess) -> data.quality (reasons)
                 -> backend (model + calibrated softmax + familiarity) -> core.decision -> Inspection

Two ways in: ``predict`` for many photos (a pipeline: decoding runs ahead of the model) and
``predict_one`` for one photo on the calling thread (the line's one-at-a-time path, with a
heatmap when asked). ``castinspect predict``, ``evaluate``, ``explain``, the server and the demo
all go through it, so they cannot drift apart. ``judge``, ``probabilities``, ``inspections`` and
``heatmaps`` work on decoded arrays, for evaluation and reports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from castinspect.core.decision import (
    DEFECTIVE,
    REVIEW,
    decide,
    defect_probability,
    predicted_index,
)
from castinspect.core.io import MIN_SIDE, ImageError, preprocess, read_photo
from castinspect.core.parallel import Decoder
from castinspect.core.records import ANOMALOUS, UNFAMILIAR, Inspection
from castinspect.data.locate import crop_to_part, prepare
from castinspect.data.quality import QualityReference, photo_stats
from castinspect.inference.backends import make_backend
from castinspect.inference.familiarity import is_familiar
from castinspect.models.checkpoint import Checkpoint, load_checkpoint

Source = str | os.PathLike | bytes
# What a photo with a quality reason gets: review by a person, reject, or the model's verdict.
ON_UNFAMILIAR = ("review", "reject", "judge")
ARRAY_BATCH = 128  # photos per backend call when judging decoded arrays (evaluation, the suite)


class Predictor:
    """Judges photos with one model at one operating threshold, on one backend.

    Built from a checkpoint (any backend; heatmaps need it) or from an exported ``.onnx`` file
    (ONNX Runtime or OpenVINO): both carry the classes, threshold, temperature and input size.
    """

    def __init__(self, checkpoint: Checkpoint | None = None, threshold: float | None = None,
                 review_band: tuple[float, float] | None = None, workers: int | None = None,
                 backend: str = "auto", onnx_model: bytes | str | None = None,
                 on_unfamiliar: str = "review", anomaly: "Predictor | None" = None) -> None:
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], not {threshold}")
        if review_band is not None and not 0.0 <= review_band[0] <= review_band[1] <= 1.0:
            raise ValueError(f"review band must be 0 <= LO <= HI <= 1, not {review_band}")
        if on_unfamiliar not in ON_UNFAMILIAR:
            raise ValueError(f"on_unfamiliar must be one of {', '.join(ON_UNFAMILIAR)}, not {on_unfamiliar!r}")
        if checkpoint is None and onnx_model is None:
            raise ValueError("a Predictor needs a checkpoint or an ONNX model")
        if checkpoint is not None:
            meta = checkpoint.metadata()
        else:
            from castinspect.inference.export import read_metadata
            meta = read_metadata(onnx_model)
        self.checkpoint = checkpoint
        self.classes: list[str] = meta["classes"]
        self.ok_index: int | None = meta["ok_index"]  # None: no OK class, the model classifies defect types
        self.input_size: int = meta["input_size"]
        self.temperature: float = meta["temperature"]
        self.model_id: str = meta["model_id"]
        self.locate: bool = bool(meta.get("locate", False))  # crop to the part (older models: never)
        if self.ok_index is None and (threshold is not None or review_band is not None):
            raise ValueError("this model has no OK class (it classifies defect types): it has no p(defect), "
                             "so no threshold or review band applies")
        self.threshold: float | None = meta["threshold"] if threshold is None else float(threshold)
        self.review_band = review_band
        self.backend = make_backend(backend, checkpoint, onnx_model)
        # What the training photos looked like (``data.quality``), in the checkpoint and in an
        # exported graph's metadata alike; None for models trained before it was recorded.
        ref = meta.get("quality_reference")
        self.quality: QualityReference | None = QualityReference.from_dict(ref) if ref else None
        # The share of validation photos left outside what is familiar (``inference.familiarity``);
        # None: the model does not measure familiarity (trained before it did).
        familiarity = meta.get("familiarity")
        self.familiarity_share: float | None = familiarity["share"] if familiarity else None
        # Below this short side a photo is refused (``too_small``): half the model's input, or half
        # the smallest training photo's short side where that is smaller. A thumbnail upsampled to
        # the input is no photo of the part; between this and the training size it is judged with
        # the reason ``small``.
        sides = [self.input_size / 2] + ([self.quality.min_side / 2] if self.quality is not None else [])
        self.min_side = max(MIN_SIDE, int(min(sides)))
        self.on_unfamiliar = on_unfamiliar
        # A second model every part must pass too (an anomaly model beside a classifier): it
        # judges the same photo, resized for its own input where that differs from this one's;
        # it must crop it alike (its map lies on the photo the record shows).
        if anomaly is not None and (anomaly.ok_index is None or len(anomaly.classes) != 2
                                    or anomaly.locate != self.locate):
            raise ValueError(f"the anomaly model {anomaly.model_id} must judge good against defective with this "
                             f"model's localisation ({'on' if self.locate else 'off'}); it has localisation "
                             f"{'on' if anomaly.locate else 'off'}, classes {anomaly.classes}")
        self.anomaly = anomaly
        self._cam_model = None  # built on the first heatmap request
        self.workers = workers

    @classmethod
    def load(cls, model: str | os.PathLike | None = None, **kwargs) -> "Predictor":
        """A predictor for a checkpoint file, an exported ``.onnx`` file, or the bundled model
        when ``model`` is None."""
        if model is not None and str(model).lower().endswith(".onnx"):
            if not Path(model).is_file():
                raise FileNotFoundError(f"{model}: no such model file")
            return cls(None, onnx_model=str(model), **kwargs)
        return cls(load_checkpoint(model), **kwargs)

    # -- photos ------------------------------------------------------------------------------

    def predict(self, sources: Iterable[Source], names: Iterable[str] | None = None,
                batch_size: int = 64, prefetch: int = 2, keep_photos: bool = False,
                workers: int | None = None) -> Iterator[Inspection]:
        """Judge photos in input order, a batch at a time, while the next ``prefetch`` batches
        decode (``core.parallel``, on ``workers`` threads: the Predictor's own by default). A bad
        file yields an Inspection with ``error`` set and the rest go on. With ``keep_photos`` each
        Inspection carries its decoded photo (``photo``)."""
        def load(item: tuple[str, Source]) -> tuple:
            gray, colour = self.read(item[1], item[0])
            x = self.prepare(gray)
            return (gray if keep_photos else None), x, self.quality_reasons(gray, colour) or [], \
                self.anomaly_input(gray, x)

        with Decoder(workers or self.workers) as decoder:
            for batch, decoded in decoder.batches(load, _named(sources, names), batch_size, prefetch):
                good = [i for i, d in enumerate(decoded) if not isinstance(d, ImageError)]
                judged: dict[int, Inspection] = {}
                if good:
                    images = np.stack([decoded[i][1] for i in good])
                    probs, familiarity = self.judge(images)
                    reasons = [decoded[i][2] for i in good]
                    names = [batch[i][0] for i in good]
                    p_anomaly = None if self.anomaly is None else \
                        self.anomaly_scores(np.stack([decoded[i][3] for i in good]))
                    judged_now = self.second_opinion(self.inspections(names, probs, reasons, familiarity), p_anomaly)
                    for i, insp in zip(good, judged_now):
                        insp.photo = decoded[i][0]
                        judged[i] = insp
                for i, (name, _) in enumerate(batch):
                    yield judged.get(i) or self.failed(name, decoded[i])

    def predict_one(self, source: Source, name: str | None = None, heatmap: bool = False) -> Inspection:
        """One photo, decoded and judged on the calling thread, without the pipeline's thread
        hand-offs. The Inspection carries the decoded ``photo`` (cropped to the part where the
        model locates parts) and, with ``heatmap``, its
        Grad-CAM ``heatmap`` at model size (which needs the checkpoint)."""
        if heatmap:
            self.require_checkpoint()
        prepared = self.prepare_one(source, name)
        if isinstance(prepared, Inspection):
            return prepared
        name, x, reasons, seen, xa = prepared
        probs, familiarity = self.judge(x[None])
        p_anomaly = None if xa is None else self.anomaly_scores(xa[None])
        insp = self.second_opinion(self.inspections([name], probs, [reasons], familiarity), p_anomaly)[0]
        insp.photo = seen
        if heatmap:
            # the model that rejected it shows where, at this model's input (the photo's frame)
            own = insp.p_defect if insp.p_defect is not None else insp.score
            if ANOMALOUS in insp.reasons:
                insp.heatmap = cv2.resize(self.anomaly.heatmaps(xa[None], [insp.anomaly])[0], x.shape[::-1],
                                          interpolation=cv2.INTER_LINEAR)
            else:
                insp.heatmap = self.heatmaps(x[None], [own])[0]
        return insp

    def anomaly_input(self, gray: np.ndarray, x: np.ndarray) -> np.ndarray | None:
        """The anomaly model's input for the photo ``gray`` (``x`` is this model's): None without
        one, ``x`` itself where both models see the photo alike."""
        a = self.anomaly
        if a is None:
            return None
        return x if a.input_size == self.input_size else a.prepare(gray)

    def anomaly_scores(self, images: np.ndarray) -> np.ndarray | None:
        """The anomaly model's p(defect) of its inputs ``images`` (``anomaly_input``), where this
        Predictor has one beside it (None otherwise)."""
        if self.anomaly is None or not len(images):
            return None
        return defect_probability(self.anomaly.judge(images)[0], self.anomaly.ok_index)

    def second_opinion(self, inspections: list[Inspection], p_anomaly: np.ndarray | None) -> list[Inspection]:
        """``inspections`` with the anomaly model's word ``p_anomaly`` (``anomaly_scores`` of their
        model inputs), where this Predictor has one: its p(defect) in ``anomaly``; a part it
        rejects is defective whatever the classifier said, labelled as it labels it, with the
        reason ``anomalous``."""
        if p_anomaly is None:
            return inspections
        a = self.anomaly
        for insp, p in zip(inspections, p_anomaly, strict=True):
            insp.anomaly = float(p)
            if p >= a.threshold and insp.decision != DEFECTIVE:
                insp.decision, insp.label = DEFECTIVE, a.classes[1 - a.ok_index]
                insp.reasons.append(ANOMALOUS)
        return inspections

    def prepare_one(self, source: Source, name: str | None = None) -> tuple | Inspection:
        """One photo decoded, checked and preprocessed, not yet judged: (name, model input (S, S),
        quality reasons, the photo as the model saw it, the anomaly model's input or None), or the
        failed Inspection. What a caller that judges several photos in one call (the server's
        micro-batches) does first."""
        name = next(_named([source], None if name is None else [name]))[0]
        try:
            gray, colour = self.read(source, name)
        except ImageError as exc:
            return self.failed(name, exc)
        # With localisation the photo carried is the crop the model judged, so a heatmap lies on it.
        seen = crop_to_part(gray) if self.locate else gray
        x = preprocess(seen, self.input_size)
        return name, x, self.quality_reasons(gray, colour) or [], seen, self.anomaly_input(gray, x)

    def read(self, source: Source, name: str) -> tuple[np.ndarray, float]:
        """``core.io.read_photo``, and the photo refused when it is too small for this model."""
        gray, colour = read_photo(source, name)
        h, w = gray.shape
        if min(h, w) < self.min_side:
            raise ImageError(name, f"image too small for this model ({w}x{h}; at least "
                                   f"{self.min_side}x{self.min_side})", "too_small")
        return gray, colour

    # -- decoded arrays ----------------------------------------------------------------------

    def quality_reasons(self, gray: np.ndarray, colour: float = 0.0) -> list[str] | None:
        """What about a decoded photo (full size, before the crop and resize; ``colour`` how
        coloured its frame was, ``core.io.read_photo``) is unlike the training photos
        (``data.quality``): [] when nothing is, None when the model has no reference to check
        against."""
        return None if self.quality is None else self.quality.reasons(photo_stats(gray, colour))

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """A decoded photo as this model sees it: cropped to its part where the model locates
        parts, resized to its input."""
        return prepare(gray, self.input_size, self.locate)

    def judge(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C) class probabilities and (N,) familiarity (None where the model does not measure
        it) for decoded, preprocessed uint8 images (N, S, S), a bounded batch at a time: a backend
        given all of a test split at once holds every layer's activations for all of it
        (gigabytes for a few hundred photos)."""
        if len(images) == 0:
            empty = np.zeros(0, np.float32) if self.familiarity_share is not None else None
            return np.zeros((0, len(self.classes)), np.float32), empty
        parts = [self.backend.run(images[i:i + ARRAY_BATCH]) for i in range(0, len(images), ARRAY_BATCH)]
        probs = np.concatenate([p for p, _ in parts])
        return probs, None if parts[0][1] is None else np.concatenate([f for _, f in parts])

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, C) class probabilities for decoded, preprocessed uint8 images (N, S, S)."""
        return self.judge(images)[0]

    def unfamiliar(self, familiarity: np.ndarray | None) -> np.ndarray | None:
        """Which photos of ``judge``'s familiarity are unlike the training photos."""
        if familiarity is None or self.familiarity_share is None:
            return None
        return ~is_familiar(familiarity, self.familiarity_share)

    def inspections(self, sources: Sequence[str], probs: np.ndarray,
                    reasons: Sequence[list[str]] | None = None,
                    familiarity: np.ndarray | None = None) -> list[Inspection]:
        """Turn probabilities into Inspections at this predictor's threshold and review band.
        Without an OK class every part is defective, labelled with its most probable type.
        ``familiarity`` (from ``judge``) below the model's calibrated share adds the reason
        ``unfamiliar``. A photo with reasons (unlike the training photos) is decided as
        ``on_unfamiliar`` says: sent to review (the default), rejected, or judged as if it had none."""
        p_def = defect_probability(probs, self.ok_index)
        idx = predicted_index(probs, self.ok_index, self.threshold)
        types = self.ok_index is None
        binary = len(self.classes) == 2 and not types
        reasons = [list(r) for r in reasons] if reasons is not None else [[] for _ in sources]
        unfamiliar = self.unfamiliar(familiarity)
        for k in np.flatnonzero(unfamiliar) if unfamiliar is not None else []:
            reasons[k].insert(0, UNFAMILIAR)
        out = []
        for k, (src, row, p, i, why) in enumerate(zip(sources, probs, p_def, idx, reasons, strict=True)):
            decision = DEFECTIVE if types else decide(float(p), self.threshold, self.review_band)
            if why and self.on_unfamiliar != "judge":
                decision = REVIEW if self.on_unfamiliar == "review" else DEFECTIVE
            out.append(Inspection(
                source=src,
                label=self.classes[i],
                score=float(p) if binary else float(row[i]),
                p_defect=None if types else float(p),
                decision=decision,
                threshold=self.threshold,
                model=self.model_id,
                scores=None if binary else {c: float(v) for c, v in zip(self.classes, row)},
                reasons=why,
                familiarity=None if unfamiliar is None else float(familiarity[k]),
                familiar=None if unfamiliar is None else not bool(unfamiliar[k]),
            ))
        return out

    def failed(self, source: str, error: Exception) -> Inspection:
        """The Inspection of a photo that could not be judged: why, and (for programs) its code."""
        image_error = isinstance(error, ImageError)
        return Inspection(source=source, label=None, score=None, p_defect=None, decision=None,
                          threshold=self.threshold, model=self.model_id,
                          error=error.reason if image_error else str(error),
                          error_code=error.code if image_error else "error")

    def require_checkpoint(self) -> None:
        if self.checkpoint is None:
            raise ValueError("heatmaps need the model's checkpoint (.ckpt): an exported .onnx model "
                             "has no gradients; pass --model with the checkpoint it was exported from")

    def heatmaps(self, images: np.ndarray, strength: np.ndarray | None = None) -> np.ndarray:
        """Heatmaps (N, S, S) in [0, 1] for decoded images: where the model saw defect (Grad-CAM,
        or an anomaly model's map of patch distances; each map to its peak) times how sure it is
        (``strength``: p(defect), or the defect type's probability without an OK class; computed
        when not given), so a confident OK part's map is dark. They need the checkpoint's
        gradients, whatever backend judges the photos."""
        self.require_checkpoint()
        if self._cam_model is None:
            self._cam_model = self.checkpoint.build_network()
        from castinspect.inference.explain import anomaly_maps, gradcam
        if strength is None:
            probs, _ = self.judge(images)
            strength = probs.max(axis=1) if self.ok_index is None else defect_probability(probs, self.ok_index)
        if hasattr(self._cam_model, "anomaly_maps"):  # an anomaly model shows where it departs from good parts
            cams = anomaly_maps(self._cam_model, images)
        else:
            cams = gradcam(self._cam_model, images, self.ok_index)
        return cams * np.asarray(strength, np.float32).reshape(-1, 1, 1)


def _named(sources: Iterable[Source], names: Iterable[str] | None) -> Iterator[tuple[str, Source]]:
    """(name, source) pairs: the name a photo is reported under is ``names``' entry, else its
    path, else "<bytes>"."""
    if names is None:
        for s in sources:
            yield ("<bytes>" if isinstance(s, (bytes, bytearray)) else str(s)), s
    else:
        yield from zip(names, sources, strict=True)
