"""ONNX export: the whole judgement after decoding, in one portable graph.

The graph takes what ``core.io.load_for_model`` returns — decoded, resized uint8 images (N, S, S) —
and gives calibrated class probabilities (N, C): the cast to float, the model's own
normalisation, the network, the temperature and the softmax are all inside; where the model
measures familiarity, a second output gives it (N,) (``inference.familiarity``, bank and
calibration inside the graph). Class names, the good-part class, threshold, temperature, input
size and model id travel in the metadata, so an ``.onnx`` file judges exactly like the
checkpoint it came from.

INT8 (``--int8``): static quantisation by ONNX Runtime, calibrated on training photos only.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from castinspect.inference.familiarity import Familiarity
from castinspect.models.checkpoint import Checkpoint

OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
FAMILIARITY_NAME = "familiarity"
LOGITS_NAME = "scaled_logits"  # the one-view graph of the in-process backends (to_onnx_bytes) ...
EMBEDDING_NAME = "embedding"  # ... and its second output
META_KEY = "castinspect"


class InferenceGraph(nn.Module):
    """uint8 images (N, S, S) -> calibrated probabilities (N, C) and, with ``familiarity``, the
    photos' familiarity (N,); or with ``logits`` the temperature-scaled logits before the softmax
    and the embedding: what is traced into the ONNX graph."""

    def __init__(self, model: nn.Module, temperature: float, logits: bool = False,
                 familiarity: Familiarity | None = None) -> None:
        super().__init__()
        self.model = model.eval()
        self.temperature = float(temperature)
        self.logits = logits
        self.familiarity = familiarity

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = images.unsqueeze(1).to(torch.float32) / 255.0
        z, embedding = self.model.forward_with_embedding(x)
        z = z / self.temperature
        if self.logits:
            return z, embedding
        p = torch.softmax(z, dim=1)
        return p if self.familiarity is None else (p, self.familiarity(embedding))


def graph_outputs(ckpt: Checkpoint, one_view: bool) -> list[str]:
    """The output names of the graph ``to_onnx_bytes`` builds."""
    if one_view:
        return [LOGITS_NAME, EMBEDDING_NAME]
    return [OUTPUT_NAME] + ([FAMILIARITY_NAME] if ckpt.familiarity is not None else [])


def to_onnx_bytes(ckpt: Checkpoint, one_view: bool = False) -> bytes:
    """The fp32 graph with its metadata, as bytes (``export_onnx`` writes them to a file).

    With ``one_view`` the graph judges the photos only as given and returns temperature-scaled
    logits (``LOGITS_NAME``) and the embedding: the in-process backends build it from a
    checkpoint and do the mirror averaging, the softmax and the familiarity themselves (``backends.combine_views``), which OpenVINO runs faster
    than one graph holding both views (``benchmarks/view_graphs.py``; docs: results, speed).
    Exported files keep both views in the graph, so that a file judges on its own exactly as
    castinspect does."""
    import onnx

    size = ckpt.config.model.input_size
    model = ckpt.build_network()
    if one_view:
        model.mirror_average = False
    outputs = graph_outputs(ckpt, one_view)
    familiarity = None if one_view or ckpt.familiarity is None else Familiarity.from_state(ckpt.familiarity)
    graph_module = InferenceGraph(model, ckpt.temperature, logits=one_view, familiarity=familiarity)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(graph_module, (torch.zeros(1, size, size, dtype=torch.uint8),), buf,
                          input_names=[INPUT_NAME], output_names=outputs, opset_version=OPSET,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                          dynamo=False)
    graph = onnx.load_from_string(buf.getvalue())
    entry = graph.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(ckpt.metadata())
    graph.producer_name = "castinspect"
    return graph.SerializeToString()


def read_metadata(model: str | os.PathLike | bytes) -> dict:
    import onnx

    graph = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    props = {p.key: p.value for p in graph.metadata_props}
    if META_KEY not in props:
        raise ValueError(f"{model if not isinstance(model, bytes) else '<onnx>'}: not a castinspect ONNX model "
                         "(no castinspect metadata)")
    return json.loads(props[META_KEY])


def export_onnx(ckpt: Checkpoint, out: str | os.PathLike, int8: bool = False,
                calibration: np.ndarray | None = None) -> Path:
    """Write the graph to ``out``; with ``int8``, quantised with ``calibration`` images
    (uint8, N x S x S; training photos, never the test split)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = to_onnx_bytes(ckpt)
    if not int8:
        out.write_bytes(data)
        return out
    if calibration is None or not len(calibration):
        raise ValueError("INT8 export needs calibration images (training photos)")
    quantize_int8(data, out, calibration)
    return out


def calibration_set(source: str | os.PathLike, size: int, count: int = 256, seed: int = 0,
                    locate: bool = False) -> np.ndarray:
    """Up to ``count`` decoded training photos, drawn at random (seeded): the ``train`` rows of a
    manifest, or the ``train`` folder of a dataset root (class folders directly also work).
    Never the test split: INT8 ranges chosen on test photos would be a choice made on test."""
    from castinspect.data.datasets import decode_set, load_split

    images = load_split(source, "train")
    if not len(images):
        raise ValueError(f"{source}: no training photos to calibrate on")
    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:count])
    return decode_set(images.subset(pick), size, locate=locate).images


def quantize_int8(fp32: bytes, out: Path, calibration: np.ndarray, batch: int = 32) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT_NAME: calibration[i:i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self):
            return next(self.batches, None)

    tmp = out.with_name(out.name + ".fp32.tmp")
    pre = out.with_name(out.name + ".pre.tmp")
    try:
        tmp.write_bytes(fp32)
        quant_pre_process(str(tmp), str(pre))
        # The familiarity's cosine distances stay in float: 8-bit similarities are too coarse
        # for a cut a few hundredths wide (its nodes are named after the module).
        exact = [n.name for n in onnx.load(str(pre)).graph.node if n.name.startswith("/familiarity/")]
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=exact,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        tmp.unlink(missing_ok=True)
        pre.unlink(missing_ok=True)
    # quantize_static keeps the graph's metadata only in some versions: put it back explicitly.
    graph = onnx.load(str(out))
    meta = {p.key: p.value for p in onnx.load_from_string(fp32).metadata_props}
    del graph.metadata_props[:]
    for k, v in {**meta, META_KEY: json.dumps({**json.loads(meta[META_KEY]), "int8": True})}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(graph, str(out))
