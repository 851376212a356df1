"""Inference backends: the same calibrated probabilities from PyTorch, ONNX Runtime or OpenVINO.

Each takes decoded, resized uint8 images (N, S, S) and returns class probabilities (N, C). The
ONNX backends run a graph of ``export.py``: read from an exported ``.onnx`` file, it holds the
whole judgement (normalisation, views, temperature, softmax); built in memory from a checkpoint,
it is the one-view graph, and ``combine_views`` adds the mirror view and the softmax (faster).
"""

from __future__ import annotations

import importlib.util
import tempfile
import threading
from pathlib import Path

import numpy as np

from castinspect.inference.export import INPUT_NAME, to_onnx_bytes
from castinspect.models.checkpoint import Checkpoint
from castinspect.models.network import predict_probs
from castinspect.models.registry import mirror_average

BACKENDS = ("auto", "pytorch", "onnxruntime", "openvino", "openvino-bf16")


def default_backend() -> str:
    """ONNX Runtime wherever it is installed (the fastest portable backend measured here), else PyTorch."""
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") else "pytorch"


class TorchBackend:
    name = "pytorch"

    def __init__(self, ckpt: Checkpoint) -> None:
        self.model = ckpt.build_network()
        self.temperature = ckpt.temperature

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return predict_probs(self.model, images, temperature=self.temperature)


def combine_views(run, images: np.ndarray, mirror: bool | None) -> np.ndarray:
    """Class probabilities from ``run``, a compiled graph of ``export.py`` on uint8 images.

    ``mirror`` None: an exported graph, whole in itself; its output is the answer. True or False:
    the one-view graph, which returns temperature-scaled logits; the photos' (and with ``mirror``
    their mirror images') logits are averaged and put through the softmax here, as the model's
    own forward does."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if mirror is None:
        return run(images)
    z = run(images)
    if mirror:
        z = (z + run(np.ascontiguousarray(images[:, :, ::-1]))) / 2
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


class OnnxRuntimeBackend:
    """Runs a graph of ``export.py`` (see ``combine_views`` for ``mirror``)."""

    name = "onnxruntime"

    def __init__(self, model: bytes | str, mirror: bool | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        # ORT's worker threads otherwise spin between calls, taking the cores from the decoder
        # threads of the pipelined predictor and the server's other requests.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.mirror = mirror

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return combine_views(lambda x: self.session.run(None, {INPUT_NAME: x})[0], images, self.mirror)


class OpenVinoBackend:
    """The same graphs compiled by OpenVINO (``pip install 'castinspect[openvino]'``)."""

    name = "openvino"

    def __init__(self, model: bytes | str, precision: str = "f32", mirror: bool | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ImportError("the openvino backend needs: pip install 'castinspect[openvino]'") from None
        core = ov.Core()
        if isinstance(model, bytes):
            with tempfile.TemporaryDirectory() as tmp:  # OpenVINO reads ONNX from a file
                path = Path(tmp) / "model.onnx"
                path.write_bytes(model)
                graph = core.read_model(str(path))
        else:
            graph = core.read_model(model)
        # f32 by default: OpenVINO otherwise picks bf16 on AMX CPUs, faster but further off the
        # checkpoint's probabilities; the benchmark measures both ("openvino-bf16").
        self.compiled = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": precision})
        self.name = "openvino" if precision == "f32" else f"openvino-{precision}"
        self.mirror = mirror
        # Calling the compiled model reuses one infer request, which two threads (the server's
        # request pool) cannot share ("Infer Request is busy"): one request per thread instead.
        self._local = threading.local()
        self._output = self.compiled.output(0)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        # A copy, in case the result shares the request's output buffer, which its next call reuses.
        return np.array(request.infer([x])[self._output], dtype=np.float32)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return combine_views(self._infer, images, self.mirror)


def make_backend(name: str, checkpoint: Checkpoint | None, onnx_model: bytes | str | None):
    if name == "auto":
        name = default_backend()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name == "pytorch":
        if checkpoint is None:
            raise ValueError("the pytorch backend needs a checkpoint (.ckpt), not an exported .onnx model")
        return TorchBackend(checkpoint)
    mirror = None  # an exported file judges whole
    if onnx_model is None:
        onnx_model = to_onnx_bytes(checkpoint, one_view=True)  # in memory, a second or so
        mirror = mirror_average(checkpoint.config.model)  # the rule metadata() reports, without its hashing
    return onnx_backend(name, onnx_model, mirror)


def onnx_backend(name: str, graph: bytes | str, mirror: bool | None = None):
    """ONNX Runtime or OpenVINO (``name`` as in BACKENDS) on a graph of ``export.py``."""
    if name == "onnxruntime":
        return OnnxRuntimeBackend(graph, mirror)
    return OpenVinoBackend(graph, "bf16" if name == "openvino-bf16" else "f32", mirror)


def installed_backends() -> list[str]:
    """Every backend that can run here, PyTorch first."""
    have = {name: importlib.util.find_spec(name) is not None for name in ("onnxruntime", "openvino")}
    return ["pytorch"] + [b for b, needs in (("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                                             ("openvino-bf16", "openvino")) if have[needs]]
