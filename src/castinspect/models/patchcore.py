"""PatchCore: an anomaly model fitted on good parts alone (Roth et al., "Towards Total Recall in
Industrial Anomaly Detection", 2022), on EfficientNet-Lite0's ImageNet features.

A photo is a grid of patch features: the pretrained backbone's stride-8 and stride-16 maps, each
averaged over its 3x3 neighbourhood (a patch sees a little context), the coarser ones upsampled
to the stride-8 grid, concatenated. The memory bank holds patch features of the good training
photos, thinned by greedy coreset selection (each pick the patch farthest from those picked so
far, so the bank covers every kind of good surface with a fraction of the patches). A patch's
anomaly is its distance to the nearest bank entry, measured in the spread of good photos' distances
at that place in the frame — or, where the good photos show a part on a background, only at the
places where they show the part (a textured background then raises no alarm); the photo's score
is the mean of its worst few patches (a share of the places scored; the paper takes the worst
one); the anomaly map is the grid of patch scores upsampled and smoothed.

It is a ``Network`` like the classifiers, so one Predictor, Grad-CAM's place (``anomaly_maps``),
familiarity and the ONNX export serve it: ``forward`` gives two logits, [0, (score - centre) /
scale], so the softmax's second column is a p(defect)-like value that crosses 0.5 exactly at the
threshold chosen on validation (``training.anomaly``). Nothing is trained by gradient steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from castinspect.core.config import ModelConfig
from castinspect.models.network import Network, avg_max_pool, normalize_pixels

BANK_CHUNK = 512  # bank entries compared at once: bounds the distance matrix a batch holds
SMOOTH_SIGMA = 4.0  # pixels of the anomaly map's Gaussian smoothing (at the input size)


class PatchCore(Network):
    # The blocks whose outputs are read (EfficientNet-Lite0): stride 8 (block 4, 40 channels),
    # stride 16 (block 7, 80; block 10, 112). Deeper maps know ImageNet's objects, not surfaces.
    TAPS = (5, 8, 11)
    DIMS = 40 + 80 + 112

    def __init__(self, cfg: ModelConfig, num_classes: int = 2, mirror_average: bool = False,
                 pretrained: bool = False) -> None:
        super().__init__()
        from castinspect.models.litenet import LiteNet

        if num_classes != 2:
            raise ValueError(f"an anomaly model has two classes (good, anomalous), not {num_classes}")
        lite = LiteNet(cfg, 2, pretrained=pretrained)
        self.stem, self.blocks = lite.stem, lite.blocks[:self.TAPS[-1]]
        self.normalize, self.num_classes, self.mirror_average = cfg.normalize, 2, False
        self.dropout, self.fc = nn.Identity(), nn.Identity()  # (no classifier: the bank judges)
        self.register_buffer("bank", torch.zeros(0, self.DIMS))
        # Per place in the frame, the mean and spread of good photos' patch distances (None fitted:
        # empty): a place where good parts vary (a textured background, the frame's edge) then
        # counts a departure in its own spread, not the part's.
        self.register_buffer("place_mean", torch.zeros(0))
        self.register_buffer("place_std", torch.zeros(0))
        # Per place, 1 where the score looks (where the good photos show the part), 0 where not
        # (empty: everywhere).
        self.register_buffer("scored", torch.zeros(0))
        # How many of its worst patches a photo's score averages (fitted: a share of the places
        # scored). One patch is the paper's max; a few are steadier against one noisy patch.
        self.register_buffer("top_k", torch.ones((), dtype=torch.long))
        self.register_buffer("centre", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))
        self.eval()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The sizes are the fitted model's: take them from the checkpoint being loaded.
        for name in ("bank", "place_mean", "place_std", "scored"):
            if prefix + name in state_dict:
                setattr(self, name, torch.zeros_like(state_dict[prefix + name]))
        state_dict.setdefault(prefix + "top_k", torch.ones((), dtype=torch.long))  # fitted before it: the max
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def train(self, mode: bool = True) -> "PatchCore":
        return super().train(False)  # frozen: BatchNorm keeps ImageNet's statistics

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, H/8, W/8) patch features."""

        x = self.stem(normalize_pixels(x, self.normalize))
        maps, start = [], 0
        for stop in self.TAPS:
            for i in range(start, stop):
                x = self.blocks[i](x)
            maps.append(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            start = stop
        size = maps[0].shape[-2:]
        return torch.cat([maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                                      for m in maps[1:]], dim=1)

    def forward_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        return avg_max_pool(feats)  # what familiarity measures: the photo's features, pooled

    def nearest_distances(self, q: torch.Tensor) -> torch.Tensor:
        """(N, P): the distance of each of the (N, P, D) patches ``q`` to its nearest bank entry."""
        q2 = q.square().sum(-1, keepdim=True)
        nearest = None
        for i in range(0, len(self.bank), BANK_CHUNK):  # a fixed loop: the exported graph unrolls it
            b = self.bank[i:i + BANK_CHUNK]
            d2 = (q2 - 2 * q @ b.T + b.square().sum(-1)).amin(-1)
            nearest = d2 if nearest is None else torch.minimum(nearest, d2)
        return nearest.clamp_min(0).sqrt()

    def patch_distances(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, H/8, W/8): each patch's distance to its nearest bank entry."""
        n, d, h, w = feats.shape
        return self.nearest_distances(feats.permute(0, 2, 3, 1).reshape(n, h * w, d)).reshape(n, h, w)

    def departures(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, H/8, W/8): patch distances in each place's own spread, where the model has them;
        places the score does not look at hold the photo's least departure."""
        if not self.scored.numel():
            dist = self.patch_distances(feats)
            return (dist - self.place_mean) / self.place_std if self.place_mean.numel() else dist
        # Only the places scored are measured against the bank (the bank search is the model's
        # cost), then put back on the grid.
        n, d, h, w = feats.shape
        keep = self.scored.flatten() > 0.5
        places = keep.nonzero().squeeze(1)
        q = feats.flatten(2).index_select(2, places).transpose(1, 2)
        dist = self.nearest_distances(q)  # (N, places scored)
        if self.place_mean.numel():
            dist = (dist - self.place_mean.flatten()[places]) / self.place_std.flatten()[places]
        least = dist.amin(1, keepdim=True)
        # Each place of the grid reads its own column (its rank among the places scored); the
        # places not scored read any column and are overwritten with the least.
        on_grid = dist.index_select(1, (keep.long().cumsum(0) - 1).clamp_min(0))
        return torch.where(keep, on_grid, least).reshape(n, h, w)

    def scores(self, feats: torch.Tensor) -> torch.Tensor:
        """(N,) anomaly scores: the mean of each photo's ``top_k`` worst patches (of the places
        scored)."""
        return self.departures(feats).flatten(1).topk(int(self.top_k), dim=1).values.mean(1)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        z = (self.scores(feats) - self.centre) / self.scale
        return torch.stack([torch.zeros_like(z), z], dim=1)

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.forward_features(x)
        return self.forward_head(feats), self.forward_embedding(feats)

    @torch.no_grad()
    def anomaly_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(N, S, S) patch distances upsampled to the input and smoothed: where the photo departs
        from the good parts, in the score's units."""
        dist = self.departures(self.forward_features(x)).unsqueeze(1)
        maps = F.interpolate(dist, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return gaussian_smooth(maps, SMOOTH_SIGMA)[:, 0]


def gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-t.square() / (2 * sigma * sigma))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def greedy_coreset(features: torch.Tensor, size: int, projection: int = 64, seed: int = 0) -> torch.Tensor:
    """Indices of ``size`` rows of ``features`` (M, D) chosen greedily, each the row farthest from
    those chosen before (k-centre), on a random projection to ``projection`` dimensions (as
    PatchCore does: distances are preserved well enough, and the selection costs less)."""
    if size >= len(features):
        return torch.arange(len(features))
    g = torch.Generator().manual_seed(seed)
    x = features
    if features.shape[1] > projection:
        x = features @ (torch.randn(features.shape[1], projection, generator=g) / projection ** 0.5)
    x = x.contiguous()
    x2 = x.square().sum(1)
    picked = torch.empty(size, dtype=torch.long)
    picked[0] = int(torch.randint(len(x), (1,), generator=g))
    nearest = torch.full_like(x2, float("inf"))
    for k in range(size):
        if k:
            picked[k] = int(nearest.argmax())
        c = x[picked[k]]
        # |x - c|^2 as |x|^2 - 2 x.c + |c|^2: one matrix-vector product, no (M, D) temporary
        torch.minimum(nearest, x2 - 2 * (x @ c) + c.square().sum(), out=nearest)
    return picked
