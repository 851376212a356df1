"""``castinspect train DATA --mode anomaly``: a PatchCore model (``models.patchcore``) fitted on the
good photos alone, into a run directory like any other.

The photos are split as for a classifier (validation by whole parts). Only the training split's
good photos are fitted: their patch features fill the memory bank, thinned by greedy coreset
selection; defect photos, where the data has them, are never fitted: the validation split's are
judged, to report, to choose the pixels' normalisation (``anomaly.normalize: auto``) and, with
``--target-recall``, to set the threshold. The threshold is by
default the score above which ``anomaly.false_reject`` of validation's good photos fall (so it
needs good photos only), then scores are mapped so that the threshold is p(defect) 0.5 and the
decision rule, the review band and the reports read as for a classifier.

RUN_DIR/config.yaml  split.csv (the fitted photos as train, validation as val)  model.ckpt
        metrics.json  report.html
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from castinspect.core.config import Config
from castinspect.core.decision import resolve_ok_index
from castinspect.core.runtime import set_threads, tune_allocator
from castinspect.data.datasets import (
    Decoded,
    ImageSet,
    class_folders,
    images_in,
    is_manifest,
    load_split,
)
from castinspect.data.locate import AUTO_SHARE, background_weight
from castinspect.data.quality import fit_reference
from castinspect.evaluation.evaluate import write_metrics
from castinspect.evaluation.metrics import choose_threshold, roc_auc
from castinspect.models.checkpoint import Checkpoint, save_checkpoint
from castinspect.models.network import (
    count_flops,
    count_parameters,
    in_batches,
    predict_outputs,
)
from castinspect.models.patchcore import PatchCore, greedy_coreset
from castinspect.models.registry import build_model
from castinspect.training.inputs import TrainingData, resolve_locate, train_counts
from castinspect.training.run import finish_run
from castinspect.training.train import (
    Progress,
    TrainResult,
    model_familiarity,
    prepare_run_dir,
    write_split,
)

ANOMALOUS = "anomalous"  # the label of a rejected part where the data names no single defect class
BATCH = 32  # photos per forward pass while fitting
PLACE_PHOTOS, PLACE_PHOTOS_MAX = 30, 1000  # good photos left out of the bank that measure the spread per place


def anomaly_classes(classes: list[str], ok_index: int) -> list[str]:
    """The model's two classes: the good class, and the data's one defect class (or "anomalous"
    where it has none, or several)."""
    others = [c for i, c in enumerate(classes) if i != ok_index]
    return [classes[ok_index], others[0] if len(others) == 1 else ANOMALOUS]


def unclassified(root: str | os.PathLike) -> ImageSet | None:
    """The photos of a folder that holds photos and no class folders: all good ones (class
    "good"); None for any other layout."""
    root = Path(root)
    if not root.is_dir() or (root / "train").is_dir() or class_folders(root):
        return None
    files = images_in(root)
    return ImageSet([str(f) for f in files], np.zeros(len(files), np.int64), ["good"]) if files else None


def as_anomaly(part, ok_index: int, classes: list[str]):
    """An ImageSet or Decoded relabelled to the model's classes: 0 good, 1 anything else."""
    labels = (part.labels != ok_index).astype(np.int64)
    if isinstance(part, Decoded):
        return Decoded(part.images, labels, classes, part.paths)
    return ImageSet(part.paths, labels, classes)


def patch_features(net: PatchCore, images: np.ndarray) -> torch.Tensor:
    """(N, H, W, D) patch features of decoded uint8 photos."""
    parts = in_batches(net, images, BATCH, lambda x: net.forward_features(x).permute(0, 2, 3, 1))
    return torch.cat(parts) if parts else torch.zeros(0, 1, 1, PatchCore.DIMS)


def part_places(images: np.ndarray, grid: tuple[int, int]) -> torch.Tensor | None:
    """(H, W) on the patch grid: 1 where at least half of ``images`` show the part, 0 elsewhere;
    None unless nearly all of them show a part on a background (``data.locate``'s finding)."""
    maps = [background_weight(im) for im in images]
    found = [1 - m for m in maps if m is not None]
    if not found or len(found) < AUTO_SHARE * len(images):
        return None
    share = np.mean([cv2.resize(m, grid[::-1], interpolation=cv2.INTER_AREA) for m in found], axis=0)
    return torch.from_numpy((share >= 0.5).astype(np.float32)) if (share >= 0.5).any() else None


