"""The bundled default model: the demo, predict with no --model, and the real test split."""

import json

import pytest
from conftest import REAL_DATA, real_data_available
from typer.testing import CliRunner

from castinspect.cli import app
from castinspect.inference.predict import Predictor
from castinspect.lab.demo import run_demo, sample_paths
from castinspect.models.checkpoint import bundled_model_path

runner = CliRunner()


def test_bundled_model_is_small_and_documented():
    # EfficientNet-Lite0: 3.4 M parameters; the familiarity bank: 500 embeddings in half precision
    assert bundled_model_path().stat().st_size < 17_000_000
    predictor = Predictor.load()
    assert predictor.classes == ["def_front", "ok_front"]
    assert "metrics" in predictor.checkpoint.info


def test_demo_judges_the_samples(tmp_path):
    results, page = run_demo(tmp_path)
    assert len(results) == len(sample_paths()) >= 6
    assert all(r.error is None for r in results)
    # The samples are real photos the bundled model should get right.
    assert all(r.label == p.parent.name for r, p in zip(results, sample_paths()))
    text = page.read_text()
    verdicts = text.split("<h2>Every verdict</h2>", 1)[1]
    assert verdicts.count("<figure>") == len(results) and text.count("data:image/png") == len(results) + 1
    assert "The least certain one" in text and "castinspect train" in text  # one borderline case, next steps


def test_predict_without_model_uses_bundled():
    r = runner.invoke(app, ["predict", str(sample_paths()[0]), "--format", "json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)[0]["label"] == "def_front"


@pytest.mark.slow
@pytest.mark.skipif(not real_data_available(), reason="the casting dataset is not beside the project")
def test_bundled_model_on_real_test_split():
    from castinspect.evaluation.evaluate import evaluate

    predictor = Predictor.load()
    result = evaluate(predictor, REAL_DATA / "test")
    m = result.metrics
    assert m["n"] == 715 and not result.errors
    # Golden check: the numbers recorded when the model was bundled must not drift.
    recorded = predictor.checkpoint.info["metrics"]["test"]
    for key in ("errors", "escapes", "false_rejects"):
        assert m[key] == recorded[key], key
    assert m["accuracy"] >= 0.95  # far above chance: a broken model or preprocessing fails here


def test_bundled_model_carries_its_training_curves(tmp_path):
    import numpy as np

    from castinspect.data.datasets import ImageSet
    from castinspect.evaluation.evaluate import evaluate
    from castinspect.evaluation.report import write_report

    predictor = Predictor.load()
    assert len(predictor.checkpoint.info["history"]) == predictor.checkpoint.info["epochs_run"]
    paths = [str(p) for p in sample_paths()]
    labels = np.array([predictor.classes.index(p.parent.name) for p in sample_paths()])
    result = evaluate(predictor, ImageSet(paths, labels, predictor.classes))
    html = write_report(tmp_path / "r.html", [result], predictor).read_text()
    assert "Training curves" in html and "Random photos" in html
