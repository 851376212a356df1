"""Image-quality checks: a photo unlike the training photos in size, shape, focus or exposure is
named; photos like them are not."""

import cv2
import numpy as np
import pytest
from conftest import make_casting

from castinspect.data.quality import QualityReference, photo_stats
from castinspect.inference.predict import Predictor


@pytest.fixture(scope="module")
def reference_and_photos():
    rng = np.random.default_rng(0)
    photos = [make_casting(rng, None, 200) for _ in range(60)]
    return QualityReference.fit(photo_stats(p) for p in photos[:40]), photos[40:]


def test_photos_like_the_training_ones_pass(reference_and_photos):
    ref, photos = reference_and_photos
    assert [ref.reasons(photo_stats(p)) for p in photos] == [[]] * len(photos)
    assert QualityReference.from_dict(ref.to_dict()) == ref


@pytest.mark.parametrize("change, reason", [
    (lambda g: cv2.GaussianBlur(g, (0, 0), 4.0), "blurred"),
    (lambda g: np.clip(g.astype(np.float32) * 2.8, 0, 255).astype(np.uint8), "overexposed"),
    (lambda g: (g.astype(np.float32) * 0.3).astype(np.uint8), "underexposed"),
    (lambda g: cv2.resize(g, (60, 60), interpolation=cv2.INTER_AREA), "small"),
    (lambda g: cv2.resize(g, (300, 200), interpolation=cv2.INTER_LINEAR), "aspect-distorted"),
])
def test_each_check_names_its_reason(reference_and_photos, change, reason):
    ref, photos = reference_and_photos
    assert all(reason in ref.reasons(photo_stats(change(p))) for p in photos)


def test_a_darker_photo_is_not_called_blurred(reference_and_photos):
    ref, photos = reference_and_photos
    assert not any("blurred" in ref.reasons(photo_stats((p * 0.5).astype(np.uint8))) for p in photos)


def test_a_trained_model_carries_its_reference(model_path, synth_root):
    predictor = Predictor.load(model_path)
    assert predictor.quality is not None and predictor.quality.photos > 0
    photo = cv2.imread(str(next((synth_root / "test" / "ok_front").iterdir())), cv2.IMREAD_GRAYSCALE)
    assert predictor.quality_reasons(photo) == []
    assert predictor.quality_reasons(cv2.GaussianBlur(photo, (0, 0), 4.0)) == ["blurred"]


def test_a_model_from_before_has_no_reference():
    assert Predictor.load().quality_reasons(np.full((300, 300), 128, np.uint8)) is None