def fit_bank(net: PatchCore, good: np.ndarray, cfg: Config, progress: Progress) -> dict:
    """Fill ``net``'s memory bank from (up to ``anomaly.fit_photos`` of) the good photos ``good``;
    then, where they show a part on a background (and ``anomaly.part_only``), the places scored
    (only their patches enter the bank), else the spread per place from the other good photos,
    where at least PLACE_PHOTOS are left over; returns what was done."""
    a = cfg.anomaly
    if not 0 <= a.top_share <= 1:
        raise ValueError(f"anomaly.top_share is a share of the places scored, in [0, 1], not {a.top_share}")
    rng = np.random.default_rng(cfg.train.seed)
    order = rng.permutation(len(good))
    pick, rest = np.sort(order[:a.fit_photos]), np.sort(order[a.fit_photos:][:PLACE_PHOTOS_MAX])
    fitted = good[pick]  # (a copy: taken once for the features and the part's places)
    t = time.perf_counter()
    feats = patch_features(net, fitted)
    t_feats = time.perf_counter() - t
    grid = (int(feats.shape[1]), int(feats.shape[2]))
    scored = part_places(fitted, grid) if a.part_only else None
    # Where only the part's places are scored, only they fill the bank: background patches would
    # take bank entries that no scored patch needs.
    patches = feats[:, scored > 0.5] if scored is not None else feats
    patches = patches.reshape(-1, feats.shape[-1])
    del feats  # (the photos' patch features: the largest tensor of the fit)
    drawn = torch.from_numpy(np.sort(rng.permutation(len(patches))[:a.patches]))
    pool = patches[drawn].contiguous()
    t = time.perf_counter()
    net.bank = pool[greedy_coreset(pool, a.bank, seed=cfg.train.seed)].clone()
    t_coreset = time.perf_counter() - t
    progress.message(f"memory bank: {len(net.bank):,} of {len(pool):,} patches drawn from {len(pick)} good photos "
                     f"({grid[0]}x{grid[1]} each; features {t_feats:.0f}s, coreset {t_coreset:.0f}s)")
    spread = scored is None and len(rest) >= PLACE_PHOTOS
    if scored is not None:  # the part's places alone: plain distances did better there than spreads
        net.scored = scored
        progress.message(f"scoring the {int(scored.sum())} of {scored.numel()} places where the good photos "
                         "show the part")
    elif spread:  # photos the bank has not seen: their distances are a new part's
        dist = torch.cat(in_batches(net, good[rest], BATCH, lambda x: net.patch_distances(net.forward_features(x))))
        net.place_mean, net.place_std = dist.mean(0), dist.std(0).clamp_min(1e-3)
        progress.message(f"spread per place in the frame from {len(rest)} other good photos")
    places = int(scored.sum()) if scored is not None else grid[0] * grid[1]
    net.top_k.fill_(max(1, round(a.top_share * places)))
    return {"photos": len(pick), "grid": list(grid), "patches": len(pool),
            "bank": len(net.bank), "place_photos": len(rest) if spread else 0,
            "places_scored": places, "top_k": int(net.top_k),
            "features_seconds": t_feats, "coreset_seconds": t_coreset}


def normalisations(choice: str, defects_in_validation: bool) -> list[str]:
    """The normalisations to fit with: both where ``choice`` is "auto" and validation has defects to
    choose by, else the one named (``imagenet`` for "auto": frozen ImageNet features expect it)."""
    if choice == "auto":
        return ["imagenet", "per_image"] if defects_in_validation else ["imagenet"]
    if choice not in ("imagenet", "per_image", "fixed"):
        raise ValueError(f"anomaly.normalize must be auto, imagenet, per_image or fixed, not {choice!r}")
    return [choice]


def fit_normalised(cfg: Config, good: Decoded, val: Decoded, progress: Progress) -> tuple:
    """(net, what fit_bank did, validation's raw scores as logits, validation's embeddings) for
    the normalisation kept of ``normalisations``: the higher ROC-AUC on validation. ``cfg``
    records the one kept."""
    tried = {}
    for normalize in normalisations(cfg.anomaly.normalize, bool((val.labels == 1).any())):
        cfg.model.normalize = normalize
        net: PatchCore = build_model(cfg.model, 2, pretrained=True)
        fitted = fit_bank(net, good.images, cfg, progress)
        # One pass over validation: with centre 0 and scale 1 the second logit is the raw score.
        logits, embeddings = predict_outputs(net, val.images, batch_size=BATCH)
        auc = roc_auc(val.labels, logits[:, 1]) if len(set(val.labels)) == 2 else None
        tried[normalize] = (auc, net, fitted, logits, embeddings)
    kept = max(tried, key=lambda k: -1 if tried[k][0] is None else tried[k][0])
    if len(tried) > 1:
        progress.message("normalisation " + ", ".join(f"{k}: validation ROC-AUC {v[0]:.4f}" for k, v in tried.items())
                         + f"; kept {kept}")
    _, net, fitted, logits, embeddings = tried[kept]
    cfg.model.normalize, cfg.anomaly.normalize, cfg.anomaly.bank = kept, kept, fitted["bank"]
    fitted["normalize_auc"] = {k: v[0] for k, v in tried.items()}
    fitted["fits_seconds"] = sum(v[2]["features_seconds"] + v[2]["coreset_seconds"] for v in tried.values())
    return net, fitted, logits, embeddings


