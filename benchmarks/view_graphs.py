"""How to run a mirror-averaged model on the ONNX backends, measured in one run: the exported graph
that holds both views (two branches sharing their weights) against the one-view graph called
twice with the averaging done outside (what the in-process backends do since then).

    .venv/bin/python benchmarks/view_graphs.py ../shared/data/casting_data

For each backend: model-only photos/s on batches of 64 and the median time to judge one decoded
photo, the two ways interleaved over several rounds (medians), so drift on a shared machine hits
both alike. The bundled model unless --model is given.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from castinspect.data.datasets import decode_set, load_folder, split_dir
from castinspect.inference.backends import installed_backends, onnx_backend
from castinspect.inference.export import to_onnx_bytes
from castinspect.models.checkpoint import bundled_model_path, load_checkpoint
from castinspect.models.registry import mirror_average


def seconds(fn, x: np.ndarray, repeats: int) -> float:
    t = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_root")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    ckpt = load_checkpoint(args.model or bundled_model_path())
    if not mirror_average(ckpt.config.model):
        raise SystemExit("this model judges one view: nothing to compare")
    images = decode_set(load_folder(split_dir(args.data_root, "test"), ckpt.classes),
                        ckpt.config.model.input_size).images
    batch, one = images[:64], images[64:65]
    graphs = {"two-view graph": (to_onnx_bytes(ckpt), None), "one-view graph x2": (to_onnx_bytes(ckpt, one_view=True), True)}
    out = {}
    for name in [b for b in installed_backends() if b != "pytorch"]:
        backends = {way: onnx_backend(name, g, mirror) for way, (g, mirror) in graphs.items()}
        p = {way: b.run(batch)[0] for way, b in backends.items()}  # warm-up, and the same answers
        per_batch = {way: [] for way in backends}
        per_photo = {way: [] for way in backends}
        for _ in range(args.rounds):
            for way, b in backends.items():
                per_batch[way].append(seconds(b.run, batch, 3))
                per_photo[way].append(seconds(b.run, one, 20))
        out[name] = {way: {"model_only_images_per_s": len(batch) / float(np.median(per_batch[way])),
                           "one_photo_ms": 1000 * float(np.median(per_photo[way]))} for way in backends}
        out[name]["largest_probability_difference"] = float(np.abs(p["two-view graph"] - p["one-view graph x2"]).max())
        a, b = (out[name][w]["model_only_images_per_s"] for w in graphs)
        print(f"{name:14s} batch 64: {a:6.0f} -> {b:6.0f} photos/s ({b / a:.2f}x); one photo: "
              f"{out[name]['two-view graph']['one_photo_ms']:.2f} -> {out[name]['one-view graph x2']['one_photo_ms']:.2f} ms",
              flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
