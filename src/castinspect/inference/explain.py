"""Grad-CAM: where the model looked when it called a part defective.

The heatmap is read from the feature map ``model.forward_features`` returns (each backbone's
stage is named in ``models.registry``): each feature map is weighted by the mean gradient of the
defect log-odds with respect to it, the weighted sum is clipped at zero and upsampled to the
photo. A short implementation on purpose: captum would add a dependency for ten lines of maths.

The score explained is the defect log-odds, log p(defective) - log p(ok), so the heatmap shows
what pushes the part towards "defective" whatever the verdict. Each map is scaled to its own peak
(usual for Grad-CAM): on a part judged OK it shows the little that pushed that way, so read it
with the probability beside it.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from castinspect.core.records import Inspection
from castinspect.inference.annotate import banner
from castinspect.models.network import Network, to_input


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


def overlay(gray: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap (any size, [0, 1]) blended over the photo in the JET colours: BGR, photo size."""
    h, w = gray.shape
    heat = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    photo = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    return cv2.addWeighted(photo, 1 - alpha, colour, alpha, 0)


def side_by_side(gray: np.ndarray, heatmap: np.ndarray, insp: Inspection, width: int = 300) -> np.ndarray:
    """The photo and its heatmap overlay side by side, under the verdict banner (label,
    p(defect), threshold): BGR."""
    h = int(round(gray.shape[0] * width / gray.shape[1]))
    photo = cv2.resize(gray, (width, h), interpolation=cv2.INTER_AREA)
    return np.vstack([banner(insp, 2 * width), np.hstack([cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR),
                                                          overlay(photo, heatmap)])])
