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


def test_auto_backbone_is_the_pretrained_one_with_its_recipe():
    from castinspect.config import BACKBONE_DEFAULTS, resolve_backbone

    cfg = Config()
    assert cfg.model.backbone == "auto"
    auto = resolve_backbone(cfg)
    assert auto.model.backbone == "efficientnet_lite0"
    assert (auto.train.lr, auto.train.min_steps, auto.train.max_steps) == BACKBONE_DEFAULTS["efficientnet_lite0"]
    assert cfg.model.backbone == "auto"  # a copy: the caller's config is unchanged
    cfg.model.backbone = "castnet"
    castnet = resolve_backbone(cfg)
    assert castnet.model.backbone == "castnet"  # an explicit choice stands, with its own recipe
    assert (castnet.train.lr, castnet.train.min_steps, castnet.train.max_steps) == BACKBONE_DEFAULTS["castnet"]
    assert auto.model.flip_average is True and castnet.model.flip_average is False


def test_settings_given_in_a_config_stand_whatever_the_backbone():
    from castinspect.config import resolve_backbone, with_backbone

    cfg = Config.from_dict({"train": {"lr": 5e-4, "max_steps": 0}, "model": {"flip_average": False}})
    for backbone in ("auto", "castnet", "efficientnet_lite0"):
        out = resolve_backbone(with_backbone(cfg, backbone))
        assert (out.train.lr, out.train.max_steps, out.model.flip_average) == (5e-4, 0, False)
    with pytest.raises(ValueError, match="unknown backbone"):
        with_backbone(cfg, "resnet")


def test_yaml_without_a_backbone_keeps_the_default_unless_it_names_a_size():
    assert Config.from_dict({"model": {"input_size": 224}}).model.backbone == "auto"
    tiny = Config.from_dict({"model": {"size": "tiny"}}).model
    assert tiny.backbone == "castnet" and tiny.widths == (8, 16, 32, 64)
    assert Config.from_dict({"model": {"size": "tiny", "backbone": "efficientnet_lite0"}}).model.backbone == "efficientnet_lite0"
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg  # a saved config reads back as it was
