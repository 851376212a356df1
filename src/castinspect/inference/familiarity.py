"""Familiarity: does a photo look, to the model itself, like the photos it was trained on?

The model's penultimate embedding (``Network.forward_with_embedding``, averaged over its views)
is compared with a bank of training photos' embeddings by cosine distance to the nearest one
(k-nearest-neighbour with k = 1; the bank is a greedy k-centre coreset, so that it covers the
training photos with a few hundred of them). Class-conditional Mahalanobis distances were
measured beside it and separated shifted and foreign photos far less well (docs: results).

Calibration on the validation photos (never fitted on): their sorted distances are kept, and a
photo's ``familiarity`` is the share of validation photos at least as far from the training
photos as it is — 1 for the most typical, 0 beyond every validation photo. A photo is
``familiar`` when that share is at least ``share`` (0.5% by default), so that share of the
validation photos, and about as many photos like them, are flagged. The same module scores the
in-process backends' embeddings and is traced into exported ONNX graphs, so every backend
computes the same number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

METHOD = "knn1-cosine"
BANK = 500  # training embeddings kept (greedy coreset)
SHARE = 0.005  # validation share left outside: a margin under the 1% of in-distribution photos flagged
FIT_PHOTOS = 2000  # training photos embedded to choose the bank from (a random, seeded draw)


def is_familiar(familiarity: np.ndarray, share: float) -> np.ndarray:
    """The rule: familiar when at least ``share`` of the validation photos are as far (the
    Predictor applies it with the share of a model's metadata, which an exported graph carries)."""
    return np.asarray(familiarity) >= share


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


class Familiarity(nn.Module):
    """embedding (N, D) -> familiarity (N,) in [0, 1]; ``distance`` gives the raw cosine distance."""

    def __init__(self, bank: torch.Tensor, reference: torch.Tensor, share: float = SHARE,
                 photos: int = 0) -> None:
        super().__init__()
        self.register_buffer("bank", _unit(bank.float()))
        self.register_buffer("reference", torch.sort(reference.float()).values)
        self.share = float(share)
        self.photos = int(photos)  # training photos the bank was chosen from

    def distance(self, embedding: torch.Tensor) -> torch.Tensor:
        return 1.0 - (_unit(embedding.float()) @ self.bank.T).amax(dim=1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        d = self.distance(embedding)
        return (self.reference[None, :] >= d[:, None]).float().mean(dim=1)

    @torch.no_grad()
    def score(self, embedding: np.ndarray) -> np.ndarray:
        """familiarity for numpy embeddings (the in-process ONNX backends')."""
        return self(torch.from_numpy(np.ascontiguousarray(embedding, dtype=np.float32))).numpy()

    def familiar(self, familiarity: np.ndarray) -> np.ndarray:
        return is_familiar(familiarity, self.share)

    def to_state(self) -> dict[str, Any]:
        """Plain tensors and values for the checkpoint (``weights_only`` loading); the bank in
        half precision, which changes no distance that matters and halves the file's share."""
        return {"method": METHOD, "bank": self.bank.half(), "reference": self.reference,
                "share": self.share, "photos": self.photos}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "Familiarity":
        if state.get("method") != METHOD:
            raise ValueError(f"unknown familiarity method {state.get('method')!r} (this castinspect reads {METHOD})")
        return cls(state["bank"], state["reference"], state["share"], state.get("photos", 0))


def coreset(vectors: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``size`` unit vectors chosen greedily, each the farthest from those already
    chosen (k-centre): the bank then covers the training photos' spread, rare ones included,
    where a random draw of as many keeps mostly the common ones."""
    n = len(vectors)
    if n <= size:
        return torch.arange(n)
    first = int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(seed)))
    chosen = [first]
    nearest = 1.0 - vectors @ vectors[first]
    for _ in range(size - 1):
        i = int(torch.argmax(nearest))
        chosen.append(i)
        nearest = torch.minimum(nearest, 1.0 - vectors @ vectors[i])
    return torch.tensor(chosen)


def fit_familiarity(train: np.ndarray | torch.Tensor, val: np.ndarray | torch.Tensor, share: float = SHARE,
                    bank: int = BANK, seed: int = 0) -> Familiarity:
    """The familiarity model from training embeddings (the bank) and validation embeddings (the
    calibration), both of photos as the model judges them, without augmentation."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"familiarity share must be in (0, 1), not {share}")
    if len(train) == 0 or len(val) == 0:
        raise ValueError("familiarity needs training and validation photos")
    vectors = _unit(torch.as_tensor(train).float())
    keep = coreset(vectors, bank, seed)
    model = Familiarity(vectors[keep], torch.zeros(1), share, photos=len(train))
    model.reference = torch.sort(model.distance(torch.as_tensor(val).float())).values
    return model
