import pytest
import torch

from castinspect.config import MODEL_PRESETS, ModelConfig
from castinspect.model import build_model, count_flops, count_parameters


@pytest.mark.parametrize("size", sorted(MODEL_PRESETS))
@pytest.mark.parametrize("classes", [2, 4])
def test_shapes_and_gradients(size, classes):
    torch.manual_seed(0)
    cfg = ModelConfig.preset(size, input_size=64)
    model = build_model(cfg, classes)
    x = torch.rand(3, 1, 64, 64)
    out = model(x)
    assert out.shape == (3, classes) and torch.isfinite(out).all()
    out.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    feats = model.forward_features(x)
    assert feats.shape[1] == cfg.widths[-1] and feats.shape[-1] == 64 // 2 ** len(cfg.widths)


def test_default_model_is_compact():
    model = build_model(ModelConfig(), 2)
    assert count_parameters(model) <= 300_000
    assert count_flops(model, 128) > 1e6


def test_flops_grow_with_input():
    model = build_model(ModelConfig.preset("tiny"), 2)
    assert count_flops(model, 128) > 3.5 * count_flops(model, 64)
