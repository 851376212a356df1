"""Grad-CAM: where the model looked when it called a part defective.

The heatmap is read from the feature map ``model.forward_features`` returns (each backbone's
stage is named in ``models.registry``): each feature map is weighted by the mean gradient of the
defect log-odds with respect to it, the weighted sum is clipped at zero and upsampled to the
photo. A short implementation on purpose: captum would add a dependency for ten lines of maths.

The score explained is the defect log-odds, log p(defective) - log p(ok), so the heatmap shows
what pushes the part towards "defective" whatever the verdict. ``gradcam`` scales each map to its
own peak (where the evidence lies); what is shown is that times p(defect) (``Predictor.heatmaps``),
so the colour says how much evidence, not only where: a confident OK part stays dark, and the
colour bar reads the same on every photo. The overlay's opacity follows the value, so a photo
with no evidence shows as the photo itself.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from castinspect.core.records import Inspection
from castinspect.inference.annotate import banner
from castinspect.models.network import Network, in_batches, to_input


def gradcam(model: Network, images: np.ndarray, ok_index: int | None, batch_size: int = 32) -> np.ndarray:
    """Without an OK class (``ok_index`` None) the score explained is the log-probability of the
    most probable defect type."""
    """Heatmaps (N, S, S) in [0, 1] for decoded uint8 images (N, S, S)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])))
        # A model that averages each photo with its mirror image is explained the same way: the
        # score is the averaged one, and each view's map is turned back before the two are added.
        views = model.views(x)
        with torch.enable_grad():
            feats = [model.forward_features(v) for v in views]
            log_p = torch.log_softmax(sum(model.forward_head(f) for f in feats) / len(views), dim=1)
            if ok_index is None:
                score = log_p.max(dim=1).values
            else:
                defect = torch.cat([log_p[:, :ok_index], log_p[:, ok_index + 1:]], dim=1).logsumexp(dim=1)
                score = defect - log_p[:, ok_index]
            # autograd.grad, not backward(): nothing accumulates in the parameters' .grad, so one
            # model can serve heatmaps to several threads at once (the server).
            grads = torch.autograd.grad(score.sum(), feats)
        cams = [F.relu((g.mean(dim=(2, 3), keepdim=True) * f.detach()).sum(dim=1, keepdim=True))
                for g, f in zip(grads, feats)]
        cam = cams[0] + cams[1].flip(-1) if len(cams) == 2 else cams[0]
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
        out.append((cam / peak).numpy())
    size = images.shape[-1] if len(images) else 0
    return np.concatenate(out) if out else np.zeros((0, size, size), np.float32)


def anomaly_maps(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """An anomaly model's maps (N, S, S) in [0, 1] for decoded uint8 images: its patch distances
    (``PatchCore.anomaly_maps``), from each photo's least to its most departing spot: every good
    surface is some distance from the bank, and that floor is no evidence of a defect."""
    def scaled(x: torch.Tensor) -> torch.Tensor:
        maps = model.anomaly_maps(x).flatten(1)
        low, high = maps.amin(1, keepdim=True), maps.amax(1, keepdim=True)
        return ((maps - low) / (high - low).clamp_min(1e-12)).view(-1, *x.shape[-2:]).cpu()

    out = in_batches(model, np.ascontiguousarray(images), batch_size, scaled)
    size = images.shape[-1] if len(images) else 0
    return torch.cat(out).numpy() if out else np.zeros((0, size, size), np.float32)


HEATMAP_CAPTION = ("Heatmap: where the model saw evidence of a defect (Grad-CAM), scaled by p(defect), "
                   "on one scale for every photo: a confident OK part shows no colour; 1 is a certain "
                   "defect's strongest spot.")


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    """The heatmap (any size, [0, 1]) over the photo in the JET colours, each pixel's opacity its
    value times ``alpha`` (no evidence: the photo as it is): BGR, photo size."""
    h, w = gray.shape
    heat = np.clip(cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
    photo = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR).astype(np.float32)
    a = (alpha * heat)[..., None]
    return np.clip(photo * (1 - a) + colour * a, 0, 255).astype(np.uint8)


def colour_bar(height: int, width: int = 44) -> np.ndarray:
    """The heatmap's colour scale, 0 at the bottom to 1 at the top, labelled: BGR."""
    bar = np.zeros((height, width, 3), np.uint8) + 255
    ramp = np.linspace(255, 0, height).astype(np.uint8)[:, None].repeat(12, axis=1)
    bar[:, 4:16] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
    for value, y in (("1", 10), ("0.5", height // 2 + 4), ("0", height - 3)):
        cv2.putText(bar, value, (19, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (40, 40, 40), 1, cv2.LINE_AA)
    return bar


def explained(gray: np.ndarray, heatmap: np.ndarray, width: int = 300) -> np.ndarray:
    """The photo, its heatmap overlay beside it and the colour scale: BGR, ``width`` per picture."""
    h = int(round(gray.shape[0] * width / gray.shape[1]))
    photo = cv2.resize(gray, (width, h), interpolation=cv2.INTER_AREA)
    return np.hstack([cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR), overlay(photo, heatmap), colour_bar(h)])


def side_by_side(gray: np.ndarray, heatmap: np.ndarray, insp: Inspection, width: int = 300) -> np.ndarray:
    """``explained`` under the verdict banner (label, p(defect), threshold): BGR."""
    picture = explained(gray, heatmap, width)
    return np.vstack([banner(insp, picture.shape[1]), picture])
