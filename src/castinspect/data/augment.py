"""Training augmentation on batches of tensors (N, 1, H, W), pixels in [0, 1].

Suited to top-view photos of parts: the part may arrive turned through any angle, mirrored, a
little off-centre or zoomed, seen by a slightly tilted camera, on a lighter or darker background,
under drifting light. The background is changed first, where the localiser finds a part; all
geometry is then one projective warp per image (a single ``grid_sample`` for the batch); light
is exposure (clipped), per-image gain, offset, gamma and a gentle illumination gradient; optics
and sensor are blur and noise; the camera's compression is JPEG at a random quality. Ranges are
broad and random, not the evaluation suite's fixed settings.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from castinspect.core.config import AugmentConfig
from castinspect.data.locate import background_weight


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def random_affine(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Rotation, mirror, zoom and shift (an affine map) after a keystone (tilt), per image."""
    n, _, h, w = x.shape
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, g) * math.pi / 180
    if cfg.flips:
        # Exact turns, most of the time, so the un-interpolated views are seen too: quarter turns,
        # or with ``quarter_turns`` off half turns only (with the mirror: the two flips).
        turns = 4 if cfg.quarter_turns else 2
        exact_turn = torch.randint(0, turns, (n,), generator=g).float() * (2 * math.pi / turns)
        exact = torch.rand(n, generator=g) < 0.5
        angle = torch.where(exact, exact_turn, angle)
    scale = _uniform(n, 1 - cfg.scale, 1 + cfg.scale, g)
    mirror = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if cfg.flips else torch.ones(n)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    shift = _uniform(2 * n, -2 * cfg.shift, 2 * cfg.shift, g).view(n, 2)
    # Output pixel centres in [-1, 1] (align_corners=False), keystoned: dividing by 1 + p.(x, y)
    # narrows the frame's edge on the side p points to.
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=x.dtype).view(1, h, 1)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=x.dtype).view(1, 1, w)
    direction = _uniform(n, 0, 2 * math.pi, g).view(n, 1, 1)
    strength = _uniform(n, 0, cfg.tilt, g).view(n, 1, 1)
    d = 1 + strength * (torch.cos(direction) * xs + torch.sin(direction) * ys)
    u, v = xs / d, ys / d
    c, s, m = cos.view(n, 1, 1), sin.view(n, 1, 1), mirror.view(n, 1, 1)
    tx, ty = shift[:, 0].view(n, 1, 1), shift[:, 1].view(n, 1, 1)
    grid = torch.stack([c * m * u - s * v + tx, s * m * u + c * v + ty], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def random_background(x: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    """The background around the part lighter or darker by up to ``amount``, the part as it was;
    photos in which the localiser finds no part on a background are left alone."""
    deltas = _uniform(x.shape[0], -amount, amount, g).tolist()
    for i, delta in enumerate(deltas):
        weight = background_weight((x[i, 0] * 255).round().to(torch.uint8).numpy())
        if weight is not None:
            x[i, 0] = x[i, 0] + delta * torch.from_numpy(weight).to(x.dtype)
    return x.clamp_(0, 1)


def random_light(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    shape = (n, 1, 1, 1)
    if cfg.exposure > 0:
        stops = _uniform(n, -cfg.exposure, cfg.exposure, g).view(shape)
        x = (x * 2 ** stops).clamp(0, 1)
    if cfg.gamma > 0:
        log_g = math.log(1 + cfg.gamma)
        gamma = torch.exp(_uniform(n, -log_g, log_g, g)).view(shape)
        x = x.clamp_min(1e-6) ** gamma
    mean = x.mean(dim=(2, 3), keepdim=True)
    contrast = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g).view(shape)
    gain = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, g).view(shape)
    x = ((x - mean) * contrast + mean) * gain
    # Uneven illumination: a linear ramp across the frame in a random direction.
    direction = _uniform(n, 0, 2 * math.pi, g)
    strength = _uniform(n, -cfg.brightness, cfg.brightness, g) * 0.5
    ys = torch.linspace(-1, 1, h).view(1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, w)
    ramp = xs * torch.cos(direction).view(n, 1, 1) + ys * torch.sin(direction).view(n, 1, 1)
    return x * (1 + strength.view(n, 1, 1) * ramp).unsqueeze(1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))


def random_jpeg(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """Re-compress a random share ``prob`` of the batch as JPEG, each at its own quality in [10, 90]."""
    picked = (torch.rand(x.shape[0], generator=g) < prob).nonzero().flatten().tolist()
    qualities = torch.randint(10, 91, (len(picked),), generator=g).tolist()
    for i, quality in zip(picked, qualities):
        img = (x[i, 0] * 255).round().to(torch.uint8).numpy()
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            x[i, 0] = torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)).to(x.dtype) / 255
    return x


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Return an augmented copy of ``x`` (float, [0, 1]); ``g`` makes it reproducible."""
    if cfg.background > 0:
        x = random_background(x.clone(), cfg.background, g)
    x = random_affine(x, cfg, g)
    x = random_light(x, cfg, g)
    if cfg.blur_prob > 0:
        blur = torch.rand(x.shape[0], generator=g) < cfg.blur_prob
        if blur.any():
            sigma = float(_uniform(1, 0.4, 1.5, g))
            x[blur] = gaussian_blur(x[blur], sigma)
    if cfg.noise_std > 0:
        std = _uniform(x.shape[0], 0, cfg.noise_std, g).view(-1, 1, 1, 1)
        x = x + torch.randn(x.shape, generator=g) * std
    x = x.clamp_(0, 1)
    return random_jpeg(x, cfg.jpeg_prob, g) if cfg.jpeg_prob > 0 else x
