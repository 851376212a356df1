"""The drift monitor: states change as expected on synthetic streams, in the server and the CLI."""

import numpy as np
import pytest

from castinspect.station.drift import (
    ALARM,
    OK,
    DriftMonitor,
    DriftSettings,
    Observation,
    replay,
)


def stream(n: int, rng: np.random.Generator, familiarity=None, reject: float = 0.3, unfamiliar: float = 0.0,
           quality: float = 0.0):
    """``n`` judgements: familiarity uniform (as calibrated) unless given, p(defect) bimodal with
    ``reject`` of the parts defective, ``unfamiliar`` of them flagged, ``quality`` of them named
    by the image-quality checks."""
    out = []
    for _ in range(n):
        bad = rng.random() < reject
        p = float(rng.beta(8, 2) if bad else rng.beta(2, 8))
        f = float(rng.random() if familiarity is None else familiarity(rng))
        flagged = rng.random() < unfamiliar or f < 0.005
        named = rng.random() < quality
        decision = "review" if flagged or named else "defective" if p >= 0.5 else "ok"
        out.append(Observation(decision, p, f, not flagged, named))
    return out


SETTINGS = DriftSettings(window=200, baseline=500)


def first_alarm(history: list[dict], after: int) -> int | None:
    return next((h["index"] - after for h in history if h["index"] > after and h["state"] == ALARM), None)


def test_a_clean_stream_stays_ok():
    history = replay(stream(3000, np.random.default_rng(0)), SETTINGS)
    alarms = sum(h["state"] == ALARM for h in history)
    assert history[-1]["state"] == OK and alarms <= 0.01 * len(history)
    assert history[0]["signals"]["p_defect"] is None  # nothing to compare with until the baseline is full
    assert history[-1]["baseline"]["complete"] and history[-1]["window"] == 200


@pytest.mark.parametrize("shift, signal", [
    (dict(unfamiliar=0.5), "unfamiliar"),                              # the camera moved: photos unlike training
    (dict(familiarity=lambda rng: 0.01 + 0.99 * rng.random() ** 2), "familiarity"),  # drifting away, none flagged
    (dict(reject=0.8), "reject_rate"),                                  # a bad batch of parts
    (dict(quality=0.3), "quality"),                                     # a lamp failing: photos underexposed
])
def test_a_shift_raises_an_alarm_within_100_photos(shift, signal):
    rng = np.random.default_rng(1)
    history = replay(stream(2000, rng) + stream(500, rng, **shift), SETTINGS)
    took = first_alarm(history, 2000)
    assert took is not None and took <= 100, took
    alarm = next(h for h in history if h["index"] == 2000 + took)
    assert alarm["signals"][signal]["state"] == ALARM and any(r.startswith(signal) for r in alarm["reasons"])


def test_good_parts_departing_from_the_anomaly_models_alarm_on_its_scores_alone():
    rng = np.random.default_rng(2)

    def scored(n: int, a: float, b: float) -> list[Observation]:
        return [Observation(o.decision, o.p_defect, o.familiarity, o.familiar, o.quality, float(rng.beta(a, b)))
                for o in stream(n, rng)]

    history = replay(scored(2000, 2, 8) + scored(500, 4, 6), SETTINGS)
    assert all(h["signals"]["anomaly"] is None or h["signals"]["anomaly"]["state"] != ALARM
               for h in history if h["index"] <= 2000)
    took = first_alarm(history, 2000)
    assert took is not None and took <= 100, took
    alarm = next(h for h in history if h["index"] == 2000 + took)
    assert alarm["signals"]["anomaly"]["state"] == ALARM and alarm["signals"]["p_defect"]["state"] != ALARM
    assert any(r.startswith("anomaly: anomaly score mean") for r in alarm["reasons"])
    assert replay(stream(600, rng), SETTINGS)[-1]["signals"]["anomaly"] is None  # no anomaly model: no signal


