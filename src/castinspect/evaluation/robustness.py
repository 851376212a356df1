"""The line-variation suite: how a model holds up when the line is not the lab.

Each variation is a fixed, seeded change to the *photo* (full resolution, before the resize to the
model's input), the way the camera would deliver it: light drift, lost contrast, gamma, uneven
illumination, a soft lens, sensor noise, heavy JPEG compression, and parts arriving turned,
off-centre or at another distance. The "camera" kind is a camera that was moved or changed: the
part much smaller or larger in the frame or far off-centre, the camera tilted, exposure a stop
off, another background, another resolution. Training augmentation draws from broad random
ranges (``data.augment``); this suite uses its own fixed settings, so the two are not the same test.

Random parts of a variation (rotation angle, shift direction, noise) are seeded per photo from
(seed, variation, photo index), so a result does not depend on batch or chunk sizes.

Where the predictor checks photos (quality reasons on the varied photo, familiarity of its
embedding), each variation also counts the photos flagged as unlike the training photos and the
*silent errors*: wrong labels on photos that nobody was told to look at (not flagged, not in
the review band) — on a line, the errors that matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from castinspect.core.decision import (
    defect_probability,
    in_review_band,
    predicted_index,
)
from castinspect.core.io import ImageError, read_image
from castinspect.core.parallel import Decoder
from castinspect.data.datasets import ImageSet
from castinspect.data.locate import background_weight, prepare
from castinspect.evaluation.metrics import review_summary, summarize

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Variation:
    name: str
    kind: str  # "none", "photometric" (light, optics, sensor, compression), "geometric" or "camera"
    description: str
    apply: Transform


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gain(factor: float) -> Transform:
    return lambda img, rng: _to_u8(img.astype(np.float32) * factor)


def contrast(factor: float) -> Transform:
    def f(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = img.astype(np.float32)
        return _to_u8((x - x.mean()) * factor + x.mean())
    return f


def gamma(g: float) -> Transform:
    table = _to_u8(255.0 * (np.arange(256) / 255.0) ** g)
    return lambda img, rng: table[img]


def uneven_light(strength: float) -> Transform:
    """A linear light fall-off across the frame, +-strength at the edges, in a random direction."""
    def f(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape
        a = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
        ramp = (xs * math.cos(a) + ys * math.sin(a)) / math.sqrt(2)
        return _to_u8(img.astype(np.float32) * (1 + strength * ramp))
    return f


def blur(sigma_fraction: float) -> Transform:
    """Gaussian defocus; sigma as a fraction of the photo's width, so it means the same at any size."""
    return lambda img, rng: cv2.GaussianBlur(img, (0, 0), sigma_fraction * img.shape[1],
                                             borderType=cv2.BORDER_REPLICATE)


def noise(std: float) -> Transform:
    return lambda img, rng: _to_u8(img.astype(np.float32) + rng.normal(0, std, img.shape))


def jpeg(quality: int) -> Transform:
    def f(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img
    return f


def affine(angle: float | None = None, shift: float = 0.0, scale: float = 1.0) -> Transform:
    """Rotate about the centre (angle None: a random angle per photo), scale, then shift by
    ``shift`` of the width in a random direction. Edges are replicated, as augmentation does."""
    def f(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape
        a = rng.uniform(0, 360) if angle is None else angle
        m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), a, scale)
        if shift:
            d = rng.uniform(0, 2 * math.pi)
            m[:, 2] += (shift * w * math.cos(d), shift * h * math.sin(d))
        return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return f


