"""The HTTP service with the real app in-process (FastAPI's TestClient), the bundled model and
real casting photos; the log on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from castinspect.inference.predict import Predictor
from castinspect.station.app import check_binding, create_app
from castinspect.station.log import InspectionLog
from castinspect.station.upload import upload_label as _label

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "castinspect" / "assets" / "samples"
DEF = sorted((SAMPLES / "def_front").iterdir())
OK = sorted((SAMPLES / "ok_front").iterdir())


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


@pytest.fixture
def log(tmp_path):
    with InspectionLog.open(tmp_path / "log.db") as log:
        yield log


@pytest.fixture
def client(predictor, log):
    with TestClient(create_app(predictor, log, max_upload=2 * 1024 * 1024, store_images=True)) as c:
        yield c


def upload(path: Path) -> dict:
    return {"file": (path.name, path.read_bytes(), "image/jpeg")}


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge frame (a decompression bomb's opening)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_inspect_answers_and_logs_the_judgement(client, predictor, log):
    r = client.post("/v1/inspect", files=upload(DEF[0]))
    assert r.status_code == 200
    body = r.json()
    for key in ("id", "label", "score", "decision", "threshold", "model", "latency_ms"):
        assert key in body
    assert body["model"] == predictor.model_id and body["threshold"] == predictor.threshold
    expected = predictor.predict_one(DEF[0])  # the same Predictor path as the CLI
    assert body["label"] == expected.label and body["p_defect"] == pytest.approx(expected.p_defect, abs=1e-6)
    row = log.get(body["id"])  # committed before the answer came back
    assert row["decision"] == body["decision"] and row["source"] == DEF[0].name
    assert client.get(f"/v1/inspections/{body['id']}").json()["id"] == body["id"]


def test_heatmap_is_a_png_overlay(client):
    body = client.post("/v1/inspect?heatmap=1", files=upload(DEF[1])).json()
    img = cv2.imdecode(np.frombuffer(base64.b64decode(body["heatmap_png"]), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (300, 644, 3)  # the photo, its overlay beside it, the colour scale
    assert "heatmap_png" not in client.post("/v1/inspect", files=upload(DEF[1])).json()


def test_stored_image_comes_back_unchanged(client):
    body = client.post("/v1/inspect", files=upload(OK[0])).json()
    r = client.get(f"/v1/inspections/{body['id']}/image")
    assert r.status_code == 200 and r.content == OK[0].read_bytes() and r.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("files, status, words", [
    (None, 422, "file"),
    ({"file": ("e.jpg", b"", "image/jpeg")}, 400, "empty"),
    ({"file": ("notes.jpg", b"hello, not a photo", "image/jpeg")}, 415, "not an image"),
    ({"file": ("cut.jpeg", DEF[0].read_bytes()[:600], "image/jpeg")}, 422, "cut.jpeg"),
    ({"file": ("bomb.png", png_claiming(100_000, 100_000), "image/png")}, 422, "dimensions too large"),
    ({"file": ("big.jpeg", b"\xff\xd8\xff" + b"\0" * (3 * 1024 * 1024), "image/jpeg")}, 413, "larger than"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_goes_on(client, log, files, status, words):
    r = client.post("/v1/inspect", files=files) if files else client.post("/v1/inspect")
    assert r.status_code == status
    detail = r.json()["detail"]
    assert words in (detail if isinstance(detail, str) else str(detail))
    assert log.page()[1] == 0  # nothing judged, nothing logged
    assert client.post("/v1/inspect", files=upload(OK[1])).status_code == 200  # still serving


def test_a_streamed_body_past_the_limit_is_refused(client):
    """No Content-Length to go by (chunked upload): the limit is applied as the body streams in."""
    boundary = "xyz"
    def body():
        yield f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n".encode()
        for _ in range(40):
            yield b"\0" * (128 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()
    r = client.post("/v1/inspect", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413
    assert client.get("/healthz").status_code == 200


def test_batch_judges_the_good_and_reports_the_bad(client, log):
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (DEF[0], OK[0])]
    files.insert(1, ("files", ("broken.jpeg", b"\xff\xd8\xff\xe0broken", "image/jpeg")))
    body = client.post("/v1/inspect/batch", files=files).json()
    assert body["judged"] == 2 and body["errors"] == 1
    assert [i["source"] for i in body["items"]] == [DEF[0].name, "broken.jpeg", OK[0].name]
    assert "broken.jpeg" in body["items"][1]["error"] or body["items"][1]["error"]
    ids = {i["id"] for i in body["items"] if "id" in i}
    rows, total = log.page()
    assert total == 2 and {r["id"] for r in rows} == ids


def test_listing_filters_and_stats(client):
    decisions = [client.post("/v1/inspect", files=upload(p)).json()["decision"] for p in DEF + OK]
    listing = client.get("/v1/inspections?limit=3").json()
    assert listing["total"] == len(decisions) and len(listing["items"]) == 3
    assert listing["items"][0]["source"] == OK[-1].name  # newest first
    n_def = decisions.count("defective")
    defective = client.get("/v1/inspections?decision=defective&limit=100").json()
    assert defective["total"] == n_def and all(i["decision"] == "defective" for i in defective["items"])
    assert client.get("/v1/inspections?decision=maybe").status_code == 422
    stats = client.get("/v1/stats").json()
    assert stats["last_hour"]["total"] == len(decisions) == stats["this_server"]["total"]
    n_review = decisions.count("review")  # awaiting a person: neither rejected nor passed
    assert stats["last_hour"]["awaiting_review"] == n_review
    assert stats["last_hour"]["reject_rate"] == pytest.approx(n_def / (len(decisions) - n_review))
    assert client.get("/v1/inspections/nope").status_code == 404


def test_metrics_in_prometheus_text_format(client):
    client.post("/v1/inspect", files=upload(DEF[0]))
    client.post("/v1/inspect", files={"file": ("x.jpg", b"nope", "image/jpeg")})
    text = client.get("/metrics").text
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines}
    assert sum(v for k, v in values.items() if k.startswith("castinspect_inspections_total")) == 1
    assert values["castinspect_rejected_photos_total"] == 1
    assert values['castinspect_judge_seconds_bucket{le="+Inf"}'] == 1 == values["castinspect_judge_seconds_count"]
    assert values['castinspect_http_responses_total{route="/v1/inspect",status="200"}'] == 1
    assert values['castinspect_http_responses_total{route="/v1/inspect",status="415"}'] == 1


def test_page_docs_and_health(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    assert "http://" not in page.text.replace("http://127.0.0.1", "") and "https://" not in page.text  # no CDN assets
    assert client.get("/openapi.json").json()["paths"]["/v1/inspect"]
    docs = client.get("/docs").text  # offline API reference: no CDN scripts
    assert "POST /v1/inspect" in docs and "GET /v1/inspections" in docs and "<script" not in docs
    # each route's answer has its shape, and a curl command to copy
    assert "answer: <a href='#shape-Judgement'>Judgement</a>" in docs and "id='shape-Judgement'" in docs
    assert "<td><code>p_defect</code></td><td>float?</td>" in docs
    assert 'curl -H &quot;Authorization: Bearer $CASTINSPECT_TOKEN&quot; -F file=@part.jpg http://testserver/v1/inspect' in docs
    assert "-d &#x27;{&quot;decision&quot;: &quot;ok&quot;}&#x27; http://testserver/v1/inspections/INSPECTION_ID/disposition" in docs
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["schema_version"] >= 2


def test_token_guards_everything_but_health_and_page(predictor, log):
    token = "s3cret-line-7-token"
    with TestClient(create_app(predictor, log, token=token)) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
        assert c.post("/v1/inspect", files=upload(OK[0])).status_code == 401
        assert c.get("/v1/inspections", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/inspections", headers={"Authorization": f"Basic {token}"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        ok = c.post("/v1/inspect", files=upload(OK[0]), headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        for scheme in ("bearer", "BEARER"):  # RFC 7235: the scheme is case-insensitive
            assert c.get("/v1/inspections", headers={"Authorization": f"{scheme} {token}"}).status_code == 200
    for short in ("", " ", "x", "short-token"):
        with pytest.raises(ValueError, match="at least 16 characters"):
            create_app(predictor, log, token=short)


def test_one_photo_per_request_and_none_too_small(predictor, log):
    with TestClient(create_app(predictor, log)) as c:
        two = [("file", ("a.jpeg", OK[0].read_bytes(), "image/jpeg")), ("file", ("b.jpeg", OK[1].read_bytes(), "image/jpeg"))]
        r = c.post("/v1/inspect", files=two)
        assert r.status_code == 422 and "one photo per request" in r.json()["detail"]
        thumb = cv2.imencode(".png", np.full((16, 16), 128, np.uint8))[1].tobytes()
        r = c.post("/v1/inspect", files={"file": ("thumb.png", thumb, "image/png")})
        assert r.status_code == 422 and "too small" in r.json()["detail"] and "thumb.png" in r.json()["detail"]
        assert log.page()[1] == 0  # neither recorded


def test_binding_beyond_loopback_needs_a_token():
    check_binding("127.0.0.1", None)
    check_binding("0.0.0.0", "a-long-enough-token")
    with pytest.raises(ValueError, match="token"):
        check_binding("0.0.0.0", None)


def test_upload_names_are_labels_not_paths():
    assert _label("../../etc/passwd") == "passwd"
    assert _label("C:\\photos\\part 7.jpg") == "part 7.jpg"
    assert _label(None) == "upload" and _label("..") == "upload"
    assert len(_label("x" * 500)) == 200


def test_the_api_logs_to_postgresql(predictor, postgres):
    url = postgres.new_database()
    with InspectionLog.open(url) as log, TestClient(create_app(predictor, log)) as c:
        ids = [c.post("/v1/inspect", files=upload(p)).json()["id"] for p in (DEF[0], OK[0])]
        listing = c.get("/v1/inspections").json()
        assert listing["total"] == 2 and [i["id"] for i in listing["items"]] == ids[::-1]
        assert c.get("/v1/health").json()["log"].startswith("postgresql://")
        assert "log" not in c.get("/healthz").json()  # public: no database named


def test_log_export_cli(client, tmp_path, log):
    from typer.testing import CliRunner

    from castinspect.cli import app

    ids = [client.post("/v1/inspect", files=upload(p)).json()["id"] for p in (DEF[0], OK[0])]
    db = str(log.target.location)
    out = tmp_path / "log.csv"
    r = CliRunner().invoke(app, ["log", "export", "--db", db, "--csv", "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,time,source") and [l.split(",")[0] for l in lines[1:]] == ids
    r = CliRunner().invoke(app, ["log", "export", "--db", db, "--jsonl"])
    assert [json.loads(l)["id"] for l in r.stdout.splitlines() if l.startswith("{")] == ids
    r = CliRunner().invoke(app, ["log", "export", "--db", str(tmp_path / "nope.db")])
    assert r.exit_code == 2 and "no such inspection log" in r.output
    decisions = {i: client.get(f"/v1/inspections/{i}").json()["decision"] for i in ids}
    r = CliRunner().invoke(app, ["log", "export", "--db", db, "--format", "jsonl", "--decision", decisions[ids[0]]])
    assert {json.loads(l)["id"] for l in r.stdout.splitlines() if l.startswith("{")} == \
        {i for i in ids if decisions[i] == decisions[ids[0]]}
    first = client.get(f"/v1/inspections/{ids[1]}").json()["time"]
    r = CliRunner().invoke(app, ["log", "export", "--db", db, "--format", "jsonl", "--since", first])
    assert [json.loads(l)["id"] for l in r.stdout.splitlines() if l.startswith("{")] == [ids[1]]
    r = CliRunner().invoke(app, ["log", "export", "--db", db, "--format", "jsonl", "--until", first,
                                 "--station", "nowhere"])
    assert not [l for l in r.stdout.splitlines() if l.startswith("{")]
    assert CliRunner().invoke(app, ["log", "export", "--db", db, "--decision", "maybe"]).exit_code == 2


def test_a_postgresql_outage_is_a_503_and_the_service_recovers(predictor):
    """The database goes away: requests are refused with 503 (never a 200 the log does not
    hold), health says so; when it is back, the same server records again."""
    from services import PostgresServer

    pg = PostgresServer()
    try:
        with InspectionLog.open(pg.new_database()) as log, TestClient(create_app(predictor, log)) as c:
            first = c.post("/v1/inspect", files=upload(DEF[0])).json()["id"]
            pg.halt()
            r = c.post("/v1/inspect", files=upload(OK[0]))
            assert r.status_code == 503 and "nothing recorded" in r.json()["detail"]
            assert c.get("/healthz").status_code == 503
            detail = c.get("/v1/health").json()
            assert detail["writer"]["failing"] and detail["writer"]["error"] and "detail" not in c.get("/healthz").json()
            pg.start()
            r = c.post("/v1/inspect", files=upload(OK[0]))
            assert r.status_code == 200
            assert c.get("/healthz").status_code == 200
            rows, total = log.page()
            assert total == 2 and {row["id"] for row in rows} == {first, r.json()["id"]}
    finally:
        pg.stop()


def test_an_onnx_model_serves_without_heatmaps(tmp_path, log):
    from castinspect.inference.export import export_onnx
    from castinspect.models.checkpoint import bundled_model_path, load_checkpoint

    onnx_path = tmp_path / "model.onnx"
    export_onnx(load_checkpoint(bundled_model_path()), onnx_path)
    with TestClient(create_app(Predictor.load(onnx_path), log)) as c:
        assert c.get("/v1/model").json()["heatmaps"] is False
        assert c.post("/v1/inspect", files=upload(DEF[0])).status_code == 200
        r = c.post("/v1/inspect?heatmap=1", files=upload(DEF[0]))
        assert r.status_code == 400 and "checkpoint" in r.json()["detail"]


def test_bad_query_bounds_are_4xx_and_every_500_is_counted(predictor, log):
    with TestClient(create_app(predictor, log), raise_server_exceptions=False) as c:
        assert c.get("/v1/inspections?offset=9223372036854775808").status_code == 422
        assert c.get("/v1/inspections?limit=0").status_code == 422

        def broken(*args, **kwargs):
            raise RuntimeError("the disk went away")
        c.app.state.station.log.page = broken
        assert c.get("/v1/inspections").status_code == 500
        assert 'castinspect_http_responses_total{route="/v1/inspections",status="500"} 1.0' in c.get("/metrics").text


def test_a_station_without_a_token_refuses_other_sites_and_other_names(predictor, log):
    import http.client

    from services import ThreadedServer

    server = ThreadedServer(create_app(predictor, log, trusted_hosts={"127.0.0.1", "localhost", "::1"}))
    try:
        def post(headers: dict) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            boundary = "x" * 16
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpeg\"\r\n"
                    f"Content-Type: image/jpeg\r\n\r\n").encode() + OK[0].read_bytes() + f"\r\n--{boundary}--\r\n".encode()
            conn.request("POST", "/v1/inspect", body, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                        **headers})
            return conn.getresponse().status

        assert post({}) == 200  # a script or a PLC: no Origin, no Sec-Fetch-Site
        assert post({"Origin": f"http://localhost:{server.port}", "Sec-Fetch-Site": "same-origin"}) == 200
        assert post({"Origin": "http://evil.example"}) == 403  # a page on another site
        assert post({"Sec-Fetch-Site": "cross-site"}) == 403
        assert post({"Host": "rebound.example:8000"}) == 421  # DNS rebinding: a foreign name for loopback
        assert log.page()[1] == 2  # only the two accepted
    finally:
        server.stop()


def test_health_is_503_while_writes_fail(predictor, tmp_path):
    import sqlite3
    with InspectionLog.open(tmp_path / "log.db") as log, TestClient(create_app(predictor, log)) as c:
        assert c.get("/healthz").status_code == 200  # healthy before its first commit
        assert c.post("/v1/inspect", files=upload(OK[0])).status_code == 200
        # the file still answers reads, but refuses writes (as a full disk or a read-only mount would)
        with sqlite3.connect(tmp_path / "log.db") as side:
            side.execute("CREATE TRIGGER no_writes BEFORE INSERT ON inspections BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        assert c.post("/v1/inspect", files=upload(OK[1])).status_code == 503
        health = c.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "log writes failing"
        assert "disk full" not in health.text and "disk full" in c.get("/v1/health").json()["writer"]["error"]
        with sqlite3.connect(tmp_path / "log.db") as side:
            side.execute("DROP TRIGGER no_writes")
        assert c.post("/v1/inspect", files=upload(OK[1])).status_code == 200
        assert c.get("/healthz").status_code == 200 and log.page()[1] == 2


def test_a_retried_commit_adds_no_second_row(tmp_path):
    from castinspect.core.records import Inspection
    with InspectionLog.open(tmp_path / "log.db") as log:
        insp = Inspection(source="p.jpeg", label="ok_front", score=0.1, p_defect=0.1, decision="ok",
                          threshold=0.5, model="m")
        log.record([insp])
        log.record([insp])  # the same record again (a commit whose acknowledgement was lost, retried)
        assert log.page()[1] == 1 and log.stats()["all"]["total"] == 1  # and counted once


def test_an_idempotency_key_returns_the_first_answer(client, log):
    first = client.post("/v1/inspect", files=upload(DEF[0]), headers={"Idempotency-Key": "line-3-trigger-1041"})
    again = client.post("/v1/inspect", files=upload(DEF[0]), headers={"Idempotency-Key": "line-3-trigger-1041"})
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert again.json()["decision"] == first.json()["decision"] and "replayed" not in first.json()
    by_header = client.post("/v1/inspect", files=upload(DEF[0]), headers={"X-Request-Id": "plc-77"})
    assert client.post("/v1/inspect", files=upload(DEF[0]), headers={"X-Request-Id": "plc-77"}).json()["id"] == \
        by_header.json()["id"]
    # the same photo and name without a key: two parts, two records
    plain = [client.post("/v1/inspect", files=upload(DEF[0])).json()["id"] for _ in range(2)]
    assert plain[0] != plain[1]
    assert log.page()[1] == 4 == log.stats()["all"]["total"]
    reused = client.post("/v1/inspect", files=upload(OK[0]), headers={"Idempotency-Key": "line-3-trigger-1041"})
    assert reused.status_code == 422 and "another photo" in reused.json()["detail"]
    assert client.post("/v1/inspect", files=upload(OK[0]), headers={"Idempotency-Key": "two words"}).status_code == 422
    batch = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in (OK[0], DEF[1])]
    b1 = client.post("/v1/inspect/batch", files=batch, headers={"Idempotency-Key": "batch-9"}).json()
    b2 = client.post("/v1/inspect/batch", files=batch, headers={"Idempotency-Key": "batch-9"}).json()
    assert [i["id"] for i in b1["items"]] == [i["id"] for i in b2["items"]] and all(i["replayed"] for i in b2["items"])
    assert log.page()[1] == 6


def test_health_shows_the_writer_and_the_decode_slots(client):
    body = client.get("/v1/health").json()
    assert body["status"] == "ok" and body["decoding"]["slots"] >= 1 and body["decoding"]["queue_depth"] >= 64
    assert body["writer"]["stalled"] is False and body["writer"]["queued"] == 0


def test_concurrent_photos_are_judged_in_shared_calls_with_the_same_answers(predictor, tmp_path):
    """Micro-batching: photos arriving together share a model call; each answer is what the
    photo alone would get, and each is one log row."""
    import threading

    from services import ThreadedServer

    from castinspect.station.app import Limits

    photos = DEF + OK
    expected = {p.name: predictor.predict_one(p).p_defect for p in photos}
    with InspectionLog.open(tmp_path / "log.db") as log:
        app = create_app(predictor, log, limits=Limits(batch=8, batch_wait=0.05, decode_slots=4))
        server = ThreadedServer(app)
        try:
            answers = []

            def post(p):
                import http.client
                body, boundary = p.read_bytes(), "b0undary"
                data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{p.name}\"\r\n"
                        f"Content-Type: image/jpeg\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                conn.request("POST", "/v1/inspect", body=data,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
                answers.append(json.loads(conn.getresponse().read()))

            threads = [threading.Thread(target=post, args=(p,)) for p in photos * 2]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            state = app.state.station.batcher.state()
        finally:
            server.stop()
        assert len(answers) == 2 * len(photos) and all("id" in a for a in answers)
        for a in answers:
            assert a["p_defect"] == pytest.approx(expected[a["source"]], abs=1e-5)
        assert state["photos"] == len(answers) and state["calls"] < len(answers)  # calls were shared
        assert log.page()[1] == len(answers)
