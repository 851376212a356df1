"""Issue 18's simulated line: in-distribution photos, then shifted ones, through the real server.

    .venv/bin/python benchmarks/drift_stream.py ../shared/data/casting_data --other ../shared/data/neu_det

For each shift (those of ``benchmarks/familiarity.py``, and photos of another product) a fresh
server (``castinspect serve``, bundled model, default drift window 200 and baseline 500, a new
SQLite log) is sent 2,000 unseen casting photos (the bundled model's validation split and the
test split, shuffled, seeded) and then 500 shifted test photos, one request at a time; after
each, ``GET /v1/drift``. Reported: the share of the clean photos after which the state was
warning or alarm (false alarms), and how many shifted photos it took to the first alarm.

Then a long clean stream, without the server (the same monitor over the Predictor's
judgements): 20,000 photos drawn with replacement from the same unseen photos, for the
false-alarm rate. Writes benchmarks/results/drift_stream.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from familiarity import SHIFTS  # noqa: E402
from load_test import free_port, start_server  # noqa: E402

from castinspect.core.io import expand_paths, read_image  # noqa: E402
from castinspect.core.provenance import provenance  # noqa: E402
from castinspect.data.datasets import load_folder, split_dir  # noqa: E402
from castinspect.inference.predict import Predictor  # noqa: E402
from castinspect.station.drift import ALARM, OK, DriftSettings, replay  # noqa: E402
from castinspect.training.inputs import split_train_val  # noqa: E402

CLEAN, SHIFTED, LONG = 2000, 500, 20000


def post(conn: http.client.HTTPConnection, name: str, data: bytes) -> dict:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    conn.request("POST", "/v1/inspect", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"{name}: {response.status} {answer}")
    return answer


def drift_state(conn: http.client.HTTPConnection) -> dict:
    conn.request("GET", "/v1/drift")
    return json.loads(conn.getresponse().read())


def jpeg(gray: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def run_stream(clean: list[tuple[str, bytes]], shifted: list[tuple[str, bytes]]) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(port, str(Path(tmp) / "log.db"))
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            states = []
            for name, data in clean + shifted:
                post(conn, name, data)
                states.append(drift_state(conn))
        finally:
            server.terminate()
            server.wait(30)
    before, after = states[:len(clean)], states[len(clean):]
    first = next((i for i, s in enumerate(after) if s["state"] == ALARM), None)
    return {"clean_photos": len(before), "clean_alarm_share": sum(s["state"] == ALARM for s in before) / len(before),
            "clean_warning_share": sum(s["state"] != OK for s in before) / len(before),
            "shifted_photos": len(after),
            "shifted_to_first_alarm": None if first is None else first + 1,
            "alarm_reasons": None if first is None else after[first]["reasons"],
            "alarm_share_while_shifted": sum(s["state"] == ALARM for s in after) / len(after)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_root")
    ap.add_argument("--other", required=True, help="another product's photos (a folder, searched recursively)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    predictor = Predictor.load()
    val = split_train_val(predictor.checkpoint.config, args.data_root)[1].paths
    test = load_folder(split_dir(args.data_root, "test"), predictor.classes).paths
    unseen = val + test
    clean_paths = [unseen[i] for i in rng.permutation(len(unseen))] * 2
    clean = [(Path(p).name, Path(p).read_bytes()) for p in clean_paths[:CLEAN]]
    shifted_paths = [test[i] for i in rng.permutation(len(test))][:SHIFTED]

    result: dict = {"provenance": provenance(), "model": predictor.model_id, "settings": DriftSettings().__dict__,
                    "streams": {}}
    for k, v in enumerate(SHIFTS):
        shifted = [(f"{v.name}_{Path(p).name}", jpeg(v.apply(read_image(p), np.random.default_rng([k, i]))))
                   for i, p in enumerate(shifted_paths)]
        result["streams"][v.name] = r = run_stream(clean, shifted)
        print(v.name, r, flush=True)
    other = expand_paths([args.other], recursive=True)
    other = [other[i] for i in rng.permutation(len(other))[:SHIFTED]]
    result["streams"]["other_product"] = r = run_stream(clean, [(Path(p).name, Path(p).read_bytes()) for p in other])
    print("other_product", r, flush=True)

    # The long clean stream: the monitor over the Predictor's own judgements of unseen photos.
    judged = {i.source: i for i in predictor.predict(unseen)}
    draws = rng.integers(len(unseen), size=LONG)
    history = replay([judged[unseen[i]] for i in draws])
    result["long_clean_stream"] = {
        "photos": LONG, "alarm_share": sum(h["state"] == ALARM for h in history) / len(history),
        "warning_or_alarm_share": sum(h["state"] != OK for h in history) / len(history),
        "alarms": sum(h["state"] == ALARM for h in history),
        "first_alarm": next((h["index"] for h in history if h["state"] == ALARM), None)}
    print("long clean stream", result["long_clean_stream"])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path("benchmarks/results/drift_stream.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
