"""How a photo's patch departures become its anomaly score: the worst patch (PatchCore's max),
the mean of its worst k or of a share of the places scored, or the max of the smoothed grid.

    .venv/bin/python benchmarks/anomaly_pooling.py casting_data neu_det:crazing neu_det:patches:per_image ...

Each spec is ``DATASET[:GOOD_CLASS[:NORMALISATION[:INPUT_SIZE]]]`` under ../shared/data
(normalisation ``imagenet`` unless named: the one ``anomaly.normalize: auto`` kept for it in
benchmarks/results/anomaly.json; input size ``anomaly.input_size``'s default unless named: the
same script then compares input sizes, ``--json benchmarks/results/anomaly_input_size.json``).
One memory bank is fitted per spec as ``train --mode anomaly`` fits it; every pooling is then
scored on the same validation departures (grouped by part), so the choice of
``anomaly.top_share`` is made on validation, on both datasets. Writes
benchmarks/results/anomaly_pooling.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SHARES = (0.01, 0.02, 0.05, 0.1)
TOPS = (10, 20, 40, 80, 160)
SIGMAS = (1.0, 1.5, 2.0, 3.0)  # in patches


def smoothed_max(dep: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma + 0.5)
    xs = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-xs ** 2 / (2 * sigma * sigma))
    g = g / g.sum()
    m = F.conv2d(F.pad(dep[:, None], (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    return m.flatten(1).amax(1)


def measure(spec: str) -> dict:
    from castinspect.core.config import Config
    from castinspect.core.decision import resolve_ok_index
    from castinspect.evaluation.metrics import roc_auc
    from castinspect.models.network import in_batches
    from castinspect.models.registry import build_model
    from castinspect.training.anomaly import (
        BATCH,
        anomaly_classes,
        as_anomaly,
        fit_bank,
        unclassified,
    )
    from castinspect.training.inputs import TrainingData
    from castinspect.training.train import Progress

    name, good, normalize, size = (spec.split(":") + [None, None, None])[:4]
    root = DATA / name
    cfg = Config()
    cfg.model.backbone, cfg.model.mirror_average = "patchcore", False
    cfg.model.input_size, cfg.model.normalize = int(size or cfg.anomaly.input_size), normalize or "imagenet"
    cfg.data.locate = "off"
    if good:
        cfg.data.ok_class = good
    data = TrainingData(cfg, root, photos=unclassified(root))
    train, val = data.decoded(cfg.model.input_size, False)
    ok = resolve_ok_index(train.classes, cfg.data.positive_class, cfg.data.ok_class)
    val = as_anomaly(val, ok, anomaly_classes(train.classes, ok))
    net = build_model(cfg.model, 2, pretrained=True)
    fitted = fit_bank(net, train.images[np.flatnonzero(train.labels == ok)], cfg, Progress())
    t = time.perf_counter()
    dep = torch.cat(in_batches(net, val.images, BATCH, lambda x: net.departures(net.forward_features(x))))
    scoring = time.perf_counter() - t
    flat, y = dep.flatten(1), val.labels
    places = int(net.scored.sum()) if net.scored.numel() else flat.shape[1]
    auc = {"max": roc_auc(y, flat.amax(1).numpy())}
    for share in SHARES:
        auc[f"share{share}"] = roc_auc(y, flat.topk(max(1, round(share * places)), 1).values.mean(1).numpy())
    for k in TOPS:
        auc[f"top{k}"] = roc_auc(y, flat.topk(k, 1).values.mean(1).numpy())
    for sigma in SIGMAS:
        auc[f"smooth{sigma}"] = roc_auc(y, smoothed_max(dep, sigma).numpy())
    row = {"dataset": name, "good": good or None, "normalize": cfg.model.normalize,
           "input_size": cfg.model.input_size, "fit_seconds": round(fitted["features_seconds"] + fitted["coreset_seconds"], 1),
           "validation_photos_per_s": round(len(y) / scoring, 1), "n": len(y), "defects": int(y.sum()),
           "places": places, "validation_roc_auc": {k: round(float(v), 4) for k, v in auc.items()}}
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "anomaly_pooling.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from castinspect.core.provenance import provenance

    out = {"pooling": [measure(s) for s in args.specs], "provenance": provenance()}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
