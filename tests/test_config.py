import pytest

from castinspect.config import Config, ModelConfig


def test_round_trip(tmp_path):
    cfg = Config()
    cfg.model = ModelConfig.preset("base", input_size=96)
    cfg.train.epochs = 3
    cfg.save(tmp_path / "c.yaml")
    back = Config.load(tmp_path / "c.yaml")
    assert back == cfg


def test_partial_and_unknown_keys():
    cfg = Config.from_dict({"model": {"size": "tiny"}, "train": {"lr": 0.01}})
    assert cfg.model.widths == ModelConfig.preset("tiny").widths and cfg.train.lr == 0.01
    with pytest.raises(ValueError, match="unknown"):
        Config.from_dict({"train": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="unknown model size"):
        ModelConfig.preset("huge")


def test_auto_backbone_is_pretrained_only_for_small_training_sets():
    import importlib.util

    from castinspect.config import AUTO_PRETRAINED_MAX, resolve_backbone

    cfg = Config()
    assert cfg.model.backbone == "auto"
    big = resolve_backbone(cfg, AUTO_PRETRAINED_MAX + 1)
    assert big.model.backbone == "castnet" and big.train.lr == 3e-3
    small = resolve_backbone(cfg, 300)
    installed = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
    assert small.model.backbone == ("efficientnet_lite0" if installed else "castnet")
    cfg.model.backbone = "castnet"
    assert resolve_backbone(cfg, 300).model.backbone == "castnet"  # an explicit choice stands
