import numpy as np
import torch
from conftest import make_casting

from castinspect.core.config import AugmentConfig
from castinspect.data.augment import augment_batch, random_background, random_jpeg

OFF = dict(flips=False, rotate_deg=0, shift=0, scale=0, tilt=0, brightness=0, exposure=0, background=0,
           contrast=0, gamma=0, noise_std=0, blur_prob=0, jpeg_prob=0)


def test_keeps_shape_range_and_changes_images():
    x = torch.rand(8, 1, 48, 48)
    g = torch.Generator().manual_seed(0)
    y = augment_batch(x.clone(), AugmentConfig(), g)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert (y - x).abs().mean() > 0.01


def test_reproducible_with_seed():
    x = torch.rand(4, 1, 32, 32)
    a = augment_batch(x.clone(), AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment_batch(x.clone(), AugmentConfig(), torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_all_off_is_identity_up_to_resampling():
    cfg = AugmentConfig(**OFF)
    x = torch.rand(2, 1, 32, 32)
    y = augment_batch(x.clone(), cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-5)


def test_jpeg_recompression_hits_the_chosen_share_and_keeps_the_picture():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    x = ((xx + yy) / 2).expand(6, 1, 64, 64).clone()  # a smooth ramp: JPEG blocks show on it
    y = random_jpeg(x.clone(), 1.0, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    per_image = (y - x).abs().flatten(1).mean(1)
    assert (per_image > 0).all() and (per_image < 0.05).all()  # changed, still the same picture
    assert torch.equal(random_jpeg(x.clone(), 0.0, torch.Generator().manual_seed(0)), x)


def test_tilt_keystones_the_frame_about_its_centre():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 65), torch.linspace(0, 1, 65), indexing="ij")
    x = ((xx * 8).floor() % 2).expand(8, 1, 65, 65).clone()  # vertical stripes
    y = augment_batch(x.clone(), AugmentConfig(**{**OFF, "tilt": 0.1}), torch.Generator().manual_seed(0))
    assert torch.allclose(y[:, 0, 32, 32], x[:, 0, 32, 32], atol=1e-4)  # the centre stays
    assert ((y - x).abs().flatten(1).mean(1) > 0.01).sum() >= 6  # the stripes lean (a random, some small, tilt)


def test_over_exposure_clips_what_a_gain_would_keep():
    x = torch.linspace(0.2, 0.9, 64 * 64).view(1, 1, 64, 64).expand(32, 1, 64, 64).clone()
    y = augment_batch(x.clone(), AugmentConfig(**{**OFF, "exposure": 1.0}), torch.Generator().manual_seed(0))
    clipped = (y >= 1).flatten(1).float().mean(1)
    assert clipped.max() > 0.2 and (clipped == 0).any()  # some photos lose their bright half, not all


def test_background_changes_around_the_part_only():
    rng = np.random.default_rng(3)
    photos = np.stack([make_casting(rng, None, 128) for _ in range(4)])
    x = torch.from_numpy(photos).float().div(255).unsqueeze(1)
    y = random_background(x.clone(), 0.16, torch.Generator().manual_seed(1))
    diff = (y - x)[:, 0]
    centre, corner = diff[:, 54:74, 54:74], diff[:, :12, :12]  # the part's hub, the background
    assert centre.abs().max() < 0.02 and (corner.abs().mean(dim=(1, 2)) > 0.01).sum() >= 3
    texture = torch.rand(2, 1, 64, 64)  # no part on a background: left alone
    assert torch.equal(random_background(texture.clone(), 0.16, torch.Generator().manual_seed(1)), texture)


def test_background_and_exposure_augmentation_are_off_where_no_part_stands_on_a_background():
    from castinspect.core.config import Config
    from castinspect.data.datasets import Decoded
    from castinspect.training.inputs import resolve_part_augmentation

    rng = np.random.default_rng(0)
    castings = np.stack([make_casting(rng, None, 96) for _ in range(12)])
    textures = rng.integers(0, 256, (12, 96, 96), dtype=np.uint8)
    cfg = Config()
    for photos, on in ((castings, True), (textures, False)):
        decoded = Decoded(photos, np.zeros(12, int), ["a"], [f"{i}.png" for i in range(12)])
        a = resolve_part_augmentation(cfg, decoded).augment
        assert (a.background, a.exposure) == ((cfg.augment.background, cfg.augment.exposure) if on else (0.0, 0.0))
    assert cfg.augment.background > 0 and cfg.augment.exposure > 0  # the caller's config is not changed
