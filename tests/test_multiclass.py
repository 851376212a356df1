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


def write_classes(root, classes: dict, n_train: int, rng, n_test: int = 20):
    """ROOT/{train,test}/<class>/ of synthetic castings, each class with its kind of defect."""
    for split, n in (("train", n_train), ("test", n_test)):
        for cls, defect in classes.items():
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(folder / f"{i}.png"), make_casting(rng, defect))
    return root


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory):
    root = write_classes(tmp_path_factory.mktemp("three"), {"blowhole": "blob", "ok": None, "scratch": "scratch"},
                         120, np.random.default_rng(1))
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
    assert resolve_ok_index(["a", "b", "c"], "def_front", None) is None  # no OK class: defect types
    assert resolve_ok_index(["ok_front", "def_front"], "def_front", "none") is None
    with pytest.raises(ValueError, match="good-part class"):
        resolve_ok_index(["ok_a", "ok_b", "c"], "def_front", "auto")
    with pytest.raises(ValueError, match="not among"):
        resolve_ok_index(["a", "b"], None, "ok")


@pytest.fixture(scope="module")
def types_run(tmp_path_factory):
    """Defect types only, as NEU-DET has them, no OK class: blowholes, and a surface type that
    leaves no dark mark (a tiny CNN trained from scratch for seconds tells blobs from scratches
    only for some seeds; this pair it learns for every seed tried)."""
    root = write_classes(tmp_path_factory.mktemp("types"), {"blowhole": "blob", "scale": None},
                         100, np.random.default_rng(4))
    run_dir = tmp_path_factory.mktemp("types_run")
    result, metrics = train_and_evaluate(tiny_config(30), root, run_dir)
    return root, run_dir, result, metrics


def test_a_dataset_without_an_ok_class_classifies_the_type(types_run, tmp_path):
    root, run_dir, result, metrics = types_run
    assert result.checkpoint.ok_index is None
    test = metrics["test"]
    assert test["task"] == "defect types" and test["threshold"] is None and "escapes" not in test
    assert test["accuracy"] >= 0.8 and test["confusion_matrix"] and set(test["per_class"]) == {"blowhole", "scale"}
    predictor = Predictor.load(run_dir / "model.ckpt")
    assert predictor.ok_index is None and predictor.threshold is None
    insp = predictor.predict_one(next((root / "test" / "scale").iterdir()))
    assert insp.label in ("blowhole", "scale") and insp.decision == "defective"
    assert insp.p_defect is None and insp.threshold is None and insp.score == pytest.approx(insp.scores[insp.label])
    with pytest.raises(ValueError, match="no OK class"):
        Predictor.load(run_dir / "model.ckpt", threshold=0.3)
    assert "no OK class" in (run_dir / "report.html").read_text()
    from typer.testing import CliRunner
    runner = CliRunner()
    info = json.loads(runner.invoke(app, ["info", str(run_dir / "model.ckpt")]).stdout)
    assert info["ok_class"] is None and info["threshold"] is None and "no OK class" in info["task"]
    r = runner.invoke(app, ["evaluate", str(root / "test"), "--model", str(run_dir / "model.ckpt"),
                            "--robustness", "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["threshold"] is None and m["evaluation"]["task"] == "defect types"
    assert m["robustness_summary"]["photometric_escapes"] == 0
    r = runner.invoke(app, ["predict", str(root / "test" / "blowhole"), "--model", str(run_dir / "model.ckpt"),
                            "--format", "json"])
    items = json.loads(r.stdout)
    assert len(items) == 20 and all(i["p_defect"] is None and i["decision"] == "defective" for i in items)


def test_the_station_serves_a_defect_type_model(types_run, db_url):
    """Every part is defective; the record and the answer name the type, without a threshold."""
    from fastapi.testclient import TestClient

    from castinspect.station.app import create_app
    from castinspect.station.log import InspectionLog

    root, run_dir, _, _ = types_run
    photo = next((root / "test" / "scale").iterdir())
    with InspectionLog.open(db_url) as log, TestClient(create_app(Predictor.load(run_dir / "model.ckpt"), log)) as c:
        model = c.get("/v1/model").json()
        assert model["task"] == "defect types" and model["ok_class"] is None and model["threshold"] is None
        body = c.post("/v1/inspect?heatmap=1", files={"file": (photo.name, photo.read_bytes(), "image/png")}).json()
        assert body["decision"] == "defective" and body["label"] in ("blowhole", "scale")
        assert body["p_defect"] is None and body["threshold"] is None and body["heatmap_png"]
        row = log.get(body["id"])
        assert row["label"] == body["label"] and row["threshold"] is None and set(row["scores"]) == {"blowhole", "scale"}
        assert c.get("/v1/stats").json()["last_24h"]["labels"] == {body["label"]: 1}


def test_the_operator_page_shows_the_type(types_run, tmp_path):
    """In a real Chromium: the verdict is the type, the counters count types, no threshold."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from services import ThreadedServer, chromium_driver

    from castinspect.station.app import create_app
    from castinspect.station.log import InspectionLog

    root, run_dir, _, _ = types_run
    with InspectionLog.open(tmp_path / "log.db") as log:
        server = ThreadedServer(create_app(Predictor.load(run_dir / "model.ckpt"), log))
        driver = chromium_driver()
        try:
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: "defect types" in d.find_element(By.ID, "model").text)
            assert "threshold" not in driver.find_element(By.ID, "model").text
            counters = driver.find_elements(By.CSS_SELECTOR, "#counters .counter")
            assert [c.text.split("\n")[0] for c in counters] == ["blowhole", "scale"]
            driver.find_element(By.ID, "file-input").send_keys(str(next((root / "test" / "blowhole").iterdir())))
            verdict = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .verdict"))[0]
            (row,), _ = log.page()
            assert verdict.text == row["label"] and "defective" in verdict.get_attribute("class")
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recent tbody tr")) == 1)
            cell = driver.find_elements(By.CSS_SELECTOR, "#recent tbody td")[3].text
            assert cell.startswith(row["label"] + " ")
            wait.until(lambda d: sum(int(c.text.split("\n")[1]) for c in
                                     d.find_elements(By.CSS_SELECTOR, "#counters .counter")
                                     if c.text.split("\n")[1].isdigit()) == 1)
        finally:
            driver.quit()
            server.stop()

