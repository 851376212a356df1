"""Inference backends: the same calibrated probabilities from PyTorch, ONNX Runtime or OpenVINO.

Each takes decoded, resized uint8 images (N, S, S) and returns class probabilities (N, C). The
ONNX backends run the graph of ``export.py`` (built in memory from a checkpoint, or read from an
exported ``.onnx`` file), which holds the normalisation, temperature and softmax itself.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np

from castinspect.checkpoint import Checkpoint
from castinspect.export import INPUT_NAME, OUTPUT_NAME
from castinspect.model import predict_probs

BACKENDS = ("auto", "pytorch", "onnxruntime", "openvino", "openvino-bf16")


def default_backend() -> str:
    """ONNX Runtime wherever it is installed (the fastest portable backend measured here), else PyTorch."""
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") else "pytorch"


class TorchBackend:
    name = "pytorch"

    def __init__(self, ckpt: Checkpoint) -> None:
        self.model = ckpt.build_model()
        self.temperature = ckpt.temperature

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return predict_probs(self.model, images, temperature=self.temperature)


class OnnxRuntimeBackend:
    """Runs the exported graph (``export.py``): uint8 images in, calibrated probabilities out."""

    name = "onnxruntime"

    def __init__(self, model: bytes | str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        # ORT's worker threads otherwise spin between calls, taking the cores from the decoder
        # threads of the pipelined predictor and the server's other requests.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.uint8)})[0]


class OpenVinoBackend:
    """The same graph compiled by OpenVINO (``pip install 'castinspect[openvino]'``)."""

    name = "openvino"

    def __init__(self, model: bytes | str, precision: str = "f32") -> None:
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
        # f32 by default: OpenVINO otherwise picks bf16 on AMX CPUs, faster but ~3e-3 off the
        # checkpoint's probabilities; the benchmark measures both ("openvino-bf16").
        self.compiled = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": precision})
        self.name = "openvino" if precision == "f32" else f"openvino-{precision}"

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        out = self.compiled([np.ascontiguousarray(images, dtype=np.uint8)])
        return np.asarray(out[self.compiled.output(0)], dtype=np.float32)


def make_backend(name: str, checkpoint: Checkpoint | None, onnx_model: bytes | str | None):
    if name == "auto":
        name = default_backend()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name == "pytorch":
        if checkpoint is None:
            raise ValueError("the pytorch backend needs a checkpoint (.ckpt), not an exported .onnx model")
        return TorchBackend(checkpoint)
    if onnx_model is None:
        from castinspect.export import to_onnx_bytes
        onnx_model = to_onnx_bytes(checkpoint)  # in memory, a second or so
    if name == "onnxruntime":
        return OnnxRuntimeBackend(onnx_model)
    return OpenVinoBackend(onnx_model, "bf16" if name == "openvino-bf16" else "f32")


def installed_backends() -> list[str]:
    """Every backend that can run here, PyTorch first."""
    have = {name: importlib.util.find_spec(name) is not None for name in ("onnxruntime", "openvino")}
    return ["pytorch"] + [b for b, needs in (("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                                             ("openvino-bf16", "openvino")) if have[needs]]
