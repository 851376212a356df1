"""Inference backends: the same calibrated probabilities from PyTorch, ONNX Runtime or OpenVINO.

Each takes decoded, resized uint8 images (N, S, S) and returns class probabilities (N, C) and
the photos' familiarity (N,), or None for a model that does not measure it (``run``). The ONNX
backends run a graph of ``export.py``: read from an exported ``.onnx`` file, it holds the whole
judgement (normalisation, views, temperature, softmax, familiarity); built in memory from a
checkpoint, it is the one-view graph, and ``combine_views`` adds the mirror view, the softmax and
the familiarity (faster).
"""

from __future__ import annotations

import importlib.util
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from castinspect.inference.export import INPUT_NAME, to_onnx_bytes
from castinspect.inference.familiarity import Familiarity
from castinspect.models.checkpoint import Checkpoint
from castinspect.models.network import softmax, to_input
from castinspect.models.registry import mirror_average

Judged = tuple[np.ndarray, np.ndarray | None]  # probabilities (N, C), familiarity (N,) or None

BACKENDS = ("auto", "pytorch", "onnxruntime", "openvino", "openvino-bf16")


def default_backend() -> str:
    """ONNX Runtime wherever it is installed (the fastest portable backend measured here), else PyTorch."""
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") else "pytorch"


def checkpoint_familiarity(ckpt: Checkpoint | None) -> Familiarity | None:
    return None if ckpt is None or ckpt.familiarity is None else Familiarity.from_state(ckpt.familiarity)


class TorchBackend:
    name = "pytorch"

    def __init__(self, ckpt: Checkpoint) -> None:
        self.model = ckpt.build_network()
        self.temperature = ckpt.temperature
        self.familiarity = checkpoint_familiarity(ckpt)

    @torch.no_grad()
    def run(self, images: np.ndarray) -> Judged:
        logits, embedding = self.model.forward_with_embedding(to_input(torch.as_tensor(images)))
        probs = softmax(logits.numpy(), self.temperature).astype(np.float32)
        return probs, None if self.familiarity is None else self.familiarity(embedding).numpy()


def combine_views(run, images: np.ndarray, mirror: bool | None,
                  familiarity: Familiarity | None = None) -> Judged:
    """Probabilities and familiarity from ``run``, a compiled graph of ``export.py`` on uint8
    images, which returns the graph's outputs in order.

    ``mirror`` None: an exported graph, whole in itself; its outputs are the answer. True or
    False: the one-view graph, which returns temperature-scaled logits and the embedding; the
    photos' (and with ``mirror`` their mirror images') logits and embeddings are averaged, and
    put through the softmax and ``familiarity`` here, as the model's own forward does."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    if mirror is None:
        out = run(images)
        return out[0], out[1] if len(out) > 1 else None
    z, e = run(images)
    if mirror:
        z2, e2 = run(np.ascontiguousarray(images[:, :, ::-1]))
        z, e = (z + z2) / 2, (e + e2) / 2
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs, None if familiarity is None else familiarity.score(e)


class OnnxRuntimeBackend:
    """Runs a graph of ``export.py`` (see ``combine_views`` for ``mirror``)."""

    name = "onnxruntime"

    def __init__(self, model: bytes | str, mirror: bool | None = None,
                 familiarity: Familiarity | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        # ORT's worker threads otherwise spin between calls, taking the cores from the decoder
        # threads of the pipelined predictor and the server's other requests.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.mirror = mirror
        self.familiarity = familiarity

    def run(self, images: np.ndarray) -> Judged:
        return combine_views(lambda x: self.session.run(None, {INPUT_NAME: x}), images, self.mirror,
                             self.familiarity)


class OpenVinoBackend:
    """The same graphs compiled by OpenVINO (``pip install 'castinspect[openvino]'``)."""

    name = "openvino"

    def __init__(self, model: bytes | str, precision: str = "f32", mirror: bool | None = None,
                 familiarity: Familiarity | None = None) -> None:
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
        self.familiarity = familiarity
        # Calling the compiled model reuses one infer request, which two threads (the server's
        # request pool) cannot share ("Infer Request is busy"): one request per thread instead.
        self._local = threading.local()

    def _infer(self, x: np.ndarray) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        # Copies, in case the results share the request's output buffers, which its next call reuses.
        result = request.infer([x])
        return [np.array(result[o], dtype=np.float32) for o in self.compiled.outputs]

    def run(self, images: np.ndarray) -> Judged:
        return combine_views(self._infer, images, self.mirror, self.familiarity)


def make_backend(name: str, checkpoint: Checkpoint | None, onnx_model: bytes | str | None):
    if name == "auto":
        name = default_backend()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name == "pytorch":
        if checkpoint is None:
            raise ValueError("the pytorch backend needs a checkpoint (.ckpt), not an exported .onnx model")
        return TorchBackend(checkpoint)
    mirror, familiarity = None, None  # an exported file judges whole, familiarity included
    if onnx_model is None:
        onnx_model = to_onnx_bytes(checkpoint, one_view=True)  # in memory, a second or so
        mirror = mirror_average(checkpoint.config.model)  # the rule metadata() reports, without its hashing
        familiarity = checkpoint_familiarity(checkpoint)  # applied here to the graph's embedding
    return onnx_backend(name, onnx_model, mirror, familiarity)


def onnx_backend(name: str, graph: bytes | str, mirror: bool | None = None,
                 familiarity: Familiarity | None = None):
    """ONNX Runtime or OpenVINO (``name`` as in BACKENDS) on a graph of ``export.py``
    (``familiarity``: the one-view graph's, applied to its embedding)."""
    if name == "onnxruntime":
        return OnnxRuntimeBackend(graph, mirror, familiarity)
    return OpenVinoBackend(graph, "bf16" if name == "openvino-bf16" else "f32", mirror, familiarity)


def installed_backends() -> list[str]:
    """Every backend that can run here, PyTorch first."""
    have = {name: importlib.util.find_spec(name) is not None for name in ("onnxruntime", "openvino")}
    return ["pytorch"] + [b for b, needs in (("onnxruntime", "onnxruntime"), ("openvino", "openvino"),
                                             ("openvino-bf16", "openvino")) if have[needs]]
