import pytest

from castinspect.core.config import Config
from castinspect.models.registry import BACKBONES, choose, compact, resolve


def test_round_trip(tmp_path):
    cfg = Config()
    cfg.model = compact("base", input_size=96)
    cfg.train.epochs = 3
    cfg.save(tmp_path / "c.yaml")
    back = Config.load(tmp_path / "c.yaml")
    assert back == cfg


def test_partial_and_unknown_keys():
    cfg = Config.from_dict({"model": {"size": "tiny"}, "train": {"lr": 0.01}})
    assert resolve(cfg).model.widths == compact("tiny").widths and cfg.train.lr == 0.01
    with pytest.raises(ValueError, match="unknown"):
        Config.from_dict({"train": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="unknown model size"):
        compact("huge")


def test_auto_backbone_is_the_pretrained_one_with_its_recipe():
    cfg = Config()
    assert cfg.model.backbone == "auto"
    auto = resolve(cfg)
    assert auto.model.backbone == "efficientnet_lite0"
    lite0, castnet_row = BACKBONES["efficientnet_lite0"], BACKBONES["castnet"]
    assert (auto.train.lr, auto.train.min_steps, auto.train.max_steps) == (lite0.lr, lite0.min_steps, lite0.max_steps)
    assert cfg.model.backbone == "auto"  # a copy: the caller's config is unchanged
    cfg.model.backbone = "castnet"
    castnet = resolve(cfg)
    assert castnet.model.backbone == "castnet"  # an explicit choice stands, with its own recipe
    assert (castnet.train.lr, castnet.train.min_steps, castnet.train.max_steps) == (
        castnet_row.lr, castnet_row.min_steps, castnet_row.max_steps)
    assert auto.model.mirror_average is True and castnet.model.mirror_average is False


def test_settings_given_in_a_config_stand_whatever_the_backbone():
    cfg = Config.from_dict({"train": {"lr": 5e-4, "max_steps": 0}, "model": {"mirror_average": False}})
    for backbone in ("auto", "castnet", "efficientnet_lite0"):
        out = resolve(choose(cfg, backbone=backbone))
        assert (out.train.lr, out.train.max_steps, out.model.mirror_average) == (5e-4, 0, False)
    with pytest.raises(ValueError, match="unknown backbone"):
        choose(cfg, backbone="resnet")


def test_yaml_without_a_backbone_keeps_the_default_unless_it_names_a_size():
    assert Config.from_dict({"model": {"input_size": 224}}).model.backbone == "auto"
    tiny = resolve(Config.from_dict({"model": {"size": "tiny"}})).model
    assert tiny.backbone == "castnet" and tiny.widths == (8, 16, 32, 64)
    assert Config.from_dict({"model": {"size": "tiny", "backbone": "efficientnet_lite0"}}).model.backbone == "efficientnet_lite0"
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg  # a saved config reads back as it was
