"""The folder watcher on a real folder with real photos: exactly once across ``kill -9``,
photos written slowly taken only once complete, bad files to failed/, the log's unavailability
survived, and each action (move, copy, sidecar) idempotent across restarts."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REAL_DATA, real_data_available
from services import wait_for

from castinspect.inference.predict import Predictor
from castinspect.station.log import InspectionLog
from castinspect.station.watch import FOLDERS, Watcher, WatchSettings

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "castinspect" / "assets" / "samples"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


def photos(tmp: Path, n: int) -> list[Path]:
    """``n`` real casting photos (the test split, then training photos), else variants of the
    bundled samples where the data is not here."""
    if real_data_available():
        found = sorted((REAL_DATA / "test").glob("*/*.jpeg")) + sorted((REAL_DATA / "train").glob("*/*.jpeg"))
        return found[:n]
    return variants(tmp, n)


def variants(tmp: Path, n: int) -> list[Path]:
    """``n`` photos of different bytes, from the bundled samples."""
    out = []
    base = sorted(SAMPLES.glob("*/*.jpeg"))
    tmp.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = cv2.imread(str(base[i % len(base)]), cv2.IMREAD_GRAYSCALE)
        img = np.clip(img.astype(int) + (i % 7) - 3, 0, 255).astype(np.uint8)
        path = tmp / f"part_{i:04d}.jpeg"
        cv2.imwrite(str(path), img)
        out.append(path)
    return out


def placed(out: Path) -> dict[str, list[str]]:
    return {f: sorted(p.name for p in (out / f).glob("*.jpeg")) for f in FOLDERS if (out / f).is_dir()}


def start(folder: Path, db: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "castinspect", "watch", str(folder), "--db", str(db), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_photo_judged_exactly_once_across_kill_9(tmp_path):
    """1,000 real photos copied in while the watcher runs; SIGKILL in the middle; a restart:
    one record per photo, every photo in one folder, none left behind or lost."""
    sources = photos(tmp_path / "source", 1000)
    folder, db = tmp_path / "camera", tmp_path / "log.db"
    folder.mkdir()
    watcher = start(folder, db)
    names = {p: f"{i:04d}_{p.name}" for i, p in enumerate(sources)}  # the splits share some names
    copier = threading.Thread(target=lambda: [shutil.copy(p, folder / names[p]) for p in sources])
    try:
        copier.start()
        wait_for(lambda: sum(len(v) for v in placed(folder).values()) >= 300, 120)
        watcher.kill()  # no shutdown handler runs
        watcher.wait()
        copier.join()
        assert any(folder.glob("*.jpeg")), "the kill should have left photos to judge"
        watcher = start(folder, db)
        wait_for(lambda: not any(folder.glob("*.jpeg")), 120)
        watcher.send_signal(signal.SIGTERM)  # a clean stop
        out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, err
    finally:
        if watcher.poll() is None:
            watcher.kill()
    where = placed(folder)
    assert sorted(n for v in where.values() for n in v) == sorted(names.values())  # each in exactly one folder
    with InspectionLog.open(db, create=False) as log:
        rows = list(log.iter_rows())
    assert sorted(r["source"] for r in rows) == sorted(names.values())  # one record each
    for r in rows:
        assert r["source"] in where[r["decision"]]  # and in its decision's folder
    assert "judged:" in err


def test_a_photo_written_slowly_is_taken_once_complete(predictor, tmp_path):
    folder = tmp_path / "camera"
    folder.mkdir()
    data = sorted((SAMPLES / "def_front").glob("*.jpeg"))[0].read_bytes()
    with InspectionLog.open(tmp_path / "log.db") as log:
        watcher = Watcher(predictor, log, folder, WatchSettings(settle=0.3))
        stop = threading.Event()
        runner = threading.Thread(target=watcher.run, args=(stop,))
        runner.start()
        try:
            time.sleep(0.5)
            with open(folder / "slow.jpeg", "wb") as fh:  # one writer, four chunks, pauses longer than settle
                for i in range(4):
                    fh.write(data[i * len(data) // 4:(i + 1) * len(data) // 4])
                    fh.flush()
                    time.sleep(0.8)
                    assert log.page()[1] == 0, "judged before it was complete"
            wait_for(lambda: log.page()[1] == 1, 30)
        finally:
            stop.set()
            runner.join(30)
        row = log.page()[0][0]
        assert row["source"] == "slow.jpeg" and row["decision"] == "defective"
        assert (folder / "defective" / "slow.jpeg").read_bytes() == data


def test_bad_files_go_to_failed_with_the_reason_and_the_rest_goes_on(predictor, tmp_path):
    folder = tmp_path / "camera"
    variants(folder, 6)
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"not a photo at all")
    (folder / "cut.jpeg").write_bytes((SAMPLES / "ok_front").glob("*.jpeg").__next__().read_bytes()[:300])
    with InspectionLog.open(tmp_path / "log.db") as log:
        counts = Watcher(predictor, log, folder, WatchSettings(settle=0.1)).run(once=True)
        assert log.page()[1] == 6
    failed = {p.name for p in (folder / "failed").glob("*.*g")}
    assert {"notes.png", "cut.jpeg"} <= failed
    reason = json.loads((folder / "failed" / "notes.png.json").read_text())
    assert reason["error_code"] == "not_image" and "not an image" in reason["error"]
    assert counts["ok"] + counts["defective"] + counts["review"] == 6
    assert (folder / "empty.jpeg").exists()  # an empty file waits for its writer (it never said it closed)


@pytest.mark.parametrize("action", ["move", "copy", "sidecar"])
def test_each_action_is_idempotent_across_restarts(predictor, tmp_path, action):
    folder, out = tmp_path / "camera", tmp_path / "sorted"
    variants(folder, 8)
    settings = WatchSettings(out=None if action == "sidecar" else out, action=action, settle=0.1)
    with InspectionLog.open(tmp_path / "log.db") as log:
        first = Watcher(predictor, log, folder, settings).run(once=True)
        again = Watcher(predictor, log, folder, settings).run(once=True)  # a restart: nothing judged twice
        assert log.page()[1] == 8 and sum(first.values()) == 8
        assert sum(again.values()) == (8 if action == "copy" else 0)  # copies are placed again, not judged
    if action == "sidecar":
        sidecars = list(folder.glob("*.jpeg.json"))
        assert len(sidecars) == 8 and json.loads(sidecars[0].read_text())["folder"] in FOLDERS
    else:
        assert sum(len(v) for v in placed(out).values()) == 8
        assert len(list(folder.glob("*.jpeg"))) == (8 if action == "copy" else 0)


def test_a_log_that_cannot_take_the_photos_leaves_them_for_the_next_try(predictor, tmp_path):
    folder, db = tmp_path / "camera", tmp_path / "log.db"
    variants(folder, 4)
    with InspectionLog.open(db, commit_timeout=1.0) as log:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        watcher = Watcher(predictor, log, folder, WatchSettings(settle=0.1))
        try:
            watcher.ready()
            time.sleep(0.2)
            assert watcher.process(watcher.ready()[0]) is False
            assert len(list(folder.glob("*.jpeg"))) == 4  # nothing moved without its record
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        time.sleep(4)  # the writer's own bounded wait ends
        watcher.run(once=True)
        assert not list(folder.glob("*.jpeg"))
        assert len({r["source"] for r in log.iter_rows()}) == log.page()[1] == 4  # once each


def test_the_watcher_follows_the_registry(tmp_path, model_path):
    """Started without --model, the watcher judges with the registry's active model, and with
    the next one promoted while it runs, without a restart."""
    from castinspect.models.checkpoint import bundled_model_path
    from castinspect.station import registry

    folder, db = tmp_path / "camera", tmp_path / "log.db"
    folder.mkdir()
    with InspectionLog.open(db) as log:
        first = registry.register(log, model_path, "lead")["id"]
        second = registry.register(log, bundled_model_path(), "lead")["id"]
        registry.promote(log, first, "lead")
    sources = variants(tmp_path / "source", 40)
    watcher = start(folder, db)
    try:
        shutil.copy(sources[0], folder / sources[0].name)
        wait_for(lambda: placed(folder) and sum(len(v) for v in placed(folder).values()) == 1, 60)
        with InspectionLog.open(db, create=False) as log:
            registry.promote(log, second, "lead")
            for p in sources[1:]:  # a photo a second until one is judged by the new model
                shutil.copy(p, folder / p.name)
                time.sleep(0.5)
                if any(r["model"] == second for r in log.iter_rows()):
                    break
            rows = list(log.iter_rows())
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    models = [r["model"] for r in rows]
    assert models[0] == first and models[-1] == second, models
    assert models == sorted(models, key=lambda m: m == second)  # switched once, never back
    assert f"now judging with model {second}" in err
