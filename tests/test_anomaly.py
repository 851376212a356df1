"""The anomaly model (train --mode anomaly): fitted on good photos alone, judged through the one
Predictor, its map pointing at a planted defect, its exported graph judging as the checkpoint."""

from __future__ import annotations

import base64
import csv
import io
import json

import cv2
import numpy as np
import pytest
import torch
from conftest import make_casting
from typer.testing import CliRunner

from castinspect.cli import app
from castinspect.core.config import Config
from castinspect.core.io import load_for_model
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import load_checkpoint
from castinspect.models.network import to_input
from castinspect.models.patchcore import greedy_coreset
from castinspect.training.anomaly import fit_anomaly

runner = CliRunner()


def anomaly_config() -> Config:
    cfg = Config()
    cfg.anomaly.input_size, cfg.anomaly.normalize = 96, "imagenet"
    cfg.anomaly.bank = 800
    return cfg


@pytest.fixture(scope="module")
def anomaly_run(synth_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("anomaly")
    result, metrics = fit_anomaly(anomaly_config(), synth_root, run_dir)
    return run_dir, result, metrics


def test_the_coreset_covers_every_cluster_with_one_pick_each():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0] * 8, [50.0] * 8, [-50.0] + [0.0] * 7])
    points = torch.cat([c + torch.randn(200, 8, generator=g) for c in centres])
    picked = greedy_coreset(points, 3, projection=64)
    assert sorted(int(i) // 200 for i in picked) == [0, 1, 2]
    assert len(greedy_coreset(points, 1000)) == len(points)


def test_only_good_photos_are_fitted_and_defects_judged_on_validation(anomaly_run):
    run_dir, result, metrics = anomaly_run
    with open(run_dir / "split.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["label"] for r in rows if r["split"] == "train"} == {"ok_front"}
    assert {r["label"] for r in rows if r["split"] == "val"} == {"ok_front", "def_front"}
    ckpt = result.checkpoint
    assert ckpt.classes == ["ok_front", "def_front"] and ckpt.ok_index == 0 and ckpt.threshold == 0.5
    assert ckpt.info["mode"] == "anomaly" and ckpt.info["data"]["defect_photos_not_fitted"] > 0
    assert len(ckpt.state_dict["bank"]) == 800
    # synthetic blobs and scratches on smooth parts: an easy case the model must get
    assert metrics["validation"]["roc_auc"] >= 0.95 and metrics["test"]["roc_auc"] >= 0.95


def with_corner_mark(rng: np.random.Generator) -> bytes:
    photo = make_casting(rng, None)
    cv2.circle(photo, (6, 6), 3, 100, -1)  # a faint mark on the background, far outside the part
    return cv2.imencode(".png", photo)[1].tobytes()


def test_good_photos_left_out_of_the_bank_measure_the_spread_per_place(synth_root, tmp_path, anomaly_run):
    cfg = anomaly_config()
    cfg.anomaly.fit_photos = 60  # of ~127 good training photos: the others measure the spread
    cfg.anomaly.part_only = False  # every place scored
    cfg.anomaly.top_share = 0  # the worst patch alone: a one-patch mark is not averaged away
    result, metrics = fit_anomaly(cfg, synth_root, tmp_path / "run")
    state = result.checkpoint.state_dict
    assert result.checkpoint.info["anomaly"]["place_photos"] >= 30 and state["scored"].numel() == 0
    assert state["place_mean"].shape == state["place_std"].shape == (12, 12)  # 96 px at stride 8
    assert float(state["place_std"].min()) > 0
    assert metrics["validation"]["roc_auc"] >= 0.95
    # a mark on the background: every place scored rejects it; the part's places alone pass it
    everywhere, part_only = Predictor(result.checkpoint), Predictor(anomaly_run[1].checkpoint)
    rng = np.random.default_rng(5)
    marked = [with_corner_mark(rng) for _ in range(8)]
    assert sum(everywhere.predict_one(x).p_defect >= 0.5 for x in marked) >= 7
    assert sum(part_only.predict_one(x).p_defect < 0.5 for x in marked) >= 7


def test_only_the_places_where_good_photos_show_the_part_are_scored(anomaly_run):
    info, state = anomaly_run[1].checkpoint.info["anomaly"], anomaly_run[1].checkpoint.state_dict
    scored = state["scored"].numpy()
    assert scored.shape == (12, 12) and info["places_scored"] == int(scored.sum())
    assert scored[0, 0] == scored[-1, -1] == 0 and scored[6, 6] == 1  # corners are background, the centre part
    assert state["place_mean"].numel() == 0  # no spreads where the part's places are scored


def test_a_photos_score_is_the_mean_of_its_worst_share_of_the_places_scored(anomaly_run, synth_root):
    ckpt = anomaly_run[1].checkpoint
    info, net = ckpt.info["anomaly"], ckpt.build_network()
    assert info["top_k"] == int(net.top_k) == round(0.1 * info["places_scored"]) > 1
    photos = sorted((synth_root / "test" / "def_front").glob("*.jpeg"))[:4]
    x = to_input(torch.as_tensor(np.stack([load_for_model(p, ckpt.config.model.input_size) for p in photos])))
    with torch.no_grad():
        feats = net.forward_features(x)
        departures = net.departures(feats).flatten(1)
        worst = departures.sort(1, descending=True).values[:, :info["top_k"]].mean(1)
        assert torch.allclose(net.scores(feats), worst)
        # a model fitted before the score averaged (no top_k in its checkpoint) keeps the worst patch
        old = {k: v for k, v in ckpt.state_dict.items() if k != "top_k"}
        net.load_state_dict(old)
        assert int(net.top_k) == 1 and torch.allclose(net.scores(feats), departures.amax(1))


def test_the_threshold_passes_the_stated_share_of_validations_good_photos(anomaly_run):
    run_dir, result, _ = anomaly_run
    with open(run_dir / "split.csv") as f:
        good = [r["path"] for r in csv.DictReader(f) if r["split"] == "val" and r["label"] == "ok_front"]
    records = Predictor(result.checkpoint).predict(good)
    rejected = sum(r.p_defect >= 0.5 for r in records)
    assert rejected <= max(1, int(np.ceil(0.01 * len(good))))  # anomaly.false_reject 1%


def test_the_map_peaks_on_a_planted_defect(anomaly_run):
    _, result, _ = anomaly_run
    predictor = Predictor(result.checkpoint)
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(6):
        photo = make_casting(rng, None)
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(15, 28)
        p = (int(48 + dist * np.cos(angle)), int(48 + dist * np.sin(angle)))
        cv2.circle(photo, p, 5, 30, -1)
        heat = predictor.heatmaps(photo[None])[0]
        peak = np.unravel_index(int(heat.argmax()), heat.shape)
        hits += np.hypot(peak[1] - p[0], peak[0] - p[1]) <= 10
        assert predictor.predict_one(cv2.imencode(".png", photo)[1].tobytes()).decision != "ok"
    assert hits >= 5


def test_cli_predict_explain_and_an_onnx_export_that_judges_alike(anomaly_run, synth_root, tmp_path):
    run_dir, result, _ = anomaly_run
    photos = sorted((synth_root / "test" / "def_front").glob("*.jpeg"))[:4] + \
        sorted((synth_root / "test" / "ok_front").glob("*.jpeg"))[:4]
    r = runner.invoke(app, ["predict", *map(str, photos), "--model", str(run_dir / "model.ckpt"), "--format", "json"])
    assert r.exit_code == 0, r.output
    records = json.loads(r.stdout)
    assert {rec["label"] for rec in records[:4]} == {"def_front"}
    r = runner.invoke(app, ["explain", str(photos[0]), "--model", str(run_dir / "model.ckpt"),
                            "--out", str(tmp_path / "maps")])
    assert r.exit_code == 0, r.output
    assert list((tmp_path / "maps").glob("*.png"))
    r = runner.invoke(app, ["export", str(run_dir / "model.ckpt"), "--onnx", str(tmp_path / "anomaly.onnx")])
    assert r.exit_code == 0, r.output
    onnx = list(Predictor.load(tmp_path / "anomaly.onnx").predict(photos))
    torch_ = list(Predictor(load_checkpoint(run_dir / "model.ckpt")).predict(photos))
    assert [a.decision for a in onnx] == [b.decision for b in torch_]
    assert np.allclose([a.p_defect for a in onnx], [b.p_defect for b in torch_], atol=1e-3)
    assert [a.familiarity is None for a in onnx] == [False] * len(photos)


def test_train_mode_anomaly_from_the_command_line(synth_root, tmp_path):
    cfg = anomaly_config()
    cfg.anomaly.normalize = "auto"  # both normalisations fitted, the better on validation kept
    cfg.save(tmp_path / "anomaly.yaml")
    r = runner.invoke(app, ["train", str(synth_root), "--mode", "anomaly", "--out", str(tmp_path / "run"),
                            "--config", str(tmp_path / "anomaly.yaml")])
    assert r.exit_code == 0, r.output
    assert "anomaly model fitted" in r.output and (tmp_path / "run" / "report.html").exists()
    ckpt = load_checkpoint(tmp_path / "run" / "model.ckpt")
    tried = ckpt.info["anomaly"]["normalize_auc"]
    assert set(tried) == {"imagenet", "per_image"} and "kept" in r.output
    kept = max(tried, key=tried.get)
    assert ckpt.config.model.normalize == kept == Config.load(tmp_path / "run" / "config.yaml").model.normalize
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["validation"]["roc_auc"] == pytest.approx(tried[kept], abs=1e-3)  # (p saturates: ties)
    r = runner.invoke(app, ["train", str(synth_root), "--mode", "anomaly", "--backbone", "castnet"])
    assert r.exit_code != 0 and "do not apply" in r.output


def grid_defect(rng: np.random.Generator) -> bytes:
    """A kind of defect the tiny classifier never saw (it learnt dark blobs and scratches): a
    patch of bright parallel lines on the part."""
    photo = make_casting(rng, None)
    angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(20, 30)
    x, y = int(48 + dist * np.cos(angle)), int(48 + dist * np.sin(angle))
    for k in range(-12, 13, 4):
        cv2.line(photo, (x + k, y - 12), (x + k, y + 12), 200, 1)
    return cv2.imencode(".png", photo)[1].tobytes()


@pytest.fixture(scope="module")
def anomaly_at_64(synth_root, tmp_path_factory):
    cfg = anomaly_config()
    cfg.anomaly.input_size = 64  # the tiny classifier's input: both judge the same model input
    return fit_anomaly(cfg, synth_root, tmp_path_factory.mktemp("anomaly64"))[0]


def test_a_defect_kind_the_classifier_never_saw_is_caught_by_the_anomaly_model(model_path, anomaly_at_64, tmp_path):
    from fastapi.testclient import TestClient

    from castinspect.station.app import create_app
    from castinspect.station.log import InspectionLog

    classifier, anomaly = Predictor.load(model_path), Predictor(anomaly_at_64.checkpoint)
    both = Predictor.load(model_path, anomaly=anomaly)
    rng = np.random.default_rng(3)
    novel = [grid_defect(rng) for _ in range(12)]
    good = [cv2.imencode(".png", make_casting(rng, None))[1].tobytes() for _ in range(12)]
    alone = [classifier.predict_one(x).decision for x in novel]
    assert alone.count("ok") >= 4  # the classifier passes many of them: it never saw the kind
    judged = [both.predict_one(x) for x in novel]
    assert all(i.decision == "defective" for i in judged)
    assert all(i.anomaly is not None for i in judged)
    passed_by_classifier = [i for i, d in zip(judged, alone) if d == "ok"]
    assert all("anomalous" in i.reasons and i.label == "def_front" for i in passed_by_classifier)
    # on good parts as on any: a part passes only if both models pass it
    for x in good:
        alone_c, alone_a, paired = classifier.predict_one(x), anomaly.predict_one(x), both.predict_one(x)
        assert (paired.decision == "ok") == (alone_c.decision == "ok" and alone_a.decision == "ok")
        assert paired.p_defect == pytest.approx(alone_c.p_defect) and paired.anomaly == pytest.approx(alone_a.p_defect)

    with InspectionLog.open(tmp_path / "log.db") as log, TestClient(create_app(both, log)) as client:
        r = client.post("/v1/inspect", files={"file": ("novel.png", novel[alone.index("ok")], "image/png")})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["decision"] == "defective" and "anomalous" in answer["reasons"] and answer["anomaly"] >= 0.5
        row = log.get(answer["id"])
        assert row["anomaly"] == pytest.approx(answer["anomaly"]) and row["decision"] == "defective"
        # the Open Inference Protocol serves the anomaly model as a second model of its own size
        index = client.post("/v2/repository/index").json()
        assert [m["name"] for m in index] == ["castinspect", "castinspect-anomaly"]
        meta = client.get("/v2/models/castinspect-anomaly").json()
        s = anomaly.input_size
        assert meta["inputs"][0]["shape"] == [-1, s, s] and meta["parameters"]["model_id"] == anomaly.model_id
        photo = base64.b64encode(novel[alone.index("ok")]).decode()
        r = client.post("/v2/models/castinspect-anomaly/infer", json={"inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "data": [photo]}]})
        assert r.status_code == 200, r.text
        probs = r.json()["outputs"][0]["data"]
        assert 1 - probs[anomaly.ok_index] == pytest.approx(answer["anomaly"], abs=1e-5)

    # the command line's CSV carries both scores
    folder = tmp_path / "novel"
    folder.mkdir()
    for k, x in enumerate(novel):
        (folder / f"n{k:02d}.png").write_bytes(x)
    r = runner.invoke(app, ["predict", str(folder), "--model", str(model_path), "--anomaly-model",
                            str(anomaly_at_64.run_dir / "model.ckpt"), "--format", "csv"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 12 and all(row["decision"] == "defective" for row in rows)
    assert [float(row["anomaly"]) for row in rows] == pytest.approx([i.anomaly for i in judged], abs=1e-4)


def test_an_anomaly_model_of_another_input_size_judges_the_photo_at_its_own(model_path, anomaly_run, synth_root,
                                                                          tmp_path):
    anomaly = Predictor(anomaly_run[1].checkpoint)  # 96 px beside the 64 px classifier
    both = Predictor.load(model_path, anomaly=anomaly)
    photos = sorted((synth_root / "test" / "def_front").glob("*.jpeg"))[:3] + \
        sorted((synth_root / "test" / "ok_front").glob("*.jpeg"))[:3]
    for photo, paired in zip(photos, both.predict([str(p) for p in photos])):
        alone = anomaly.predict_one(str(photo))
        assert paired.anomaly == pytest.approx(alone.p_defect, abs=1e-5)
    for photo in photos:  # the map of whichever model rejected it, on the classifier's input
        assert both.predict_one(str(photo), heatmap=True).heatmap.shape == (both.input_size, both.input_size)
    r = runner.invoke(app, ["predict", *map(str, photos), "--model", str(model_path), "--anomaly-model",
                            str(anomaly_run[0] / "model.ckpt"), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert [rec["anomaly"] for rec in json.loads(r.stdout)] == pytest.approx(
        [i.anomaly for i in both.predict([str(p) for p in photos])], abs=1e-5)
    anomaly.locate = True  # a model that crops the photo otherwise: its map would lie elsewhere
    with pytest.raises(ValueError, match="localisation"):
        Predictor.load(model_path, anomaly=anomaly)


def test_a_folder_of_good_photos_with_no_classes_is_enough(tmp_path):
    rng = np.random.default_rng(11)
    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(60):
        cv2.imwrite(str(folder / f"part{i:03d}.png"), make_casting(rng, None))
    result, metrics = fit_anomaly(anomaly_config(), folder, tmp_path / "run")
    assert result.checkpoint.classes == ["good", "anomalous"]
    assert metrics["validation"]["false_rejects"] <= 1
    photo = make_casting(rng, None)
    cv2.circle(photo, (48, 30), 6, 30, -1)
    judged = Predictor(result.checkpoint).predict_one(cv2.imencode(".png", photo)[1].tobytes())
    assert judged.label == "anomalous" and judged.decision != "ok"
