"""The Open Inference Protocol (KServe v2) beside castinspect's own API, on the same port, so a
client written for Triton, OpenVINO Model Server or KServe works against a station.

    GET  /v2                              the server: name, version, extensions
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{name}                the model: its input and output tensors
    GET  /v2/models/{name}/ready
    POST /v2/models/{name}/infer          tensors in, ``probabilities`` out
    POST /v2/repository/index             the models served (Triton's repository extension)

The model (named ``castinspect``) takes ``image``: UINT8 ``[-1, S, S]``, photos already decoded
to grey and resized to the model's input (what ``core.io.load_for_model`` gives, and what the
exported ONNX graph takes), or the same input name as BYTES ``[-1]``, each element an encoded
photo file (in JSON, its base64), decoded and prepared as ``/v1/inspect`` does. It answers
``probabilities``: FP32 ``[-1, C]``, calibrated, in the model's class order (the metadata's
``parameters.classes``). Requests and answers may use the binary tensor extension (tritonclient's
default). These answers are inferences, not judgements: nothing is recorded in the inspection
log (``/v1/inspect`` judges and records a part).

A station with an anomaly model beside its classifier (``serve --anomaly-model``) serves it as a
second model, ``NAME-anomaly``, with its own input size: a client that wants both asks both
(``/v1/inspect`` is where a part must pass both).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from castinspect.core import __version__
from castinspect.core.io import ImageError

MODEL_NAME = "castinspect"
ANOMALY_SUFFIX = "-anomaly"  # the anomaly model's name: the station's model's, and this
HEADER = "inference-header-content-length"
DTYPES = {"UINT8": np.uint8, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}


def served(request: Request) -> dict:
    """The models by their v2 names: the station's model, and its anomaly model where it has one."""
    predictor, name = request.app.state.station.predictor, request.app.state.v2_name
    models = {name: predictor}
    if predictor.anomaly is not None:
        models[f"{name}{ANOMALY_SUFFIX}"] = predictor.anomaly
    return models


def _model(request: Request, name: str):
    models = served(request)
    if name not in models:
        raise HTTPException(404, f"no model {name!r} here (this station serves {', '.join(map(repr, models))})")
    return models[name]


def metadata(predictor, name: str) -> dict:
    s = predictor.input_size
    return {"name": name, "versions": ["1"], "platform": "castinspect",
            "inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, s, s]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(predictor.classes)]}],
            "parameters": {"classes": predictor.classes, "model_id": predictor.model_id,
                           "ok_class": None if predictor.ok_index is None else predictor.classes[predictor.ok_index],
                           "threshold": predictor.threshold,
                           "accepts": "image as UINT8 [-1, S, S] (decoded, grey, resized) or BYTES [-1] (encoded files)"}}


def _read_bytes_tensor(raw: bytes) -> list[bytes]:
    """The binary extension's BYTES layout: each element a 4-byte little-endian length, then it."""
    out, i = [], 0
    while i < len(raw):
        (n,) = struct.unpack_from("<I", raw, i)
        out.append(raw[i + 4:i + 4 + n])
        i += 4 + n
    return out


def parse_request(body: bytes, header_length: int | None) -> tuple[dict, dict[str, object]]:
    """The request's JSON and each input's data (an array, or a list of encoded files)."""
    head = body[:header_length] if header_length is not None else body
    try:
        request = json.loads(head)
    except ValueError:
        raise HTTPException(400, "the request is not JSON (or Inference-Header-Content-Length is wrong)") from None
    offset, data = header_length or 0, {}
    try:
        for tensor in request.get("inputs", []):
            offset = _read_input(tensor, body, offset, data)
    except (ValueError, TypeError, struct.error, binascii.Error) as exc:  # data that does not fit its shape
        raise HTTPException(400, f"input {tensor.get('name')}: {exc}") from None
    return request, data


