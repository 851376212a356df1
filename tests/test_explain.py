"""Grad-CAM heatmaps: shape and range, they land on a planted defect, and the explain command."""

import cv2
import numpy as np
import pytest
from conftest import make_casting, tiny_config

from castinspect.core.config import ModelConfig
from castinspect.inference.predict import Predictor

SIZE = 96


def blob_photo(rng: np.random.Generator, centre: tuple[int, int]) -> np.ndarray:
    img = make_casting(rng, None, SIZE)
    cv2.circle(img, centre, 6, 30, -1)
    return img


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory):
    """A model that learned one defect type: dark blobs. Three stages: a 12x12 heatmap at 96 px."""
    from castinspect.training.train import fit

    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(7)
    for cls in ("def_front", "ok_front"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(120):
            img = make_casting(rng, "blob" if cls == "def_front" else None, SIZE)
            cv2.imwrite(str(root / "train" / cls / f"{i}.png"), img)
    cfg = tiny_config(20)
    cfg.model = ModelConfig(size="custom", input_size=SIZE, widths=(8, 16, 32), depths=(1, 1, 2),
                            backbone="castnet")
    return Predictor(fit(cfg, root, tmp_path_factory.mktemp("blob_run")).checkpoint)


def test_heatmap_shape_and_range(model_path, synth_root):
    predictor = Predictor.load(model_path)
    from castinspect.core.io import load_for_model
    images = np.stack([load_for_model(p, predictor.input_size) for p in sorted(synth_root.glob("test/*/*.jpeg"))[:5]])
    heat = predictor.heatmaps(images)
    assert heat.shape == images.shape and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1 + 1e-6


def test_heatmap_mass_lies_on_the_planted_blob(blob_model):
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    shares = []
    for k in range(12):
        angle = 2 * np.pi * k / 12
        centre = (int(SIZE / 2 + 22 * np.cos(angle)), int(SIZE / 2 + 22 * np.sin(angle)))
        photo = blob_photo(rng, centre)
        if blob_model.probabilities(photo[None])[0, blob_model.ok_index] > 0.5:
            continue  # only photos the model calls defective
        heat = blob_model.heatmaps(photo[None])[0]
        near = np.hypot(xx - centre[0], yy - centre[1]) <= 16  # ~9% of the photo
        shares.append(heat[near].sum() / heat.sum())
    assert len(shares) >= 8, "the model should call most blob photos defective"
    # A heatmap that ignored the image would put ~9% of its mass there.
    assert np.median(shares) > 0.5, shares


def test_mirror_averaging_model_explains_a_mirrored_photo_with_the_mirrored_map(blob_model):
    import copy

    ckpt = copy.deepcopy(blob_model.checkpoint)
    ckpt.config.model.mirror_average = True
    mirror_model = Predictor(ckpt, backend="pytorch")
    photo = blob_photo(np.random.default_rng(3), (SIZE // 2 + 22, SIZE // 2 - 10))
    heat, heat_of_mirrored = mirror_model.heatmaps(np.stack([photo, photo[:, ::-1]]))
    assert np.allclose(heat_of_mirrored, heat[:, ::-1], atol=1e-5)
    near = np.hypot(*np.mgrid[:SIZE, :SIZE][::-1] - np.array([SIZE // 2 + 22, SIZE // 2 - 10])[:, None, None]) <= 16
    assert heat[near].sum() / heat.sum() > 0.5  # still on the blob


def test_explain_command_writes_one_png_per_photo(model_path, synth_root, tmp_path):
    from test_cli import cli

    files = sorted(str(p) for p in synth_root.glob("test/def_front/*.jpeg"))[:3]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0")
    r = cli("explain", *files, str(bad), "--model", str(model_path), "--out", str(tmp_path / "out"))
    assert r.returncode == 1 and "broken.jpg" in r.stderr  # the bad file is named, the rest go on
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(p.split("/")[-1].replace(".jpeg", ".png") for p in files)
    png = cv2.imread(str(tmp_path / "out" / written[0]))
    assert png.shape[1] == 644  # photo and heatmap side by side, 300 px each, and the colour scale


def test_explain_with_an_onnx_model_is_a_clear_error(model_path, tmp_path):
    from test_cli import cli

    from castinspect.inference.export import export_onnx
    from castinspect.models.checkpoint import load_checkpoint

    onnx = export_onnx(load_checkpoint(model_path), tmp_path / "m.onnx")
    r = cli("explain", "x.jpg", "--model", str(onnx))
    assert r.returncode != 0 and "checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_report_shows_galleries_with_heatmaps(trained_run):
    html = (trained_run[0].run_dir / "report.html").read_text()
    for heading in ("Misclassified", "Correct, nearest the threshold", "Random photos", "Grad-CAM"):
        assert heading in html


def test_a_confident_ok_part_has_a_darker_heatmap_than_a_defective_one(blob_model):
    """Heatmaps are scaled by p(defect), not each to its own peak: the map of a plain disc the
    model calls OK holds less than that of a disc with a blowhole."""
    from conftest import make_casting

    rng = np.random.default_rng(5)
    ok = np.stack([make_casting(rng, None, SIZE) for _ in range(6)])
    bad = np.stack([blob_photo(rng, (SIZE // 2 + 20, SIZE // 2)) for _ in range(6)])
    p_ok = 1 - blob_model.probabilities(ok)[:, blob_model.ok_index]
    p_bad = 1 - blob_model.probabilities(bad)[:, blob_model.ok_index]
    assert p_ok.max() < 0.5 < p_bad.min(), (p_ok, p_bad)
    heat_ok, heat_bad = blob_model.heatmaps(ok), blob_model.heatmaps(bad)
    assert heat_ok.max(axis=(1, 2)).max() < heat_bad.max(axis=(1, 2)).min()
    assert heat_ok.mean() < heat_bad.mean() / 3
    # and the overlay of a map with no evidence is the photo itself
    from castinspect.inference.explain import overlay

    assert np.array_equal(overlay(ok[0], np.zeros_like(heat_ok[0]))[..., 0], ok[0])
