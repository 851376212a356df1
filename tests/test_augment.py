import torch

from castinspect.augment import augment_batch
from castinspect.config import AugmentConfig


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
                        gamma=0, noise_std=0, blur_prob=0)
    x = torch.rand(2, 1, 32, 32)
    y = augment_batch(x.clone(), cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-5)
