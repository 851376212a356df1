"""MQTT for the line: every judgement to the PLC or MES, through an outbox in the log.

    castinspect/<station>/inspection   one JSON message per judgement, QoS 1, in order
    castinspect/<station>/disposition  a person's decision on one of the station's parts, QoS 1
    castinspect/<station>/status       retained: online (with the model) or offline (the last will)
    castinspect/<station>/drift        retained: the drift state, when it changes

The message is written to the log's ``outbox`` table in the same transaction as its record, and
sent from there in order once the broker has acknowledged the ones before it (QoS 1's PUBACK);
then its row goes. So nothing is lost while the broker is down or the process dies: the rows wait.
A message may arrive twice (QoS 1 is at least once, and a row whose acknowledgement was lost is
sent again): consumers de-duplicate by its ``id``, the record's id.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from urllib.parse import unquote, urlsplit

from castinspect.core.records import utc_now
from castinspect.station.database import Database
from castinspect.station.log import InspectionLog

RESULT = {"ok": "OK", "defective": "NG", "review": "REVIEW"}
BATCH = 100  # messages in flight at most, each batch waited for before the next
log = logging.getLogger("castinspect.mqtt")


def topic(station: str, kind: str) -> str:
    return f"castinspect/{station}/{kind}"


def part_id(record: dict) -> str:
    """The part a PLC knows: the client's Idempotency-Key (e.g. its trigger id), the watched
    file's name, else the photo's name."""
    key = record.get("request_key") or ""
    return key.split(":", 2)[2] if key.startswith("watch:") else key or record["source"]


def message(row: dict, station: str) -> tuple[str, str]:
    """(topic, JSON payload) of one record, with the signals a PLC integration expects."""
    body = {"id": row["id"], "part": part_id(row), "result": RESULT.get(row["decision"], "ERROR"),
            "decision": row["decision"], "class": row["label"], "p_defect": row["p_defect"], "score": row["score"],
            "error_code": None, "reasons": row["reasons"], "familiarity": row["familiarity"], "model": row["model"],
            "anomaly": row.get("anomaly"), "time": row["time"], "source": row["source"], "station": station}
    return topic(station, "inspection"), json.dumps(body)


def disposition_message(entry: dict, station: str) -> tuple[str, str]:
    """(topic, JSON payload) of a person's disposition: the part's final result."""
    body = {"id": entry["inspection_id"], "disposition_id": entry["id"], "part": part_id(entry),
            "result": RESULT[entry["decision"]], "decision": entry["decision"], "class": entry["label"],
            "model_decision": entry["model_decision"], "who": entry["who"], "role": entry["role"],
            "note": entry["note"], "time": entry["time"], "source": entry["source"], "station": station}
    return topic(station, "disposition"), json.dumps(body)


def parse(url: str) -> tuple[str, int, str | None, str | None]:
    """``mqtt://[user[:password]@]host[:port]`` -> (host, port, user, password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"{url}: expected mqtt://host[:port]")
    return parts.hostname, parts.port or 1883, unquote(parts.username) if parts.username else None, \
        unquote(parts.password) if parts.password else None


class Publisher:
    """Sends ``station``'s outbox rows in order and keeps its retained status. One publisher per
    station name (several would send the same rows)."""

    def __init__(self, url: str, log_: InspectionLog, station: str, model: str) -> None:
        import paho.mqtt.client as mqtt

        self.host, self.port, user, password = parse(url)
        self.log, self.station, self.model = log_, station, model
        log_.enable_outbox(station, lambda row: message(row, station), self.notify, disposition_message)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"castinspect-{station}-{uuid.uuid4().hex[:8]}")
        if user:
            self.client.username_pw_set(user, password)
        self.client.will_set(topic(station, "status"), self._status("offline"), qos=1, retain=True)
        self.client.on_connect = self._connected
        self.client.reconnect_delay_set(0.5, 5)
        self._db: Database | None = None
        self._db_lock = threading.Lock()  # one connection, used by the sender and by pending()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._drift: str | None = None
        self.sent = 0
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._send_loop, name="mqtt-outbox", daemon=True)
        self._thread.start()

    def _status(self, state: str) -> str:
        return json.dumps({"state": state, "model": self.model, "station": self.station, "time": utc_now()})

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure:
            client.publish(topic(self.station, "status"), self._status("online"), qos=1, retain=True)
            self._wake.set()

    def model_changed(self, model: str) -> None:
        """Another model judges from now on (a promotion): the retained status says which."""
        self.model = model
        if self.client.is_connected():
            self.client.publish(topic(self.station, "status"), self._status("online"), qos=1, retain=True)

    def notify(self) -> None:
        """New rows in the outbox (the station committed records)."""
        self._wake.set()

    def drift(self, state: dict) -> None:
        """Publish the drift state, retained, when it changed."""
        if state["state"] != self._drift and self.client.is_connected():
            self._drift = state["state"]
            self.client.publish(topic(self.station, "drift"), json.dumps(
                {"state": state["state"], "reasons": state["reasons"], "time": utc_now()}), qos=1, retain=True)

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while self.client.is_connected() and not self._stop.is_set():
                try:
                    rows = self._rows()
                except Exception as exc:  # noqa: BLE001 - the log is unavailable: later
                    log.warning("outbox unreadable: %s", exc)
                    self._close_db()
                    break
                if not rows:
                    break
                infos = [(seq, self.client.publish(t, payload, qos=1)) for seq, t, payload in rows]
                done = []
                for seq, info in infos:  # in order: a gap stops the batch, the rest are sent again
                    try:
                        info.wait_for_publish(5)
                    except (RuntimeError, ValueError):
                        break
                    if not info.is_published():
                        break
                    done.append(seq)
                try:
                    self._delete(done)
                except Exception as exc:  # noqa: BLE001 - sent again later: at least once
                    log.warning("outbox rows not cleared: %s", exc)
                    self._close_db()
                self.sent += len(done)
                if len(done) < len(infos):
                    break

    def _conn(self) -> Database:
        if self._db is None:
            self._db = Database(self.log.target, create=False)
        return self._db

    def _close_db(self) -> None:
        with self._db_lock:
            if self._db is not None:
                try:
                    self._db.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass
                self._db = None

    def _rows(self) -> list[tuple[int, str, str]]:
        with self._db_lock:
            return [tuple(r) for r in self._conn().execute(
                "SELECT seq, topic, payload FROM outbox WHERE station = ? ORDER BY seq LIMIT ?",
                (self.station, BATCH)).fetchall()]

    def _delete(self, seqs: list[int]) -> None:
        if seqs:
            with self._db_lock, self._conn().transaction() as db:
                db.execute(f"DELETE FROM outbox WHERE seq IN ({', '.join('?' * len(seqs))})", seqs)

    def pending(self) -> int:
        """Messages in the outbox not yet acknowledged by the broker."""
        with self._db_lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM outbox WHERE station = ?", (self.station,))
                       .fetchone()[0])

    def close(self, timeout: float = 5.0) -> None:
        """Send what the outbox holds (up to ``timeout``), say offline, disconnect."""
        self._wake.set()
        for _ in range(int(timeout * 10)):
            if not self.client.is_connected() or self.pending() == 0:
                break
            self._stop.wait(0.1)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self.client.is_connected():
            self.client.publish(topic(self.station, "status"), self._status("offline"), qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()
        self._close_db()

