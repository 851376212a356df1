"""INT8 against fp32 for a checkpoint (default: the bundled model), in one run: how many test
decisions the quantised graph changes at the model's threshold, the largest probability change,
and model-only photos/s of both graphs on ONNX Runtime.

    .venv/bin/python benchmarks/int8.py ../shared/data/casting_data

Calibration uses 256 training photos only (as `castinspect export --int8` does).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from castinspect.data.datasets import decode_set, load_folder, split_dir
from castinspect.inference.export import calibration_set, export_onnx
from castinspect.inference.predict import Predictor
from castinspect.lab.bench import model_only_throughput
from castinspect.models.checkpoint import bundled_model_path, load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_root")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    args = ap.parse_args()
    ckpt = load_checkpoint(args.model or bundled_model_path())
    size = ckpt.config.model.input_size
    test = decode_set(load_folder(split_dir(args.data_root, "test"), ckpt.classes), size)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(ckpt, Path(tmp) / "int8.onnx", int8=True,
                           calibration=calibration_set(args.data_root, size, 256))
        fp32, int8 = Predictor(ckpt, backend="onnxruntime"), Predictor.load(path)
        p32, p8 = fp32.probabilities(test.images), int8.probabilities(test.images)
        changed = [a.decision != b.decision for a, b in zip(fp32.inspections(test.paths, p32), int8.inspections(test.paths, p8))]
        print(json.dumps({
            "model": ckpt.model_id, "photos": len(test.paths), "threshold": ckpt.threshold,
            "decisions_changed": int(np.sum(changed)),
            "largest_probability_change": float(np.abs(p32 - p8).max()),
            "fp32_model_only_images_per_s": model_only_throughput(fp32.probabilities, test.images),
            "int8_model_only_images_per_s": model_only_throughput(int8.probabilities, test.images),
        }, indent=2))


if __name__ == "__main__":
    main()
