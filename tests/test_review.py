"""People settle parts: the review queue, append-only dispositions with who and when, counts on
final decisions, named tokens with two roles; on SQLite and a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from castinspect.inference.predict import Predictor
from castinspect.station import registry
from castinspect.station.access import Tokens, add_token, read_tokens
from castinspect.station.app import create_app
from castinspect.station.log import InspectionLog
from castinspect.station.review import history

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "castinspect" / "assets" / "samples"
DEF = sorted((SAMPLES / "def_front").iterdir())
OK = sorted((SAMPLES / "ok_front").iterdir())


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    # every part goes to a person: the queue fills with whatever is uploaded
    return Predictor.load(review_band=(0.0, 1.0))


@pytest.fixture
def people(tmp_path):
    file = tmp_path / "tokens.txt"
    return file, add_token(file, "anna", "operator"), add_token(file, "lead", "engineer")


def upload(client, path: Path, token: str) -> dict:
    r = client.post("/v1/inspect", files={"file": (path.name, path.read_bytes(), "image/jpeg")},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_tokens_file_stores_hashes_and_refuses_bad_lines(people, tmp_path):
    file, anna, lead = people
    text = file.read_text()
    assert anna not in text and lead not in text and "anna operator sha256:" in text
    tokens = Tokens.of(file=file)
    assert tokens.who(anna).name == "anna" and tokens.who(lead).role == "engineer" and tokens.who("x" * 20) is None
    with pytest.raises(ValueError, match="has a token already"):
        add_token(file, "anna", "engineer")
    bad = tmp_path / "bad.txt"
    bad.write_text("anna boss sha256:" + "0" * 64 + "\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: expected"):
        read_tokens(bad)


def test_dispositions_settle_the_queue_and_move_the_counts(db_url, predictor, people):
    file, anna, lead = people
    with InspectionLog.open(db_url) as log, \
            TestClient(create_app(predictor, log, tokens=Tokens.of(file=file), store_images=True)) as c:
        auth = {"Authorization": f"Bearer {anna}"}
        assert c.get("/v1/me", headers=auth).json() == {"name": "anna", "role": "operator"}
        assert c.get("/v1/model", headers=auth).json()["review_band"] == [0.0, 1.0]
        parts = [upload(c, p, anna) for p in OK[:3]]  # p(defect) = 1.0 of the DEF samples lies above any band
        assert {p["decision"] for p in parts} == {"review"}
        queue = c.get("/v1/review", headers=auth).json()
        assert queue["total"] == 3 and [i["id"] for i in queue["items"]] == [p["id"] for p in parts]  # oldest first
        day = c.get("/v1/stats", headers=auth).json()["last_24h"]
        assert (day["awaiting_review"], day["decided"], day["reject_rate"]) == (3, 0, None)

        r = c.post(f"/v1/inspections/{parts[0]['id']}/disposition", json={"decision": "defective"}, headers=auth)
        assert r.status_code == 200, r.text
        d = r.json()
        assert (d["who"], d["role"], d["decision"], d["label"]) == ("anna", "operator", "defective", "def_front")
        assert d["time"] and [h["id"] for h in d["history"]] == [d["id"]]
        c.post(f"/v1/inspections/{parts[2]['id']}/disposition", json={"decision": "ok"}, headers=auth)
        day = c.get("/v1/stats", headers=auth).json()["last_24h"]
        assert (day["ok"], day["defective"], day["awaiting_review"], day["reject_rate"]) == (1, 1, 1, 0.5)
        assert day["model"]["review"] == 3  # the model's own decisions stay as they were
        assert c.get("/v1/review", headers=auth).json()["total"] == 1

        # a second disposition supersedes the first in the counts and erases nothing
        second = c.post(f"/v1/inspections/{parts[0]['id']}/disposition",
                        json={"decision": "ok", "note": "a shadow, not a blowhole"},
                        headers={"Authorization": f"Bearer {lead}"}).json()
        assert [h["decision"] for h in second["history"]] == ["defective", "ok"]
        assert [h["who"] for h in history(log, parts[0]["id"])] == ["anna", "lead"]
        day = c.get("/v1/stats", headers=auth).json()["all"]
        assert (day["ok"], day["defective"], day["awaiting_review"], day["total"]) == (2, 0, 1, 3)
        row = log.get(parts[0]["id"])
        assert row["decision"] == "review" and row["disposition"] == "ok" and row["awaiting"] is False

        # the stored photo with the model's heatmap, for the queue
        r = c.get(f"/v1/inspections/{parts[1]['id']}/heatmap", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape[2] == 3

        # mistakes get a clear answer and change nothing
        assert c.post("/v1/inspections/nope/disposition", json={"decision": "ok"}, headers=auth).status_code == 404
        r = c.post(f"/v1/inspections/{parts[1]['id']}/disposition", json={"decision": "defective", "label": "ok_front"},
                   headers=auth)
        assert r.status_code == 422 and "defect classes" in r.json()["detail"]
        assert c.post(f"/v1/inspections/{parts[1]['id']}/disposition", json={"decision": "maybe"},
                      headers=auth).status_code == 422
        assert c.post(f"/v1/inspections/{parts[1]['id']}/disposition", json={"decision": "ok"}).status_code == 401
        assert c.get("/v1/review", headers=auth).json()["total"] == 1


def test_an_operator_cannot_promote_models(tmp_path, predictor, people, model_path):
    file, anna, lead = people
    with InspectionLog.open(tmp_path / "log.db") as log:
        entry = registry.register(log, model_path, "lead")
        with TestClient(create_app(predictor, log, tokens=Tokens.of(file=file))) as c:
            r = c.post(f"/v1/models/{entry['id']}/promote", headers={"Authorization": f"Bearer {anna}"})
            assert r.status_code == 403 and "engineer" in r.json()["detail"]
            assert registry.active(log) is None
            r = c.post("/v1/models/nope/promote", headers={"Authorization": f"Bearer {lead}"})
            assert r.status_code == 404
            r = c.post(f"/v1/models/{entry['id']}/promote", headers={"Authorization": f"Bearer {lead}"})
            assert r.status_code == 200 and r.json()["active"] is True
            assert registry.promotions(log)[-1]["who"] == "lead"
            listing = c.get("/v1/models", headers={"Authorization": f"Bearer {anna}"}).json()
            assert listing["active"] == entry["id"] and listing["items"][0]["classes"] == ["def_front", "ok_front"]


def test_a_migrated_log_keeps_its_queue_and_counts(tmp_path):
    """Rows written before dispositions existed: their review parts are in the queue, and the
    final counters start from the model's decisions."""
    from castinspect.core.records import Inspection
    from castinspect.station import database
    from castinspect.station.counts import final_counts
    from castinspect.station.review import queue

    path = tmp_path / "old.db"
    db = database.Database(database.Target("sqlite", str(path)))
    saved = database.MIGRATIONS
    try:
        database.MIGRATIONS, database.SCHEMA_VERSION = saved[:6], 6
        database.migrate(db)
    finally:
        database.MIGRATIONS, database.SCHEMA_VERSION = saved, len(saved)
    for i, decision in enumerate(("review", "ok", "defective")):
        insp = Inspection(source=f"p{i}.jpg", label="def_front", score=0.5, p_defect=0.5, decision=decision,
                          threshold=0.5, model="m1")
        db.execute("INSERT INTO inspections (id, time, source, label, score, p_defect, decision, threshold, model, "
                   "familiar) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (insp.id, insp.time, insp.source, insp.label, insp.score, insp.p_defect, insp.decision,
                    insp.threshold, insp.model, 0 if decision == "ok" else 1))
    db.close()
    with InspectionLog.open(path) as log:
        items, total = queue(log)
        assert total == 2 and {i["decision"] for i in items} == {"review", "ok"}  # the unfamiliar ok part too
        assert final_counts(log) == {"ok": 1, "defective": 1, "review": 1}
