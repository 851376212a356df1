"""Several defect types: every class but the good-part one is a defect."""

import json

import cv2
import numpy as np
import pytest
from conftest import make_casting, tiny_config

from castinspect.cli import app
from castinspect.core.decision import resolve_ok_index
from castinspect.inference.predict import Predictor
from castinspect.training.run import train_and_evaluate


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    rng = np.random.default_rng(1)
    for split, n in (("train", 120), ("test", 20)):
        for cls, defect in (("blowhole", "blob"), ("ok", None), ("scratch", "scratch")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(folder / f"{i}.png"), make_casting(rng, defect))
    run_dir = tmp_path_factory.mktemp("three_run")
    result, metrics = train_and_evaluate(tiny_config(45), root, run_dir)
    return root, run_dir, metrics


def test_three_classes_train_and_predict(three_class_run):
    root, run_dir, metrics = three_class_run
    assert metrics["test"]["classes"] == ["blowhole", "ok", "scratch"]
    # chance is 1/3; telling OK from defective but guessing the type would give about 0.67
    assert metrics["test"]["accuracy"] >= 0.75
    assert metrics["test"]["defect_recall"] >= 0.9
    predictor = Predictor.load(run_dir / "model.ckpt")
    insp = predictor.predict_one(next((root / "test" / "scratch").iterdir()))
    assert set(insp.scores) == {"blowhole", "ok", "scratch"}
    assert insp.score == pytest.approx(insp.scores[insp.label])
    assert insp.p_defect == pytest.approx(1 - insp.scores["ok"], abs=1e-6)


def test_cli_json_has_per_class_scores(three_class_run):
    from typer.testing import CliRunner

    root, run_dir, _ = three_class_run
    r = CliRunner().invoke(app, ["predict", str(root / "test" / "ok"), "--model", str(run_dir / "model.ckpt"),
                                 "--format", "json"])
    items = json.loads(r.stdout)
    assert len(items) == 20 and all(set(i["scores"]) == {"blowhole", "ok", "scratch"} for i in items)


def test_ok_class_resolution():
    assert resolve_ok_index(["def_front", "ok_front"], "def_front", None) == 1
    assert resolve_ok_index(["bad", "good"], "bad", None) == 1
    assert resolve_ok_index(["a", "b", "c"], None, "b") == 1
    with pytest.raises(ValueError, match="good-part class"):
        resolve_ok_index(["a", "b", "c"], "def_front", None)
