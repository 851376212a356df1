"""The Open Inference Protocol (KServe v2) against the real station, with Triton's own HTTP client
(tritonclient), and the model repository Triton and OpenVINO Model Server read."""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path

import numpy as np
import pytest
from services import ThreadedServer

from castinspect.core.io import load_for_model
from castinspect.inference.predict import Predictor
from castinspect.station.app import create_app
from castinspect.station.log import InspectionLog

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "castinspect" / "assets" / "samples"
PHOTOS = sorted(SAMPLES.glob("*/*.jpeg"))


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    log = InspectionLog.open(tmp_path_factory.mktemp("v2") / "log.db")
    predictor = Predictor.load()
    server = ThreadedServer(create_app(predictor, log))
    server.predictor = predictor
    yield server, log
    server.stop()
    log.close()


def inspect_v1(server, path: Path) -> dict:
    boundary = "v1boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/v1/inspect", body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(conn.getresponse().read())


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_gets_the_probabilities_v1_answers(station, binary):
    import tritonclient.http as triton

    server, log = station
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("castinspect")
    meta = client.get_model_metadata("castinspect")
    predictor = server.predictor
    s = predictor.input_size
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, s, s]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]
    classes = meta["parameters"]["classes"]
    ok = classes.index(meta["parameters"]["ok_class"])

    rows_before = log.page()[1]
    images = np.stack([load_for_model(p, s) for p in PHOTOS])
    tensor = triton.InferInput("image", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=binary)
    result = client.infer("castinspect", [tensor], outputs=[triton.InferRequestedOutput("probabilities",
                                                                                         binary_data=binary)])
    probs = result.as_numpy("probabilities")
    assert probs.shape == (len(PHOTOS), 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert log.page()[1] == rows_before  # an inference, not a judgement: nothing recorded

    encoded = triton.InferInput("image", [len(PHOTOS)], "BYTES")
    files = [p.read_bytes() for p in PHOTOS]  # in plain JSON a BYTES element is the file's base64
    encoded.set_data_from_numpy(np.array(files if binary else [base64.b64encode(f).decode() for f in files],
                                         dtype=object), binary_data=binary)
    from_files = client.infer("castinspect", [encoded]).as_numpy("probabilities")

    for k, path in enumerate(PHOTOS):  # the same numbers as the station's own API on the same photo
        v1 = inspect_v1(server, path)
        assert 1 - probs[k, ok] == pytest.approx(v1["p_defect"], abs=1e-4)
        assert 1 - from_files[k, ok] == pytest.approx(v1["p_defect"], abs=1e-5)


def test_a_wrong_tensor_is_a_clear_400(station):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    server, _ = station
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    tensor = triton.InferInput("image", [1, 10, 10], "UINT8")
    tensor.set_data_from_numpy(np.zeros((1, 10, 10), np.uint8))
    with pytest.raises(InferenceServerException, match="expected UINT8"):
        client.infer("castinspect", [tensor])
    bad = triton.InferInput("image", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"not a photo"], dtype=object))
    with pytest.raises(InferenceServerException, match="image\\[0\\]"):
        client.infer("castinspect", [bad])
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("resnet50")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # data that does not fit its shape
    conn.request("POST", "/v2/models/castinspect/infer", headers={"Content-Type": "application/json"}, body=json.dumps(
        {"inputs": [{"name": "image", "shape": [1, 160, 160], "datatype": "UINT8", "data": [1, 2, 3]}]}))
    r = conn.getresponse()
    assert r.status == 400 and json.loads(r.read())["detail"].startswith("input image:")


def test_the_model_repository_matches_its_graph(model_path, tmp_path):
    from castinspect.inference.repository import (
        graph_tensors,
        parse_pbtxt,
        write_repository,
    )
    from castinspect.models.checkpoint import load_checkpoint

    folder = write_repository(load_checkpoint(model_path), tmp_path / "models")
    assert (folder / "1" / "model.onnx").is_file()
    config = parse_pbtxt((folder / "config.pbtxt").read_text())
    graph = graph_tensors(folder / "1" / "model.onnx")
    types = {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32"}
    for kind in ("inputs", "outputs"):
        assert [(n, types[t], d[1:] or [1]) for n, t, d in graph[kind]] == config[kind]
        assert all(d[0] == -1 for _, _, d in graph[kind])  # the batch axis, Triton's max_batch_size
    assert [n for n, _, _ in config["inputs"]] == ["image"] and config["outputs"][0][0] == "probabilities"
    assert config["max_batch_size"] == 64 and "dynamic_batching" in (folder / "config.pbtxt").read_text()
