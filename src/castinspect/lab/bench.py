"""``castinspect bench``: speed and cost, ours against the decode limit and the seeds' CNN.

In one run, on the same photos:
  (a) decode-only throughput — reading and resizing the JPEGs with the same threads: the
      practical ceiling for any model;
  (b) per backend, end-to-end batch throughput (decode + model, pipelined) and single-image
      latency p50/p99 (decode + model, one photo at a time), plus model-only throughput;
  (c) training throughput (images/s through a full training step, augmentation included);
  (d) the same for a reproduction of the seeds' CNN (``reference.py``), trained here on the
      same training photos and validation split, and judged on the same test photos;
  (e) both models under the line-variation suite (``evaluation.robustness``), ours at its
      operating threshold and at 0.5, the reference at 0.5 (it has no chosen threshold).
Absolute times on a shared machine are noisy; the ratios, measured in one run, are the result.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from castinspect.core.decision import defect_probability
from castinspect.core.io import load_for_model
from castinspect.core.parallel import Decoder
from castinspect.core.runtime import tune_allocator
from castinspect.data.datasets import decode_set, load_folder, split_dir
from castinspect.evaluation.robustness import (
    judged_paths,
    run_suite,
    suite_metrics,
    suite_probabilities,
)
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import Checkpoint


class ReferenceScorer:
    """The reference CNN seen through the Predictor's interface, so the robustness suite can run it."""

    def __init__(self, model: torch.nn.Module, classes: list[str], ok_index: int, input_size: int) -> None:
        self.model, self.classes, self.ok_index = model, classes, ok_index
        self.input_size, self.threshold = input_size, 0.5

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        from castinspect.lab.reference import p_defect
        p = p_defect(self.model, images)
        probs = np.empty((len(p), 2), np.float32)
        probs[:, self.ok_index], probs[:, 1 - self.ok_index] = 1 - p, p
        return probs


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def decode_throughput(files: list[str], size: int, workers: int) -> float:
    """Photos per second for decode + resize alone, on the parallel decoder with ``workers`` threads."""
    def load(f: str) -> np.ndarray:
        return load_for_model(f, size)

    with Decoder(workers) as decoder:
        decoder.map(load, files[:16])  # warm the page cache and the pool
        return len(files) / _timed(lambda: decoder.map(load, files))


def latency_ms(one: Callable[[str], object], files: list[str]) -> dict:
    for f in files[:5]:
        one(f)  # warm-up
    times = []
    for f in files:
        t = time.perf_counter()
        one(f)
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "n": len(times)}


def model_only_throughput(probabilities: Callable[[np.ndarray], object], images: np.ndarray,
                          batch: int = 64, repeats: int = 5) -> float:
    x = images[:batch]
    probabilities(x)
    return repeats * len(x) / _timed(lambda: [probabilities(x) for _ in range(repeats)])


def bench_backend(predictor: Predictor, name: str, files: list[str], decoded: np.ndarray,
                  latency_files: list[str], reference: Predictor | None = None) -> dict:
    """One backend's speed, and how many of the reference's (PyTorch fp32) decisions it changes
    on the same decoded photos."""
    from castinspect.inference.agreement import agreement

    list(predictor.predict(files[:64]))  # warm-up: threads, allocations, kernels
    seconds = _timed(lambda: list(predictor.predict(files)))
    return {"backend": name, "images_per_s": len(files) / seconds,
            "model_only_images_per_s": model_only_throughput(predictor.probabilities, decoded),
            **latency_ms(predictor.predict_one, latency_files),
            **({"decisions": agreement(reference, predictor, decoded)} if reference is not None else {})}


def bench_int8(ckpt: Checkpoint, data_root: str, files: list[str], decoded: np.ndarray, latency_files: list[str],
               reference: Predictor) -> dict:
    """The INT8 export (calibrated on training photos) on ONNX Runtime, measured like a backend."""
    import tempfile
    from pathlib import Path

    from castinspect.inference.export import calibration_set, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        calibration = calibration_set(data_root, ckpt.config.model.input_size, locate=ckpt.metadata()["locate"])
        path = export_onnx(ckpt, Path(tmp) / "int8.onnx", int8=True, calibration=calibration)
        return bench_backend(Predictor(None, onnx_model=str(path)), "onnxruntime-int8", files, decoded,
                             latency_files, reference)


def train_throughput(ckpt: Checkpoint, images: np.ndarray, labels: np.ndarray, steps: int = 12) -> float:
    """Images per second through our training step (augmentation, forward, backward, update)."""
    import torch.nn.functional as F

    from castinspect.data.augment import augment_batch
    from castinspect.models.network import to_input
    from castinspect.models.registry import bf16_training, build_model

    cfg = ckpt.config
    model = build_model(cfg.model, len(ckpt.classes)).to(memory_format=torch.channels_last).train()
    bf16 = bf16_training(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    g = torch.Generator().manual_seed(0)
    bs = cfg.train.batch_size
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)

    def step() -> None:
        idx = torch.randint(0, len(y_all), (bs,), generator=g)
        x = augment_batch(to_input(x_all[idx]), cfg.augment, g).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    return steps * bs / _timed(lambda: [step() for _ in range(steps)])


