"""A model repository for NVIDIA Triton and OpenVINO Model Server: the exported graph, which
already holds the whole judgement (decoded uint8 photo in, calibrated probabilities out), laid
out so either engine serves it without code.

    DIR/castinspect/config.pbtxt      Triton: names, types, shapes, dynamic batching
    DIR/castinspect/1/model.onnx      the graph (version 1); OVMS reads this layout as it is

The batch dimension is Triton's (``max_batch_size``), so the dims listed are per photo.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from castinspect.inference.export import INPUT_NAME, export_onnx
from castinspect.models.checkpoint import Checkpoint

NAME = "castinspect"
MAX_BATCH = 64
QUEUE_DELAY_US = 2000
TRITON_TYPES = {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32"}


def graph_tensors(path: str | os.PathLike) -> dict[str, list[tuple[str, str, list[int]]]]:
    """The graph's inputs and outputs: (name, numpy dtype, shape with -1 for a dynamic axis)."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(path)).graph

    def tensors(values) -> list[tuple[str, str, list[int]]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append((v.name, str(np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))), dims))
        return out

    return {"inputs": tensors(graph.input), "outputs": tensors(graph.output)}


def config_pbtxt(tensors: dict, name: str = NAME, max_batch: int = MAX_BATCH) -> str:
    def block(kind: str, items) -> str:
        entries = ",\n".join(
            f'  {{\n    name: "{n}"\n    data_type: {TRITON_TYPES[dtype]}\n    dims: [ {", ".join(str(d) for d in dims[1:]) or "1"} ]'
            + ("\n    reshape: { shape: [ ] }" if len(dims) == 1 else "") + "\n  }"
            for n, dtype, dims in items)
        return f"{kind} [\n{entries}\n]"

    return "\n".join([f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch}",
                      block("input", tensors["inputs"]), block("output", tensors["outputs"]),
                      f"dynamic_batching {{\n  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}",
                      'instance_group [ { kind: KIND_CPU } ]', ""])


def parse_pbtxt(text: str) -> dict:
    """The tensors a config.pbtxt declares, read back: {"inputs"|"outputs": [(name, type, dims)]}
    (the subset of the text format this module writes)."""
    out = {}
    for kind, key in (("input", "inputs"), ("output", "outputs")):
        section = re.search(rf"^{kind} \[(.*?)^\]", text, re.S | re.M)
        out[key] = [(m.group(1), m.group(2), [int(d) for d in m.group(3).replace(",", " ").split()])
                    for m in re.finditer(r'name: "([^"]+)"\s+data_type: (\w+)\s+dims: \[([^\]]*)\]', section.group(1))]
    out["max_batch_size"] = int(re.search(r"max_batch_size: (\d+)", text).group(1))
    return out


def write_repository(ckpt: Checkpoint, directory: str | os.PathLike, name: str = NAME,
                     int8: bool = False, calibration: np.ndarray | None = None) -> Path:
    """Write ``directory/name/1/model.onnx`` and ``directory/name/config.pbtxt``; the model's
    folder."""
    folder = Path(directory) / name
    graph = export_onnx(ckpt, folder / "1" / "model.onnx", int8=int8, calibration=calibration)
    tensors = graph_tensors(graph)
    assert tensors["inputs"][0][0] == INPUT_NAME
    (folder / "config.pbtxt").write_text(config_pbtxt(tensors, name))
    return folder
