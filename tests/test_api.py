"""The package's face: the README's Python example works as written."""

from __future__ import annotations

from conftest import tiny_config

import castinspect


def test_load_predict_evaluate_and_log(model_path, synth_root, tmp_path):
    predictor = castinspect.load_model(str(model_path), review_band=(0.4, 0.6))
    files = sorted(str(p) for p in synth_root.glob("test/*/*.jpeg"))[:5]
    one = predictor.predict_one(files[0], heatmap=True)
    assert one.judged and one.decision in ("ok", "defective", "review")
    assert one.heatmap.shape == (predictor.input_size,) * 2 and one.photo.ndim == 2
    many = list(predictor.predict(files))
    assert [i.source for i in many] == files and all(isinstance(i, castinspect.Inspection) for i in many)
    assert abs(many[0].p_defect - one.p_defect) < 1e-6
    result = castinspect.evaluate(predictor, str(synth_root / "test"))
    assert isinstance(result, castinspect.Evaluation) and result.metrics["n"] == 60
    with castinspect.InspectionLog.open(tmp_path / "line.db") as log:
        log.record(many)
        assert log.page(limit=10)[1] == 5


def test_train_through_the_face(synth_root, tmp_path):
    run, metrics = castinspect.train(str(synth_root), str(tmp_path / "run"), config=tiny_config(1), seed=2,
                                     search=False)
    assert (tmp_path / "run" / "model.ckpt").is_file() and run.checkpoint.config.train.seed == 2
    assert metrics["provenance"]["castinspect"] == castinspect.__version__ and "test" in metrics