def _read_input(tensor: dict, body: bytes, offset: int, data: dict) -> int:
    """One input's data into ``data``; the offset of the next binary tensor."""
    name, dtype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        raw = body[offset:offset + size]
        offset += size
        data[name] = (_read_bytes_tensor(raw) if dtype == "BYTES"
                      else np.frombuffer(raw, DTYPES.get(dtype, np.uint8)).reshape(shape))
    elif dtype == "BYTES":
        data[name] = [base64.b64decode(v) if isinstance(v, str) else bytes(v) for v in tensor.get("data", [])]
    else:
        if dtype not in DTYPES:
            raise HTTPException(400, f"input {name}: datatype {dtype} is not supported (UINT8 or BYTES)")
        data[name] = np.asarray(tensor.get("data", []), DTYPES[dtype]).reshape(shape)
    return offset


def _images(predictor, data: object) -> np.ndarray:
    """The model inputs for ``image``: arrays as given (checked), encoded files decoded."""
    s = predictor.input_size
    if isinstance(data, list):
        prepared = []
        for k, blob in enumerate(data):
            got = predictor.prepare_one(blob, f"image[{k}]")
            if not isinstance(got, tuple):
                raise HTTPException(400, f"image[{k}]: {got.error}")
            prepared.append(got[1])
        return np.stack(prepared) if prepared else np.zeros((0, s, s), np.uint8)
    images = np.asarray(data)
    if images.ndim != 3 or images.shape[1:] != (s, s) or images.dtype != np.uint8:
        raise HTTPException(400, f"image: expected UINT8 [-1, {s}, {s}], got {images.dtype} {list(images.shape)}")
    return images


def answer(request: dict, name: str, probs: np.ndarray) -> Response:
    """The response: JSON, or JSON then the raw FP32 bytes where binary output was asked for."""
    wanted = {o.get("name"): o for o in request.get("outputs") or []}
    binary = (wanted.get("probabilities", {}).get("parameters") or {}).get("binary_data") or \
        (request.get("parameters") or {}).get("binary_data_output", False)
    out = {"name": "probabilities", "datatype": "FP32", "shape": list(probs.shape)}
    body = {"model_name": name, "model_version": "1", "outputs": [out]}
    if request.get("id") is not None:
        body["id"] = request["id"]
    if not binary:
        out["data"] = probs.astype(np.float32).ravel().tolist()
        return JSONResponse(body)
    raw = probs.astype("<f4").tobytes()
    out["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(body).encode()
    return Response(head + raw, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


router = APIRouter()
public = APIRouter()


@public.get("/v2/health/live", include_in_schema=True)
async def live() -> dict:
    return {"live": True}


@public.get("/v2/health/ready")
async def ready(request: Request) -> JSONResponse:
    """Ready when the station's health check passes."""
    health = await request.app.state.station.health()
    return JSONResponse({"ready": health.status_code == 200}, health.status_code)


@router.get("/v2")
async def server(request: Request) -> dict:
    return {"name": "castinspect", "version": __version__, "extensions": ["binary_tensor_data", "model_repository"]}


@router.post("/v2/repository/index")
async def repository_index(request: Request) -> list[dict]:
    return [{"name": name, "version": "1", "state": "READY"} for name in served(request)]


@router.get("/v2/models/{name}")
async def model_metadata(request: Request, name: str) -> dict:
    return metadata(_model(request, name), name)


@router.get("/v2/models/{name}/ready")
async def model_ready(request: Request, name: str) -> dict:
    _model(request, name)
    return {"name": name, "ready": True}


@router.post("/v2/models/{name}/infer")
async def infer(request: Request, name: str) -> Response:
    """Probabilities for each image (UINT8 [-1, S, S], or BYTES [-1] of encoded files)."""
    predictor = _model(request, name)
    length = request.headers.get(HEADER)
    body = await request.body()
    parsed, data = parse_request(body, int(length) if length else None)
    if "image" not in data:
        raise HTTPException(400, "no input named 'image'")

    def run() -> np.ndarray:
        try:
            return predictor.judge(_images(predictor, data["image"]))[0]
        except ImageError as exc:
            raise HTTPException(400, str(exc)) from None

    probs = await request.app.state.station.slots.run(run)
    return answer(parsed, name, probs)
