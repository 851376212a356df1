import pytest
import torch

from castinspect.core.config import ModelConfig
from castinspect.models.network import count_flops, count_parameters
from castinspect.models.registry import SIZES, build_model, compact, mirror_average


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("classes", [2, 4])
def test_shapes_and_gradients(size, classes):
    torch.manual_seed(0)
    cfg = compact(size, input_size=64)
    model = build_model(cfg, classes)
    x = torch.rand(3, 1, 64, 64)
    out = model(x)
    assert out.shape == (3, classes) and torch.isfinite(out).all()
    out.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    feats = model.forward_features(x)
    assert feats.shape[1] == cfg.widths[-1] and feats.shape[-1] == 64 // 2 ** len(cfg.widths)


def test_default_compact_cnn_is_compact():
    model = build_model(ModelConfig(backbone="castnet"), 2)
    assert count_parameters(model) <= 300_000
    assert count_flops(model, 128) > 1e6


def test_flops_grow_with_input():
    model = build_model(compact("tiny"), 2)
    assert count_flops(model, 128) > 3.5 * count_flops(model, 64)


def test_per_image_normalisation_ignores_light_gain_and_offset():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 64) * 0.6 + 0.2
    varied = x * 0.7 + 0.05  # dimmer lamp, raised black level: no clipping
    per_image = build_model(compact("tiny", input_size=64), 2).eval()
    fixed = build_model(compact("tiny", input_size=64, normalize="fixed"), 2).eval()
    fixed.load_state_dict(per_image.state_dict())
    with torch.no_grad():
        a, b = per_image.forward_features(x), per_image.forward_features(varied)
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()
        a, b = fixed.forward_features(x), fixed.forward_features(varied)
        assert (a - b).abs().max() > 0.05 * a.abs().max()  # fixed constants do not


def test_flat_image_is_finite():
    model = build_model(compact("tiny", input_size=64), 2).eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.full((1, 1, 64, 64), 0.5))).all()


def test_unknown_normalisation_is_refused():
    model = build_model(compact("tiny", input_size=64, normalize="bogus"), 2)
    with pytest.raises(ValueError, match="normalisation"):
        model(torch.rand(1, 1, 64, 64))


def test_pretrained_backbone_keeps_imagenet_filters_for_gray_input():
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite_pytorch import EfficientNet

    from castinspect.models.litenet import LiteNet, pretrained_weights_path

    cfg = ModelConfig(backbone="efficientnet_lite0", input_size=64)
    gray_net = build_model(cfg, 2, pretrained=True).eval()
    assert isinstance(gray_net, LiteNet)
    rgb_net = EfficientNet.from_name("efficientnet-lite0", image_size=64, num_classes=1000)
    rgb_net.load_state_dict(torch.load(pretrained_weights_path(), weights_only=True))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():  # the summed stem on gray == the RGB stem on gray copied to 3 channels
        assert torch.allclose(gray_net.stem[0](x), rgb_net._conv_stem(x.expand(-1, 3, -1, -1)), atol=1e-5)
    assert all(m.momentum == 0.1 for m in gray_net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    out = gray_net(x)
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    # Grad-CAM's map is the stride-16 stage (twice the head's resolution), and the split is exact.
    feats = gray_net.forward_features(x)
    assert feats.shape == (2, 112, 4, 4)
    with torch.no_grad():  # (evaluation mode averages the photo with its mirror image)
        mirrored = gray_net.forward_head(gray_net.forward_features(x.flip(-1)))
        assert torch.allclose((gray_net.forward_head(feats) + mirrored) / 2, out, atol=1e-6)
    assert isinstance(build_model(ModelConfig(input_size=64), 2), LiteNet)  # "auto" is the pretrained one
    # Without pretrained weights the stem is a fresh random one.
    assert not torch.allclose(build_model(cfg, 2).stem[0].weight, gray_net.stem[0].weight)


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="backbone"):
        build_model(ModelConfig(backbone="resnet"), 2)


@pytest.mark.parametrize("backbone", ["castnet", "efficientnet_lite0"])
def test_mirror_averaging_judges_a_photo_and_its_mirror_image_alike(backbone):
    cfg = ModelConfig(backbone=backbone, input_size=64, widths=(8, 16), depths=(1, 1), mirror_average=True)
    model = build_model(cfg, 2, pretrained=True).eval()  # (random EfficientNet features are ~0)
    torch.nn.init.normal_(model.fc.weight, std=1.0)  # logits of a usable scale
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert torch.allclose(out, model(x.flip(-1)), atol=1e-5)  # mirror-invariant by construction
        single = model.forward_head(model.forward_features(x))
        assert not torch.allclose(out, single, atol=1e-5)  # and not what one view alone gives
        model.train()  # training sees single views
        torch.manual_seed(0)
        a = model(x)
        torch.manual_seed(0)
        assert torch.allclose(a, model.forward_head(model.forward_features(x)))


def test_mirror_averaging_defaults_per_backbone():
    assert mirror_average(ModelConfig()) and mirror_average(ModelConfig(backbone="efficientnet_lite0"))
    assert not mirror_average(compact("small"))  # the compact CNN: measured no better
    assert not mirror_average(ModelConfig(mirror_average=False))  # an explicit choice stands