def test_resuming_from_the_ends_of_a_stream_is_replaying_it():
    """A restart reads a model's first and last records, not the whole log: the same state."""
    rng = np.random.default_rng(3)
    records = stream(900, rng, reject=0.3)
    records += stream(300, rng, reject=0.5)
    settings = DriftSettings(window=200, baseline=500, min_window=50)
    full = DriftMonitor(settings)
    full.extend(records)
    for n in (100, 600, 1200):
        resumed = DriftMonitor(settings)
        resumed.resume(records[:min(n, 500)], records[max(min(n, 500), n - 200):n], n)
        whole = DriftMonitor(settings)
        whole.extend(records[:n])
        assert resumed.state() == whole.state()
    assert resumed.state() == full.state()


def test_unjudged_photos_and_old_records_are_ignored_or_read():
    monitor = DriftMonitor(DriftSettings(window=60, baseline=60, min_window=50))
    monitor.add({"decision": None, "p_defect": None, "familiarity": None, "familiar": None})  # a failed photo
    monitor.extend({"decision": "ok", "p_defect": 0.1, "familiarity": None, "familiar": None} for _ in range(60))
    state = monitor.state()
    assert state["judged"] == 60 and state["signals"]["unfamiliar"] is None  # a model without familiarity
    assert state["signals"]["reject_rate"]["state"] == OK


def test_the_server_reports_drift(model_path, tmp_path):
    from fastapi.testclient import TestClient

    from castinspect.inference.predict import Predictor
    from castinspect.station.app import create_app
    from castinspect.station.log import InspectionLog

    board = (np.indices((300, 300)).sum(axis=0) // 30 % 2 * 200 + 30).astype(np.uint8)  # nothing like the parts
    import cv2
    png = cv2.imencode(".png", board)[1].tobytes()
    settings = DriftSettings(window=20, baseline=10, min_window=10)
    with InspectionLog.open(tmp_path / "log.db") as log:
        with TestClient(create_app(Predictor.load(model_path), log, drift=settings)) as c:
            assert c.get("/v1/drift").json()["state"] == OK  # nothing judged yet
            for i in range(12):
                assert c.post("/v1/inspect", files={"file": (f"b{i}.png", png, "image/png")}).status_code == 200
            drift = c.get("/v1/drift").json()
            assert drift["state"] == ALARM and drift["signals"]["unfamiliar"]["state"] == ALARM
            assert c.get("/v1/stats").json()["drift"]["state"] == ALARM
            metrics = c.get("/metrics").text
            assert "castinspect_drift_state 2.0" in metrics
            assert 'castinspect_drift_signal_state{signal="unfamiliar"} 2.0' in metrics
        # a restarted station remembers the line from its log
        with TestClient(create_app(Predictor.load(model_path), log, drift=settings)) as c:
            assert c.get("/v1/drift").json()["judged"] == 12


def test_the_cli_charts_the_log(model_path, synth_root, tmp_path):
    from typer.testing import CliRunner

    from castinspect.cli import app
    from castinspect.inference.predict import Predictor
    from castinspect.station.log import InspectionLog

    predictor = Predictor.load(model_path)
    files = sorted(str(p) for p in synth_root.glob("test/*/*.jpeg"))
    db = tmp_path / "log.db"
    with InspectionLog.open(db) as log:
        log.record(list(predictor.predict(files)))
    report = tmp_path / "drift.html"
    r = CliRunner().invoke(app, ["drift", "--db", str(db), "--drift-window", "20", "--drift-baseline", "20",
                                 "--report", str(report)])
    assert r.exit_code == 0, r.output
    assert f"{len(files)} judgements" in r.output and "first alarm:" in r.output
    page = report.read_text()
    assert "Drift at the line" in page and "data:image/png;base64," in page
    r = CliRunner().invoke(app, ["drift", "--db", str(tmp_path / "missing.db")])
    assert r.exit_code != 0 and "Traceback" not in r.output
