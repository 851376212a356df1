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


def test_a_model_from_before_has_no_reference(model_path, tmp_path):
    from castinspect.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(model_path)
    del ckpt.info["quality_reference"]
    ckpt.familiarity = None
    save_checkpoint(ckpt, tmp_path / "old.ckpt")
    old = Predictor.load(tmp_path / "old.ckpt")
    assert old.quality is None and old.quality_reasons(np.full((300, 300), 128, np.uint8)) is None
    insp = old.predict_one(_png(np.zeros((64, 64), np.uint8)), name="tiny.png")
    assert insp.reasons == [] and insp.familiarity is None and insp.familiar is None  # nothing to check against


def _png(gray: np.ndarray) -> bytes:
    return cv2.imencode(".png", gray)[1].tobytes()


def test_the_bundled_model_carries_its_reference():
    bundled = Predictor.load()
    assert bundled.quality is not None and bundled.quality.photos == 200
    assert bundled.quality_reasons(cv2.resize(np.full((300, 300), 128, np.uint8), (64, 64))) == ["small", "blurred"]


@pytest.fixture(scope="module")
def blurred_photo(synth_root, tmp_path_factory):
    photo = cv2.imread(str(next((synth_root / "test" / "ok_front").iterdir())), cv2.IMREAD_GRAYSCALE)
    path = tmp_path_factory.mktemp("blurred") / "blurred.png"
    cv2.imwrite(str(path), cv2.GaussianBlur(photo, (0, 0), 4.0))
    return path


@pytest.mark.parametrize("on_unfamiliar, expected", [("review", {"review"}), ("reject", {"defective"}),
                                                     ("judge", {"ok", "defective"})])
def test_a_photo_with_a_reason_is_decided_as_asked(model_path, blurred_photo, on_unfamiliar, expected):
    predictor = Predictor.load(model_path, on_unfamiliar=on_unfamiliar)
    one = predictor.predict_one(blurred_photo)
    (batch,) = list(predictor.predict([blurred_photo]))
    for insp in (one, batch):
        assert "blurred" in insp.reasons and insp.decision in expected
        assert insp.label in predictor.classes  # the model's class, whatever the decision
        assert 0.0 <= insp.familiarity <= 1.0 and isinstance(insp.familiar, bool)
    with pytest.raises(ValueError, match="on_unfamiliar"):
        Predictor.load(model_path, on_unfamiliar="ignore")


def test_the_reasons_reach_the_json_the_log_and_the_api(model_path, blurred_photo, db_url):
    import json

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from castinspect.cli import app
    from castinspect.station.app import create_app
    from castinspect.station.log import InspectionLog

    r = CliRunner().invoke(app, ["predict", str(blurred_photo), "--model", str(model_path), "--format", "json"])
    (item,) = json.loads(r.stdout)
    assert "blurred" in item["reasons"] and item["decision"] == "review" and isinstance(item["familiar"], bool)
    r = CliRunner().invoke(app, ["predict", str(blurred_photo), "--model", str(model_path), "--format", "csv"])
    assert '""blurred""]"' in r.stdout.splitlines()[1]
    with InspectionLog.open(db_url) as log, TestClient(create_app(Predictor.load(model_path), log)) as c:
        body = c.post("/v1/inspect", files={"file": ("b.png", blurred_photo.read_bytes(), "image/png")}).json()
        assert "blurred" in body["reasons"] and body["decision"] == "review" and body["familiar"] == item["familiar"]
        row = log.get(body["id"])
        assert row["reasons"] == body["reasons"] and row["familiar"] is body["familiar"] and row["decision"] == "review"
        assert row["familiarity"] == pytest.approx(body["familiarity"])


def test_an_exported_graph_carries_the_reference(model_path, blurred_photo, tmp_path):
    from castinspect.inference.export import export_onnx

    onnx_path = tmp_path / "model.onnx"
    export_onnx(Predictor.load(model_path).checkpoint, onnx_path)
    exported = Predictor.load(onnx_path)
    assert exported.quality == Predictor.load(model_path).quality
    assert "blurred" in exported.predict_one(blurred_photo).reasons


def test_a_colour_photo_is_named_where_training_was_grey(model_path, synth_root):
    predictor = Predictor.load(model_path)
    photo = cv2.imread(str(next((synth_root / "test" / "ok_front").iterdir())), cv2.IMREAD_GRAYSCALE)
    grey_in_colour = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)  # a colour file of a grey scene: still grey
    assert "colour" not in predictor.predict_one(_png(grey_in_colour), name="grey.png").reasons
    tinted = grey_in_colour.astype(np.int16) + np.array([-30, 0, 30], np.int16)  # a warm cast, as a colour camera's
    insp = predictor.predict_one(_png(np.clip(tinted, 0, 255).astype(np.uint8)), name="colour.png")
    assert "colour" in insp.reasons and insp.decision == "review"
