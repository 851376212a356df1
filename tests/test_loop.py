"""From the line back to training: parts settled by people become training photos, a new model
is trained on them pooled with the original photos, compared with the old one on the same
validation photos, registered and promoted; the station's next answer names the new model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_config
from fastapi.testclient import TestClient
from services import wait_for
from typer.testing import CliRunner

from castinspect.cli import app
from castinspect.evaluation.compare import compare_models
from castinspect.inference.predict import Predictor
from castinspect.station import registry
from castinspect.station.app import create_app
from castinspect.station.from_log import reviewed_dataset
from castinspect.station.log import InspectionLog

runner = CliRunner()


def photo(path: Path) -> dict:
    return {"file": (path.name, path.read_bytes(), "image/jpeg")}


@pytest.fixture
def reviewed_log(tmp_path, model_path, synth_root):
    """A station's log in which a person settled 24 parts under their true class."""
    log = InspectionLog.open(tmp_path / "line.db")
    parts = sorted((synth_root / "test" / "def_front").iterdir())[:12] + sorted((synth_root / "test" / "ok_front").iterdir())[:12]
    with TestClient(create_app(Predictor.load(model_path), log, store_images=True)) as c:
        for p in parts:
            body = c.post("/v1/inspect", files=photo(p)).json()
            decision = "defective" if p.parent.name == "def_front" else "ok"
            assert c.post(f"/v1/inspections/{body['id']}/disposition", json={"decision": decision}).status_code == 200
        # a second thought on one part: the last disposition is the one that counts
        first = log.page(limit=1, offset=23)[0][0]
        c.post(f"/v1/inspections/{first['id']}/disposition", json={"decision": "ok"})
        c.post(f"/v1/inspections/{first['id']}/disposition", json={"decision": "defective"})
    yield log, parts
    log.close()


def test_reviewed_photos_become_a_dataset(reviewed_log, trained_run, tmp_path):
    log, parts = reviewed_log
    result = reviewed_dataset(log, tmp_path / "reviewed", pool_with=trained_run[0].run_dir)
    assert result["photos"] == 24 and result["labels"] == {"def_front": 12, "ok_front": 12}
    by_content = {p.read_bytes(): p.parent.name for p in parts}
    for f in (tmp_path / "reviewed").glob("*/*.jpg"):
        assert by_content[f.read_bytes()] == f.parent.name  # every photo under the label confirmed
    assert result["pooled_added"] == 24 and result["left_out_as_copies_of_validation"] == 0
    pooled = (tmp_path / "reviewed" / "pooled.csv").read_text().splitlines()
    original = (trained_run[0].run_dir / "split.csv").read_text().splitlines()
    assert len(pooled) == len(original) + 24 and sum(",val," in r for r in pooled) == sum(",val," in r for r in original)

    # a photo that is also a validation photo would make the validation lie: left out
    val_photo = next(r.split(",")[0] for r in original[1:] if ",val," in r)
    manifest = tmp_path / "with_val.csv"
    manifest.write_text("path,label,split,group\n" + f"{val_photo},ok_front,val,\n" +
                        "".join(f"{p},{p.parent.name},train,\n" for p in parts))
    c = TestClient(create_app(Predictor.load(), log, store_images=True))
    with c:
        body = c.post("/v1/inspect", files=photo(Path(val_photo))).json()
        c.post(f"/v1/inspections/{body['id']}/disposition", json={"decision": "ok"})
    again = reviewed_dataset(log, tmp_path / "again", pool_with=manifest)
    assert again["photos"] == 25 and again["left_out_as_copies_of_validation"] == 1


def test_retrain_compare_promote_and_the_next_answer_names_the_new_model(reviewed_log, trained_run, model_path,
                                                                         tmp_path):
    from castinspect.training.run import train_and_evaluate

    log, parts = reviewed_log
    data = reviewed_dataset(log, tmp_path / "reviewed", pool_with=trained_run[0].run_dir)
    run_dir = tmp_path / "run2"
    train_and_evaluate(tiny_config(6), data["pooled"], run_dir)
    new, old = Predictor.load(run_dir / "model.ckpt"), Predictor.load(model_path)
    assert new.model_id != old.model_id
    result = compare_models(new, old, run_dir)  # the run's own validation photos: the original ones
    assert result["split"] == "val" and result["new"]["n"] == result["old"]["n"] > 0
    assert result["differ"] == len(result["changed"]) >= result["new_right_old_wrong"] + result["old_right_new_wrong"]

    r = runner.invoke(app, ["compare", str(run_dir), str(model_path), str(run_dir), "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "c.json").read_text())["new"]["model"] == new.model_id

    station = create_app(old, log, follow={"every": 0.2})
    with TestClient(station) as c:
        assert c.post("/v1/inspect", files=photo(parts[0])).json()["model"] == old.model_id
        db = str(log.target.location)
        r = runner.invoke(app, ["model", "add", str(run_dir), "--db", db, "--by", "lead"])
        assert r.exit_code == 0 and new.model_id in r.output, r.output
        assert registry.get(log, new.model_id)["data_fingerprint"].startswith("split.csv:")
        r = runner.invoke(app, ["model", "promote", new.model_id, "--db", db, "--by", "lead"])
        assert r.exit_code == 0, r.output
        wait_for(lambda: c.get("/v1/model").json()["model"] == new.model_id, 10)
        body = c.post("/v1/inspect", files=photo(parts[1])).json()
        assert body["model"] == new.model_id and log.get(body["id"])["model"] == new.model_id
        assert "active" in runner.invoke(app, ["model", "list", "--db", db]).output
        r = runner.invoke(app, ["model", "promote", "nope", "--db", db])
        assert r.exit_code == 2 and "no model nope" in r.output
