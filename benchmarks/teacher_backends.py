"""The distillation teacher's cost per training batch on each inference backend, in one run.

    .venv/bin/python benchmarks/teacher_backends.py [--model M] [--rounds 2] [--json out.json]

``distill.Teacher.targets`` on a batch of 64 random views at the teacher's input size (the
bundled model by default), five calls per backend after a warm-up, the backends alternated for
``--rounds`` rounds so that a slower moment of the machine falls on both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from castinspect.core.provenance import provenance
    from castinspect.inference.backends import installed_backends
    from castinspect.models.checkpoint import load_checkpoint
    from castinspect.training.distill import Teacher

    ckpt = load_checkpoint(args.model)
    size = int(ckpt.config.model.input_size)
    x = torch.rand(args.batch, 1, size, size, generator=torch.Generator().manual_seed(0))
    backends = [b for b in ("pytorch", "onnxruntime") if b in installed_backends()]
    seconds: dict[str, list[float]] = {b: [] for b in backends}
    for _ in range(args.rounds):
        for backend in backends:
            teacher = Teacher(ckpt, backend=backend)
            teacher.targets(x)  # warm-up
            t = time.perf_counter()
            for _ in range(5):
                teacher.targets(x)
            seconds[backend].append((time.perf_counter() - t) / 5)
            print(f"{backend}: {seconds[backend][-1]:.3f} s per batch of {args.batch}", flush=True)
    out = {"teacher": ckpt.model_id, "input_size": size, "batch": args.batch,
           "seconds_per_batch": seconds,
           "pytorch_over_onnxruntime": [p / o for p, o in zip(seconds.get("pytorch", []), seconds.get("onnxruntime", []))],
           "provenance": provenance()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
