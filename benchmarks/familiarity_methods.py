"""Which familiarity separates better: k-nearest-neighbour or Mahalanobis distances?

    .venv/bin/python benchmarks/familiarity_methods.py ../shared/data/casting_data --other ../shared/data/neu_det/test
    .venv/bin/python benchmarks/familiarity_methods.py ../shared/data/neu_det --model runs/neu_det_familiarity/model.ckpt \
        --other ../shared/data/casting_data/test --name familiarity_methods_neu_det

On one model's penultimate embeddings (as it judges, views averaged): a bank or Gaussians fitted
on its training photos (a seeded draw of up to 2,000, as training does), each method's cut set
on its validation photos (0.5% outside), then the share flagged of the test photos (in
distribution), of another product's photos, and of the test photos under the capture shifts of
``benchmarks/familiarity.py``, with the silent errors left (wrong labels not flagged by the
distance or the image-quality checks). Also the AUROC of test against the other product.

Methods: ``knn1`` cosine distance to the nearest training embedding (a greedy coreset of 500 or
all), and class-conditional Mahalanobis distances (shared covariance, 1% shrinkage) in the top-k
principal components (k = 16 to 128), the smallest over the classes. Writes
benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from familiarity import SHIFTS  # noqa: E402

from castinspect.core.decision import predicted_index  # noqa: E402
from castinspect.core.io import expand_paths, read_image  # noqa: E402
from castinspect.core.parallel import Decoder  # noqa: E402
from castinspect.core.provenance import provenance  # noqa: E402
from castinspect.data.datasets import load_folder, split_dir  # noqa: E402
from castinspect.evaluation.robustness import variation_rng  # noqa: E402
from castinspect.inference.familiarity import FIT_PHOTOS, coreset  # noqa: E402
from castinspect.inference.predict import Predictor  # noqa: E402
from castinspect.models.network import softmax, to_input  # noqa: E402
from castinspect.training.inputs import split_train_val  # noqa: E402


@torch.no_grad()
def embed(net, predictor: Predictor, paths: list[str], shift=None, k: int = 0) -> dict:
    """Logits, embeddings and whether the quality checks named anything, for photos (shifted)."""
    def load(item):
        i, p = item
        gray = read_image(p)
        if shift is not None:
            gray = shift.apply(gray, variation_rng(0, k, i))
        return predictor.prepare(gray), bool(predictor.quality_reasons(gray))

    with Decoder() as d:
        items = d.map(load, list(enumerate(paths)))
    x = np.stack([i[0] for i in items])
    logits, emb = [], []
    for s in range(0, len(x), 128):
        z, e = net.forward_with_embedding(to_input(torch.as_tensor(x[s:s + 128])))
        logits.append(z.numpy())
        emb.append(e.numpy())
    return {"logits": np.concatenate(logits), "emb": np.concatenate(emb).astype(np.float64),
            "quality": np.array([i[1] for i in items])}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def knn(train: np.ndarray, bank: int | None):
    vectors = unit(train)
    if bank:
        vectors = vectors[coreset(torch.as_tensor(vectors).float(), bank).numpy()]
    return lambda e: 1 - (unit(e) @ vectors.T).max(axis=1)


def mahalanobis(train: np.ndarray, labels: np.ndarray, k: int, shrink: float = 0.01):
    mean = train.mean(0)
    w = np.linalg.svd(train - mean, full_matrices=False)[2][:k].T
    z = (train - mean) @ w
    centres = np.stack([z[labels == c].mean(0) for c in np.unique(labels)])
    r = z - centres[np.searchsorted(np.unique(labels), labels)]
    cov = r.T @ r / len(r)
    chol = np.linalg.cholesky(np.linalg.inv((1 - shrink) * cov + shrink * np.trace(cov) / k * np.eye(k)))

    def distance(e: np.ndarray) -> np.ndarray:
        ze = (e - mean) @ w
        return np.sqrt(np.min([(((ze - c) @ chol) ** 2).sum(1) for c in centres], axis=0))
    return distance


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside photo is farther than an inside one), ties counted half."""
    both = np.concatenate([inside, outside])
    ranks = np.argsort(np.argsort(both)) + 1.0
    return float((ranks[len(inside):].sum() - len(outside) * (len(outside) + 1) / 2) / (len(inside) * len(outside)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_root")
    ap.add_argument("--model")
    ap.add_argument("--other", required=True)
    ap.add_argument("--name", default="familiarity_methods")
    args = ap.parse_args()
    predictor = Predictor.load(args.model, backend="pytorch")
    ckpt = predictor.checkpoint
    net = ckpt.build_network()
    train, val, _ = split_train_val(ckpt.config, args.data_root)
    pick = np.sort(np.random.default_rng(ckpt.config.train.seed).permutation(len(train.labels))[:FIT_PHOTOS])
    test = load_folder(split_dir(args.data_root, "test"), predictor.classes)
    sets = {"train": embed(net, predictor, [train.paths[i] for i in pick]), "val": embed(net, predictor, val.paths),
            "test": embed(net, predictor, test.paths), "other": embed(net, predictor, expand_paths([args.other], recursive=True))}
    for k, v in enumerate(SHIFTS):
        sets[v.name] = embed(net, predictor, test.paths, v, k)
        print(v.name, flush=True)
    train_labels = train.labels[pick]

    def wrong(name: str) -> np.ndarray:
        probs = softmax(sets[name]["logits"], ckpt.temperature)
        return predicted_index(probs, predictor.ok_index, predictor.threshold) != test.labels

    methods = {"knn1 coreset 500": knn(sets["train"]["emb"], 500), "knn1 all": knn(sets["train"]["emb"], None)}
    methods.update({f"mahalanobis k={k}": mahalanobis(sets["train"]["emb"], train_labels, k) for k in (16, 32, 64, 128)})
    result: dict = {"provenance": provenance(), "model": predictor.model_id, "fit_photos": len(pick),
                    "validation_photos": len(val.paths), "methods": {}}
    for name, distance in methods.items():
        d = {s: distance(sets[s]["emb"]) for s in sets}
        cut = np.quantile(d["val"], 0.995)
        row = {"test_flagged": float((d["test"] > cut).mean()), "other_flagged": float((d["other"] > cut).mean()),
               "auroc_test_vs_other": auroc(d["test"], d["other"]), "shifts": {}}
        for v in SHIFTS:
            flagged = (d[v.name] > cut) | sets[v.name]["quality"]
            row["shifts"][v.name] = {"flagged": float(flagged.mean()), "errors": float(wrong(v.name).mean()),
                                     "silent_errors": float((wrong(v.name) & ~flagged).mean())}
        result["methods"][name] = row
        print(name, json.dumps(row), flush=True)
    out = Path("benchmarks/results") / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
