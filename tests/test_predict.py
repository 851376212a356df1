from pathlib import Path

import numpy as np
import pytest

from castinspect.inference.predict import Predictor


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.glob("test/*/*.jpeg"))


def test_predicts_in_order_with_bad_files_mixed_in(model_path, synth_root, tmp_path):
    bad = tmp_path / "bad.jpeg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    files = _files(synth_root)[:10]
    inputs = files[:3] + [str(bad)] + files[3:7] + [str(tmp_path / "missing.jpg"), str(empty)] + files[7:]
    predictor = Predictor.load(model_path)
    results = list(predictor.predict(inputs, batch_size=4))  # batches split across the bad files
    assert [r.source for r in results] == inputs
    failed = [r for r in results if r.error]
    assert [r.source for r in failed] == [str(bad), str(tmp_path / "missing.jpg"), str(empty)]
    assert all(r.label is None and r.score is None and r.decision is None for r in failed)
    good = [r for r in results if not r.error]
    assert len(good) == 10 and all(0 <= r.score <= 1 for r in good)
    # a photo unlike the training photos goes to review (the default ``on_unfamiliar``)
    assert all(r.decision == ("review" if r.reasons else "defective" if r.score >= r.threshold else "ok")
               for r in good)
    assert all(r.label == ("def_front" if r.score >= r.threshold else "ok_front") for r in good)


def test_batching_does_not_change_answers(model_path, synth_root):
    files = _files(synth_root)
    predictor = Predictor.load(model_path)
    a = [r.score for r in predictor.predict(files, batch_size=64)]
    b = [r.score for r in predictor.predict(files, batch_size=7)]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_bytes_and_paths_agree(model_path, synth_root):
    f = _files(synth_root)[0]
    predictor = Predictor.load(model_path)
    assert predictor.predict_one(Path(f).read_bytes(), name="x").score == pytest.approx(
        predictor.predict_one(f).score, abs=1e-6)


def test_threshold_override_moves_decisions(model_path, synth_root):
    files = _files(synth_root)
    judged = {"on_unfamiliar": "judge"}  # the threshold alone decides
    assert all(r.decision == "defective" for r in Predictor.load(model_path, threshold=0.0, **judged).predict(files))
    assert all(r.decision == "ok" or r.score >= 1.0
               for r in Predictor.load(model_path, threshold=1.0, **judged).predict(files))
    with pytest.raises(ValueError):
        Predictor.load(model_path, threshold=1.5)


def test_review_band(model_path, synth_root):
    results = list(Predictor.load(model_path, review_band=(0.0, 1.0)).predict(_files(synth_root)[:5]))
    assert all(r.decision == "review" for r in results if r.p_defect < 1.0)
    assert any(r.decision == "review" for r in results)
    with pytest.raises(ValueError, match="review band"):
        Predictor.load(model_path, review_band=(0.8, 0.2))


def test_pipeline_reads_ahead_a_bounded_amount(model_path, synth_root, tmp_path):
    """A generator over many files is consumed a few batches ahead of the results, no more, and
    every input gets exactly one result in order, bad files included."""
    files = _files(synth_root)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    inputs = [str(bad) if i % 13 == 5 else files[i % len(files)] for i in range(300)]
    pulled = 0

    def source():
        nonlocal pulled
        for f in inputs:
            pulled += 1
            yield f

    predictor = Predictor.load(model_path)
    results = predictor.predict(source(), batch_size=16, prefetch=2)
    first = next(results)
    assert pulled <= 16 * 3 + 1  # the batch being judged and two decoding ahead
    rest = [first] + list(results)
    assert [r.source for r in rest] == inputs
    assert [i for i, r in enumerate(rest) if r.error] == [i for i in range(300) if i % 13 == 5]


def test_single_photo_path_matches_the_batch_path(model_path, synth_root, tmp_path):
    files = _files(synth_root)[:6]
    predictor = Predictor.load(model_path)
    batch = list(predictor.predict(files))
    single = [predictor.predict_one(f) for f in files]
    assert [(b.label, round(b.score, 6)) for b in batch] == [(s.label, round(s.score, 6)) for s in single]
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty" in predictor.predict_one(str(tmp_path / "empty.jpg")).error


@pytest.mark.parametrize("side", [8, 16, 31])
def test_a_photo_far_below_the_model_s_size_is_refused(model_path, side):
    import cv2
    predictor = Predictor.load(model_path)  # input 64 px: refused below 32
    png = cv2.imencode(".png", np.full((side, side), 128, np.uint8))[1].tobytes()
    for insp in (predictor.predict_one(png, name="thumb.png"), *predictor.predict([png], names=["thumb.png"])):
        assert insp.error_code == "too_small" and insp.source == "thumb.png" and "at least 32x32" in insp.error
    assert predictor.predict_one(cv2.imencode(".png", np.full((32, 32), 128, np.uint8))[1].tobytes()).judged


def test_the_bundled_model_refuses_thumbnails():
    import cv2
    predictor = Predictor.load()
    assert predictor.min_side == 80  # half its 160 px input (its training photos are 300 px)
    assert predictor.predict_one(cv2.imencode(".png", np.full((64, 64), 128, np.uint8))[1].tobytes()).error_code == "too_small"
