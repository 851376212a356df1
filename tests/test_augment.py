import torch

from castinspect.core.config import AugmentConfig
from castinspect.data.augment import augment_batch, random_jpeg


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
    cfg = AugmentConfig(flips=False, rotate_deg=0, shift=0, scale=0, brightness=0, contrast=0,
                        gamma=0, noise_std=0, blur_prob=0, jpeg_prob=0)
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
