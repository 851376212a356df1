import pytest
import torch

from castinspect.models.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    save_checkpoint,
)


def test_round_trip_gives_same_outputs(trained_run, tmp_path):
    ckpt = trained_run[0].checkpoint
    save_checkpoint(ckpt, tmp_path / "m.ckpt")
    back = load_checkpoint(tmp_path / "m.ckpt")
    assert back.classes == ckpt.classes and back.threshold == ckpt.threshold
    assert back.config == ckpt.config and back.model_id == ckpt.model_id
    x = torch.rand(2, 1, ckpt.config.model.input_size, ckpt.config.model.input_size)
    with torch.no_grad():
        assert torch.equal(ckpt.build_network()(x), back.build_network()(x))


def test_loads_with_weights_only_and_holds_no_modules(model_path):
    payload = torch.load(model_path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_refuses_non_checkpoints_and_newer_formats(tmp_path, trained_run):
    (tmp_path / "x.ckpt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a castinspect checkpoint"):
        load_checkpoint(tmp_path / "x.ckpt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")
    save_checkpoint(trained_run[0].checkpoint, tmp_path / "new.ckpt", extra={"format_version": FORMAT_VERSION + 1})
    with pytest.raises(ValueError, match="newer"):
        load_checkpoint(tmp_path / "new.ckpt")


def test_temperature_round_trip_and_use(trained_run, tmp_path, synth_root):
    import dataclasses

    from castinspect.inference.predict import Predictor

    ckpt = dataclasses.replace(trained_run[0].checkpoint, temperature=4.0)
    save_checkpoint(ckpt, tmp_path / "t.ckpt")
    assert load_checkpoint(tmp_path / "t.ckpt").temperature == 4.0
    files = sorted(str(p) for p in synth_root.glob("test/*/*.jpeg"))[:8]
    hot = list(Predictor.load(tmp_path / "t.ckpt").predict(files))
    base = list(Predictor(dataclasses.replace(ckpt, temperature=1.0)).predict(files))
    assert [h.label for h in hot] == [b.label for b in base]  # same ranking, same decisions at 0.5
    assert all(abs(h.score - 0.5) <= abs(b.score - 0.5) + 1e-9 for h, b in zip(hot, base))


def test_format_1_checkpoints_keep_fixed_normalisation(trained_run, tmp_path):
    ckpt = trained_run[0].checkpoint
    save_checkpoint(ckpt, tmp_path / "v2.ckpt")
    payload = torch.load(tmp_path / "v2.ckpt", weights_only=True)
    payload["format_version"] = 1
    del payload["config"]["model"]["normalize"]  # format 1 had no such key
    torch.save(payload, tmp_path / "v1.ckpt")
    assert load_checkpoint(tmp_path / "v1.ckpt").config.model.normalize == "fixed"
    assert load_checkpoint(tmp_path / "v2.ckpt").config.model.normalize == ckpt.config.model.normalize


def test_format_3_checkpoints_name_mirror_averaging_flip_average(trained_run, tmp_path):
    ckpt = trained_run[0].checkpoint
    save_checkpoint(ckpt, tmp_path / "v4.ckpt")
    payload = torch.load(tmp_path / "v4.ckpt", weights_only=True)
    payload["format_version"] = 3
    payload["config"]["model"]["flip_average"] = True  # the name before format 4
    del payload["config"]["model"]["mirror_average"]
    torch.save(payload, tmp_path / "v3.ckpt")
    old = load_checkpoint(tmp_path / "v3.ckpt")
    assert old.config.model.mirror_average is True and old.metadata()["mirror_average"] is True
    assert old.build_network().mirror_average is True
    assert load_checkpoint().config.model.mirror_average is True  # the bundled model is format 3
