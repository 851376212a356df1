"""MQTT for the line against a real Mosquitto broker (Debian's package, started here), a real
subscriber: one message per judgement, in order; the broker stopped and restarted under load:
nothing missing (a repeat is allowed, QoS 1, and is told apart by the record's id); the retained
status online, then offline; the watcher publishes the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from services import wait_for

from castinspect.inference.predict import Predictor
from castinspect.station.app import create_app
from castinspect.station.log import InspectionLog
from castinspect.station.mqtt import Publisher, parse

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "castinspect" / "assets" / "samples"
PHOTOS = sorted(SAMPLES.glob("*/*.jpeg"))
OUTAGE = float(os.environ.get("CASTINSPECT_MQTT_OUTAGE", "30"))  # seconds the broker is down


@pytest.fixture
def broker():
    from services import MosquittoServer

    server = MosquittoServer()
    yield server
    server.close()


class Subscriber:
    """A persistent session (clean_session off): what is published while it is away waits for it."""

    def __init__(self, broker, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"plc-{uuid.uuid4().hex[:6]}",
                                  clean_session=False)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.reconnect_delay_set(0.2, 2)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        wait_for(lambda: self.client.is_connected(), 10)

    def inspections(self) -> list[dict]:
        return [m for t, m in list(self.messages) if t.endswith("/inspection")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(broker, topic: str) -> dict:
    import paho.mqtt.subscribe as subscribe

    return json.loads(subscribe.simple(topic, hostname="127.0.0.1", port=broker.port, retained=True).payload)


def test_parse_url():
    assert parse("mqtt://plc:secret@10.0.0.5:1884") == ("10.0.0.5", 1884, "plc", "secret")
    assert parse("mqtt://broker") == ("broker", 1883, None, None)
    with pytest.raises(ValueError):
        parse("http://broker")


def test_every_judgement_reaches_the_line_in_order_through_a_broker_outage(broker, tmp_path):
    predictor = Predictor.load()
    sub = Subscriber(broker, "castinspect/line-1/#")
    with InspectionLog.open(tmp_path / "log.db") as log:
        publisher = Publisher(broker.url, log, "line-1", predictor.model_id)
        try:
            with TestClient(create_app(predictor, log, publisher=publisher)) as c:
                wait_for(lambda: publisher.client.is_connected(), 10)
                for i in range(10):
                    r = c.post("/v1/inspect", files={"file": (PHOTOS[i % len(PHOTOS)].name,
                                                              PHOTOS[i % len(PHOTOS)].read_bytes(), "image/jpeg")},
                               headers={"Idempotency-Key": f"trigger-{i}"})
                    assert r.status_code == 200
                wait_for(lambda: len(sub.inspections()) >= 10)
                status = retained(broker, "castinspect/line-1/status")
                assert status["state"] == "online" and status["model"] == predictor.model_id

                broker.stop()  # the broker away: the station goes on, the messages wait in the outbox
                for i in range(10, 20):
                    assert c.post("/v1/inspect", files={"file": ("p.jpeg", PHOTOS[i % len(PHOTOS)].read_bytes(),
                                                                 "image/jpeg")}).status_code == 200
                assert publisher.pending() == 10
                time.sleep(OUTAGE)
                broker.start()
                wait_for(lambda: len({m["id"] for m in sub.inspections()}) >= 20, 60)
        finally:
            publisher.close()
        records = [r["id"] for r in log.iter_rows()]
    got = sub.inspections()
    sub.close()
    first_seen = list(dict.fromkeys(m["id"] for m in got))  # a repeat (QoS 1) is told apart by its id
    assert first_seen == records  # every judgement, in the order recorded
    first = got[0]
    assert first["part"] == "trigger-0" and first["result"] in ("OK", "NG", "REVIEW") and first["model"] == predictor.model_id
    assert {"id", "part", "result", "class", "p_defect", "error_code", "model", "time"} <= set(first)
    assert retained(broker, "castinspect/line-1/status")["state"] == "offline"


def test_the_watcher_publishes_each_photo(broker, tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    for p in PHOTOS[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    sub = Subscriber(broker, "castinspect/cam-2/inspection")
    done = subprocess.run([sys.executable, "-m", "castinspect", "watch", str(folder), "--db", str(tmp_path / "log.db"),
                           "--once", "--station", "cam-2", "--mqtt", broker.url], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(sub.inspections()) >= 6)
    sub.close()
    assert sorted(m["part"] for m in sub.inspections()) == sorted(p.name for p in PHOTOS[:6])
    assert all(m["station"] == "cam-2" for m in sub.inspections())


def test_nothing_sent_twice_after_a_restart(broker, tmp_path):
    """The outbox is emptied as the broker acknowledges: a second publisher on the same log
    (a restart) sends nothing again."""
    predictor = Predictor.load()
    sub = Subscriber(broker, "castinspect/line-3/inspection")
    with InspectionLog.open(tmp_path / "log.db") as log:
        publisher = Publisher(broker.url, log, "line-3", predictor.model_id)
        log.record([predictor.predict_one(PHOTOS[0].read_bytes(), "a.jpeg")])
        wait_for(lambda: len(sub.inspections()) == 1)
        publisher.close()
        again = Publisher(broker.url, log, "line-3", predictor.model_id)
        wait_for(lambda: again.client.is_connected(), 10)
        time.sleep(1.0)
        assert again.pending() == 0
        again.close()
    assert len(sub.inspections()) == 1
    sub.close()


def test_a_disposition_reaches_the_line_of_its_part(broker, tmp_path):
    """A person settles a part: the line that made it hears the final result, with who."""
    predictor = Predictor.load(review_band=(0.0, 0.5))
    plc = Subscriber(broker, "castinspect/line-4/#")
    try:
        with InspectionLog.open(tmp_path / "log.db", station="line-4") as log:
            publisher = Publisher(broker.url, log, "line-4", predictor.model_id)
            try:
                with TestClient(create_app(predictor, log, publisher=publisher)) as c:
                    ok = sorted((SAMPLES / "ok_front").iterdir())[0]
                    body = c.post("/v1/inspect", files={"file": (ok.name, ok.read_bytes(), "image/jpeg")},
                                  headers={"Idempotency-Key": "trigger-77"}).json()
                    assert body["decision"] == "review"
                    c.post(f"/v1/inspections/{body['id']}/disposition", json={"decision": "defective", "note": "crack"})
                    wait_for(lambda: any(t.endswith("/disposition") for t, _ in list(plc.messages)), 20)
            finally:
                publisher.close()
    finally:
        plc.close()
    (said,) = [m for t, m in plc.messages if t == "castinspect/line-4/disposition"]
    assert (said["id"], said["part"], said["result"], said["class"]) == (body["id"], "trigger-77", "NG", "def_front")
    assert (said["model_decision"], said["who"], said["note"]) == ("review", "local", "crack")
    assert [m["result"] for m in plc.inspections()] == ["REVIEW"]