def tilt(inset: float) -> Transform:
    """The camera tilted: the frame's far (top) edge ``inset`` of the width narrower on each side."""
    def f(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dst = np.float32([[inset * w, 0], [w - inset * w, 0], [w, h], [0, h]])
        return cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
    return f


def background(delta: float) -> Transform:
    """The background ``delta`` grey levels lighter (or darker), the part as it was. Where no part
    stands on a background, the whole frame changes."""
    def f(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        weight = background_weight(img)
        return _to_u8(img.astype(np.float32) + delta * (1.0 if weight is None else weight))
    return f


def resolution(factor: float) -> Transform:
    """The photo delivered at ``factor`` times its resolution (another camera or sensor mode)."""
    def f(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape
        size = (max(8, round(w * factor)), max(8, round(h * factor)))
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    return f


SUITE: tuple[Variation, ...] = (
    Variation("original", "none", "the photo as it is", lambda img, rng: img),
    Variation("darker", "photometric", "30% less light", gain(0.7)),
    Variation("brighter", "photometric", "30% more light", gain(1.3)),
    Variation("low_contrast", "photometric", "contrast halved about the mean", contrast(0.5)),
    Variation("gamma_0.6", "photometric", "gamma 0.6 (lifted shadows)", gamma(0.6)),
    Variation("gamma_1.6", "photometric", "gamma 1.6 (deeper shadows)", gamma(1.6)),
    Variation("uneven_light", "photometric", "light falling off +-30% across the frame", uneven_light(0.3)),
    Variation("blur", "photometric", "Gaussian defocus, sigma 0.6% of the width", blur(0.006)),
    Variation("noise", "photometric", "Gaussian sensor noise, 8 grey levels", noise(8.0)),
    Variation("jpeg_q15", "photometric", "JPEG re-compressed at quality 15", jpeg(15)),
    Variation("rotate", "geometric", "turned through a random angle", affine()),
    Variation("shift", "geometric", "off-centre by 8% of the width", affine(angle=0.0, shift=0.08)),
    Variation("scale_0.9", "geometric", "10% smaller in the frame", affine(angle=0.0, scale=0.9)),
    Variation("scale_1.1", "geometric", "10% larger in the frame", affine(angle=0.0, scale=1.1)),
    Variation("zoom_0.7", "camera", "30% smaller in the frame", affine(angle=0.0, scale=0.7)),
    Variation("zoom_1.3", "camera", "30% larger in the frame", affine(angle=0.0, scale=1.3)),
    Variation("off_centre", "camera", "off-centre by 15% of the width", affine(angle=0.0, shift=0.15)),
    Variation("tilt", "camera", "camera tilted: the far edge 8% narrower", tilt(0.04)),
    Variation("exposure_+1EV", "camera", "one stop over-exposed (twice the light, clipped)", gain(2.0)),
    Variation("exposure_-1EV", "camera", "one stop under-exposed (half the light)", gain(0.5)),
    Variation("background_lighter", "camera", "the background 40 grey levels lighter", background(40.0)),
    Variation("background_darker", "camera", "the background 40 grey levels darker", background(-40.0)),
    Variation("resolution_0.5", "camera", "delivered at half the resolution", resolution(0.5)),
    Variation("resolution_2", "camera", "delivered at twice the resolution", resolution(2.0)),
)
KINDS = ("none", "photometric", "geometric", "camera")


def variation_rng(seed: int, variation: int, photo: int) -> np.random.Generator:
    return np.random.default_rng([seed, variation, photo])


def run_suite(predictor, images: ImageSet, seed: int = 0, suite: tuple[Variation, ...] = SUITE,
              chunk: int = 256, workers: int | None = None) -> tuple[dict, list[ImageError]]:
    """Judge every photo of ``images`` under every variation of ``suite``, at the predictor's
    threshold. Returns ({variation name: metrics + kind + description}, unreadable files)."""
    probs, labels, errors, flags = suite_probabilities(predictor, images, seed, suite, chunk, workers)
    return suite_metrics(probs, labels, predictor, predictor.threshold, suite, judged_paths(images, errors),
                         flags), errors


def judged_paths(images: ImageSet, errors: list[ImageError]) -> list[str]:
    """The photos ``suite_probabilities`` judged, in the order of its rows."""
    unreadable = {e.source for e in errors}
    return [p for p in images.paths if p not in unreadable]


def suite_probabilities(predictor, images: ImageSet, seed: int = 0, suite: tuple[Variation, ...] = SUITE,
                        chunk: int = 256, workers: int | None = None
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, list[ImageError], dict[str, np.ndarray] | None]:
    """({variation name: (N, C) probabilities}, labels (N,), unreadable files, {variation name:
    (N,) flagged as unlike the training photos}, or None for a predictor that checks nothing):
    the expensive part, which ``suite_metrics`` turns into metrics at any threshold. Memory holds
    one chunk of full-resolution photos at a time."""
    size, locate = predictor.input_size, getattr(predictor, "locate", False)
    checks = hasattr(predictor, "judge")  # the Predictor; the benchmarks' stand-ins only score
    probs: dict[str, list[np.ndarray]] = {v.name: [] for v in suite}
    flags: dict[str, list[np.ndarray]] = {v.name: [] for v in suite}
    labels: list[int] = []
    errors: list[ImageError] = []

    def varied(args: tuple[int, Variation, np.ndarray, int]) -> tuple[np.ndarray, bool]:
        k, v, img, idx = args
        photo = v.apply(img, variation_rng(seed, k, idx))
        return prepare(photo, size, locate), bool(checks and predictor.quality_reasons(photo))

    with Decoder(workers) as decoder:
        for start in range(0, len(images), chunk):
            photos = decoder.map(read_image, images.paths[start:start + chunk])
            good = [i for i, p in enumerate(photos) if not isinstance(p, ImageError)]
            errors += [p for p in photos if isinstance(p, ImageError)]
            labels += [int(images.labels[start + i]) for i in good]
            for k, v in enumerate(suite):
                batch = decoder.map(varied, [(k, v, photos[i], start + i) for i in good])
                if not batch:
                    continue
                x, reasoned = np.stack([b[0] for b in batch]), np.array([b[1] for b in batch])
                if checks:
                    p, familiarity = predictor.judge(x)
                    unfamiliar = predictor.unfamiliar(familiarity)
                    flags[v.name].append(reasoned | unfamiliar if unfamiliar is not None else reasoned)
                else:
                    p = predictor.probabilities(x)
                probs[v.name].append(p)
    joined = {v.name: np.concatenate(probs[v.name]) if probs[v.name] else np.zeros((0, len(predictor.classes)))
              for v in suite}
    flagged = {v.name: np.concatenate(flags[v.name]) if flags[v.name] else np.zeros(0, bool) for v in suite}
    return joined, np.asarray(labels, dtype=np.int64), errors, flagged if checks else None


def suite_metrics(probs: dict[str, np.ndarray], labels: np.ndarray, predictor, threshold: float,
                  suite: tuple[Variation, ...] = SUITE, paths: list[str] | None = None,
                  flags: dict[str, np.ndarray] | None = None) -> dict:
    """Accuracy, escapes and false rejects per variation at ``threshold``; with the judged
    photos' ``paths``, also which photos escaped and which were falsely rejected. With
    ``flags`` (``suite_probabilities``'), the photos flagged as unlike the training photos and
    the silent errors (wrong, and neither flagged nor in the review band).

    Where the predictor has a review band, also how many photos each variation sends to a person
    and the escapes and false rejects left to the automatic decisions (``review_summary``), with
    the defects that passed without review: on a line with a reviewer, those are the escapes."""
    results = {}
    defective = labels != predictor.ok_index
    band = getattr(predictor, "review_band", None)
    for v in suite:
        p = probs[v.name]
        preds = predicted_index(p, predictor.ok_index, threshold)
        m = summarize(labels, p, preds, predictor.classes, predictor.ok_index, threshold)
        r = results[v.name] = {"kind": v.kind, "description": v.description,
                               **{k: m.get(k) for k in ("n", "accuracy", "errors", "defect_recall",
                                                        "false_reject_rate", "roc_auc")},
                               # without an OK class no part is passed as OK or rejected as not OK
                               "escapes": m.get("escapes", 0), "false_rejects": m.get("false_rejects", 0)}
        p_defect = defect_probability(p, predictor.ok_index)
        if band is not None:
            r.update(review_summary(defective.astype(int), p_defect, *band, threshold))
        if flags is not None:
            seen = flags[v.name] | (in_review_band(p_defect, *band) if band is not None else False)
            r.update(unlike_training=int(flags[v.name].sum()), silent_errors=int(((preds != labels) & ~seen).sum()),
                     silent_escapes=int((defective & (preds == predictor.ok_index) & ~seen).sum()))
        if paths is not None:
            said_ok = preds == predictor.ok_index
            r["escaped"] = [paths[i] for i in np.flatnonzero(defective & said_ok)]
            r["falsely_rejected"] = [paths[i] for i in np.flatnonzero(~defective & ~said_ok)]
            if band is not None:
                unreviewed = ~in_review_band(p_defect, *band)
                r["passed_unreviewed"] = [paths[i] for i in np.flatnonzero(defective & said_ok & unreviewed)]
    return results


def sample_views(path: str, size: int, seed: int = 0, suite: tuple[Variation, ...] = SUITE,
                 locate: bool = False) -> dict[str, np.ndarray]:
    """One photo under every variation (as the model sees it), for the report."""
    img = read_image(path)
    return {v.name: prepare(v.apply(img, variation_rng(seed, k, 0)), size, locate) for k, v in enumerate(suite)}


def escaped_photos(results: dict, kind: str | None = None, key: str = "escaped") -> dict[str, list[str]]:
    """Each defect that passed under a variation (of ``kind``, or any), with the variations it
    passed under: a part that escapes under several is one to look at, not several problems.
    ``key="passed_unreviewed"``: those that passed without going to review."""
    escaped: dict[str, list[str]] = {}
    for name, r in results.items():
        if kind is None or r["kind"] == kind:
            for path in r.get(key, []):
                escaped.setdefault(path, []).append(name)
    return escaped


def has_review_band(results: dict) -> bool:
    """Whether ``suite_metrics`` judged these results with a review band."""
    return all("auto_escapes" in r for r in results.values())


def worst(results: dict) -> dict:
    """The headline: lowest accuracy, and escapes under the photometric variations."""
    name = min(results, key=lambda k: results[k]["accuracy"])
    photometric = [r for r in results.values() if r["kind"] == "photometric"]
    camera = [r for r in results.values() if r["kind"] == "camera"]
    summary = {"lowest_accuracy": results[name]["accuracy"], "lowest_accuracy_under": name,
               "photometric_escapes": sum(r["escapes"] for r in photometric),
               "photometric_escaped_photos": escaped_photos(results, "photometric"),
               "camera_escapes": sum(r["escapes"] for r in camera),
               "lowest_accuracy_camera": min((r["accuracy"] for r in camera), default=None)}
    if has_review_band(results):
        summary["photometric_escapes_unreviewed"] = sum(r["auto_escapes"] for r in photometric)
        summary["photometric_passed_unreviewed"] = escaped_photos(results, "photometric", "passed_unreviewed")
        summary["highest_review_share"] = max(r["review_share"] for r in results.values())
    return summary