def bench_reference(data_root: str, ckpt: Checkpoint, test_files: list[str], latency_files: list[str],
                    epochs: int, max_steps: int | None, robustness: bool, report) -> dict:
    """Train the seeds' CNN on our training photos and validation split, at 300 px; judge the test."""
    from castinspect.core.config import Config
    from castinspect.lab.reference import (
        INPUT_SIZE,
        p_defect,
        to_tensor,
        train_reference,
    )
    from castinspect.training.inputs import split_train_val

    cfg = Config.from_dict(ckpt.config.to_dict())
    cfg.model.input_size = INPUT_SIZE
    train, val, _ = split_train_val(cfg, data_root)  # the same grouped validation split as ours
    ok = ckpt.ok_index
    report(f"training the reference CNN on {len(train.labels)} photos at {INPUT_SIZE} px ...")
    model, stats = train_reference(train.images, (train.labels != ok).astype(np.float32), val.images,
                                   (val.labels != ok).astype(np.float32), epochs=epochs, max_steps=max_steps)
    test = decode_set(load_folder(split_dir(data_root, "test"), ckpt.classes), INPUT_SIZE)
    p = p_defect(model, test.images)
    y = (test.labels != ok)
    val_p = p_defect(model, val.images)

    def score_one(f: str) -> None:
        with torch.no_grad():
            torch.sigmoid(model(to_tensor(load_for_model(f, INPUT_SIZE)[None])))

    def end_to_end() -> None:
        for i in range(0, len(test_files), 64):
            batch = np.stack([load_for_model(f, INPUT_SIZE) for f in test_files[i:i + 64]])
            p_defect(model, batch)

    result = {
        "parameters": sum(t.numel() for t in model.parameters()),
        "train_seconds": stats["seconds"], "epochs": stats["epochs"], "steps": stats["steps"],
        "train_images_per_s": stats["train_images_per_s"],
        "test_accuracy": float(((p >= 0.5) == y).mean()), "test_errors": int(((p >= 0.5) != y).sum()),
        "val_accuracy": float(((val_p >= 0.5) == (val.labels != ok)).mean()),
        "model_only_images_per_s": model_only_throughput(lambda x: p_defect(model, x), test.images),
        "images_per_s": len(test_files) / _timed(end_to_end),
        **latency_ms(score_one, latency_files),
    }
    if robustness:
        report("reference under the line-variation suite ...")
        scorer = ReferenceScorer(model, ckpt.classes, ok, INPUT_SIZE)
        result["robustness"] = run_suite(scorer, load_folder(split_dir(data_root, "test"), ckpt.classes))[0]
    return result


def run_bench(data_root: str, ckpt: Checkpoint, backends: list[str], reference: bool = True,
              reference_epochs: int = 12, reference_steps: int | None = None, latency_n: int = 200,
              workers: int = 2, robustness: bool = True, report=lambda s: None, int8: bool = False) -> dict:
    test = load_folder(split_dir(data_root, "test"), ckpt.classes)
    files = test.paths
    size = ckpt.config.model.input_size
    # The same CPU set-up as `castinspect train` for both models' training (glibc's allocator
    # otherwise slows CPU training: docs, development): the comparison is of the models, not the allocator.
    tune_allocator()
    decoded = decode_set(test, size)
    latency_files = files[:latency_n]
    result: dict = {"photos": len(files), "input_size": size, "model": ckpt.model_id,
                    "threshold": ckpt.threshold,
                    "parameters": sum(v.numel() for k, v in ckpt.state_dict.items() if "running" not in k
                                      and "num_batches" not in k),
                    "train_seconds_recorded": ckpt.info.get("train_seconds")}
    report("decode-only ...")
    result["decode_images_per_s"] = decode_throughput(files, size, workers)
    result["backends"] = []
    predictor = Predictor(ckpt, backend="pytorch")
    for backend in backends:
        report(f"backend {backend} ...")
        result["backends"].append(bench_backend(Predictor(ckpt, backend=backend), backend, files, decoded.images,
                                                latency_files, predictor))
    if int8:
        report("INT8 (ONNX Runtime) ...")
        result["backends"].append(bench_int8(ckpt, data_root, files, decoded.images, latency_files, predictor))
    probs = predictor.probabilities(decoded.images)
    y = decoded.labels != ckpt.ok_index
    result["test_accuracy_at_0.5"] = float(((defect_probability(probs, ckpt.ok_index) >= 0.5) == y).mean())
    report("training throughput ...")
    result["train_images_per_s"] = train_throughput(ckpt, decoded.images, decoded.labels)
    if robustness:
        report("line-variation suite ...")
        varied, labels, errors, flags = suite_probabilities(predictor, test)  # judged once, read at two thresholds
        paths = judged_paths(test, errors)
        result["robustness"] = suite_metrics(varied, labels, predictor, predictor.threshold, paths=paths, flags=flags)
        result["robustness_at_0.5"] = suite_metrics(varied, labels, predictor, 0.5, paths=paths, flags=flags)
    if reference:
        result["reference"] = bench_reference(data_root, ckpt, files, latency_files,
                                              reference_epochs, reference_steps, robustness, report)
    result["ratios"] = ratios(result)
    return result


def ratios(r: dict) -> dict:
    best = max(r["backends"], key=lambda b: b["images_per_s"])
    out = {"best_backend": best["backend"],
           "end_to_end_vs_decode_limit": best["images_per_s"] / r["decode_images_per_s"]}
    ref = r.get("reference")
    if ref:
        out.update({
            "throughput_vs_reference": best["images_per_s"] / ref["images_per_s"],
            "model_only_throughput_vs_reference": best["model_only_images_per_s"] / ref["model_only_images_per_s"],
            "train_images_per_s_vs_reference": r["train_images_per_s"] / ref["train_images_per_s"],
            "parameters_vs_reference": r["parameters"] / ref["parameters"],
            "test_accuracy_minus_reference": r["test_accuracy_at_0.5"] - ref["test_accuracy"],
        })
        if r.get("train_seconds_recorded"):
            out["train_time_vs_reference"] = r["train_seconds_recorded"] / ref["train_seconds"]
    return out