def operating_scale(scores: np.ndarray, anomalous: np.ndarray, cfg: Config) -> tuple[float, float, str]:
    """(centre, scale, rule): the raw score that becomes p(defect) 0.5 — the recall-target threshold
    on validation where asked and validation has defects, else the (1 - false_reject) quantile
    of validation's good photos — and the spread of the good photos' scores, the unit of the
    logit (so p(defect) moves from ~0.27 to ~0.73 within one spread of the threshold)."""
    good = scores[~anomalous]
    if not len(good):
        raise ValueError("validation holds no good photos: the threshold of an anomaly model is set on them")
    target = cfg.train.target_recall
    if target is not None and anomalous.any():
        centre = float(choose_threshold(anomalous.astype(int), scores, target))
        rule = f"validation recall >= {target}"
    else:
        centre = float(np.quantile(good, 1 - cfg.anomaly.false_reject))
        rule = f"{cfg.anomaly.false_reject:.1%} of validation's good photos above it"
    return centre, max(float(good.std()), 1e-6), rule


def fit_anomaly(cfg: Config, data_root: str | os.PathLike, run_dir: str | os.PathLike,
                progress: Progress | None = None) -> tuple[TrainResult, dict]:
    """Fit ``cfg``'s anomaly model on ``data_root``'s good training photos into ``run_dir``, then
    evaluate it on validation (and the test split, for reporting) as ``run.finish_run`` does."""
    progress = progress or Progress()
    t0 = time.perf_counter()
    tune_allocator()
    set_threads(cfg.train.threads)
    run_dir = Path(run_dir)
    prepare_run_dir(run_dir, resume=False)
    cfg.model.backbone, cfg.model.mirror_average = "patchcore", False
    cfg.model.input_size = cfg.anomaly.input_size
    cfg = resolve_locate(cfg, data_root)
    data = TrainingData(cfg, data_root, photos=unclassified(data_root))
    train, val = data.decoded(cfg.model.input_size, cfg.data.locate == "on")
    ok_index = resolve_ok_index(train.classes, cfg.data.positive_class, cfg.data.ok_class)
    if ok_index is None and len(train.classes) == 1:
        ok_index = 0  # one class: every photo is a good one
    if ok_index is None:
        raise ValueError(f"which of {train.classes} are the good parts? An anomaly model is fitted on them "
                         "(set data.ok_class)")
    classes = anomaly_classes(train.classes, ok_index)
    keep = np.flatnonzero(train.labels == ok_index)
    good = Decoded(train.images[keep], np.zeros(len(keep), np.int64), classes, [train.paths[i] for i in keep])
    val = as_anomaly(val, ok_index, classes)
    write_split(run_dir, good, val)  # the fitted photos as train
    for err in data.errors:
        progress.message(f"skipped {err}")
    unused = len(train.labels) - len(good.labels)
    progress.message(f"fitting on {len(good.labels)} good photos"
                     + (f" ({unused} defect photos of the training split are not used)" if unused else ""))

    net, fitted, logits, val_embeddings = fit_normalised(cfg, good, val, progress)
    centre, scale, rule = operating_scale(logits[:, 1], val.labels == 1, cfg)
    net.centre.fill_(centre)
    net.scale.fill_(scale)
    cfg.save(run_dir / "config.yaml")  # with the normalisation kept
    familiarity = model_familiarity(net, good, val_embeddings, cfg.train.familiarity_share,
                                    cfg.train.familiarity_bank, cfg.train.seed)
    seconds = time.perf_counter() - t0
    info = {
        "data": {"root": str(data_root), "train": train_counts(good), "val": train_counts(val),
                 "val_split": "from the manifest" if is_manifest(data_root) else "grouped by part",
                 "skipped": [str(e) for e in data.errors], "defect_photos_not_fitted": unused},
        "mode": "anomaly", "anomaly": {**fitted, "centre": centre, "scale": scale},
        "epochs_run": 0, "best_epoch": 0, "steps": 0, "schedule_cut_to_time": False, "train_seconds": seconds,
        "parameters": count_parameters(net), "flops": count_flops(net, cfg.model.input_size), "bf16": False,
        "threshold_rule": rule, "history": [],
        "quality_reference": fit_reference(good.paths, seed=cfg.data.split_seed).to_dict(),
    }
    ckpt = Checkpoint(cfg, classes, 0, 0.5, {k: v.contiguous() for k, v in net.state_dict().items()}, info, 1.0,
                      familiarity.to_state() if familiarity is not None else None)
    save_checkpoint(ckpt, run_dir / "model.ckpt")
    test = None
    if is_manifest(data_root) or (Path(data_root) / "test").is_dir():
        test = as_anomaly(load_split(data_root, "test", train.classes), ok_index, classes) or None  # empty: none
    metrics = finish_run(run_dir, ckpt, val, test)
    metrics["run_seconds"] = time.perf_counter() - t0
    write_metrics(run_dir / "metrics.json", metrics)
    return TrainResult(run_dir, ckpt, [], val, data.errors, seconds), metrics
