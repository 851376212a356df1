"""Part localisation: a planted part moved and zoomed is found (centre and size within a few
pixels), a texture is left as it is, and the crop feeds the model the same framing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from castinspect.data.locate import crop_to_part, find_part, located_share, prepare

SIZE = 300


def part_photo(cx: float, cy: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A textured disc with a dark hub on a brushed background under a light gradient."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    img = 150 + 0.1 * xx + cv2.GaussianBlur(rng.normal(0, 6, (SIZE, SIZE)).astype(np.float32), (0, 0), 1.0)
    d = np.hypot(xx - cx, yy - cy)
    img[d < radius] = 205
    img[d < 0.55 * radius] = 60  # the dark vanes
    img[d < 0.2 * radius] = 170  # the bright hub, like the background
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("cx,cy,radius", [(150, 150, 110), (120, 175, 90), (185, 130, 70), (150, 160, 130)])
def test_finds_a_moved_and_zoomed_part(cx, cy, radius):
    box = find_part(part_photo(cx, cy, radius, np.random.default_rng(1)))
    assert box is not None
    assert abs(box.cx - cx) <= 4 and abs(box.cy - cy) <= 4 and abs(box.side - 2 * radius) <= 8


def test_a_texture_or_a_flat_frame_is_left_as_it_is():
    rng = np.random.default_rng(2)
    texture = np.clip(128 + cv2.GaussianBlur(rng.normal(0, 40, (200, 200)).astype(np.float32), (0, 0), 2), 0, 255)
    texture = texture.astype(np.uint8)
    assert find_part(texture) is None and crop_to_part(texture) is texture
    flat = np.full((100, 100), 90, np.uint8)
    assert find_part(flat) is None
    assert located_share([texture, flat]) == 0.0


def test_the_crop_frames_the_part_alike_wherever_it_was():
    rng = np.random.default_rng(3)
    a = prepare(part_photo(150, 150, 110, rng), 64, locate=True).astype(float)
    b = prepare(part_photo(110, 180, 80, rng), 64, locate=True).astype(float)
    plain = prepare(part_photo(110, 180, 80, rng), 64).astype(float)
    assert np.abs(a - b).mean() < 0.5 * np.abs(a - plain).mean()


def test_a_model_trained_with_auto_localisation_locates_everywhere(synth_root, tmp_path):
    from conftest import tiny_config

    from castinspect.inference.export import export_onnx
    from castinspect.inference.predict import Predictor
    from castinspect.training.run import train_and_evaluate

    cfg = tiny_config(2)
    cfg.data.locate = "auto"  # the synthetic castings: a disc on a dark background
    result, _ = train_and_evaluate(cfg, synth_root, tmp_path / "run")
    assert result.checkpoint.config.data.locate == "on"
    assert "locate: 'on'" in (tmp_path / "run" / "config.yaml").read_text()
    files = sorted(str(p) for p in synth_root.glob("test/*/*.jpeg"))[:6]
    from_ckpt = Predictor(result.checkpoint)
    onnx = Predictor.load(export_onnx(result.checkpoint, tmp_path / "m.onnx"))
    assert from_ckpt.locate and onnx.locate
    a, b = list(from_ckpt.predict(files)), [onnx.predict_one(f) for f in files]
    assert np.allclose([x.p_defect for x in a], [y.p_defect for y in b], atol=1e-5)
    one = from_ckpt.predict_one(files[0], heatmap=True)  # the photo it carries is the crop it judged
    assert one.photo.shape[0] == one.photo.shape[1] < 96 and one.heatmap.shape == (from_ckpt.input_size,) * 2
