import csv
import json

import pytest
from conftest import tiny_config

from castinspect.training.schedule import lr_factor, schedule_length
from castinspect.training.train import fit


def test_training_learns_the_synthetic_defects(trained_run):
    result, metrics = trained_run
    # Chance is 0.5; a model that learned blobs and scratches is near perfect on held-out parts.
    assert metrics["validation"]["accuracy"] >= 0.9
    assert metrics["test"]["accuracy"] >= 0.9
    assert metrics["test"]["n"] == 60


def test_run_directory_contents(trained_run):
    run_dir = trained_run[0].run_dir
    for name in ("config.yaml", "history.csv", "metrics.json", "model.ckpt", "last.ckpt", "report.html"):
        assert (run_dir / name).is_file(), name
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert len(rows) == len(trained_run[0].history) >= 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"model", "threshold", "validation", "test", "parameters"}
    report = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in report and 'src="http' not in report  # opens offline


def test_validation_split_is_disjoint_from_training(trained_run, synth_root):
    info = trained_run[0].checkpoint.info["data"]
    assert sum(info["train"].values()) + sum(info["val"].values()) == 300
    val_paths = set(trained_run[0].val.paths)
    assert not any("/test/" in p for p in val_paths)


def test_refuses_non_empty_run_dir(synth_root, tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(FileExistsError):
        fit(tiny_config(1), synth_root, tmp_path)


def test_resume_continues_from_last_epoch(synth_root, tmp_path):
    cfg = tiny_config(2)
    first = fit(cfg, synth_root, tmp_path)
    assert len(first.history) == 2
    cfg.train.epochs = 3
    resumed = fit(cfg, synth_root, tmp_path, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first.history


def test_small_datasets_get_longer_schedules():
    assert schedule_length(30, 10, steps_per_epoch=70, min_steps=1200) == (30, 10)  # full data: as asked
    epochs, patience = schedule_length(30, 10, steps_per_epoch=1, min_steps=1200)  # 50 photos
    assert epochs == 1200 and patience == 400


def test_a_step_cap_shortens_schedules_on_large_datasets():
    assert schedule_length(30, 10, steps_per_epoch=87, min_steps=500, max_steps=900) == (10, 4)
    assert schedule_length(30, 10, steps_per_epoch=10, min_steps=500, max_steps=900) == (50, 17)  # small: stretched
    assert schedule_length(30, 10, steps_per_epoch=5000, min_steps=0, max_steps=900) == (1, 1)  # never below an epoch


def test_lr_schedule_warms_up_and_decays():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_validation_split_keeps_copies_of_a_part_together(synth_root, tmp_path):
    import shutil

    import cv2

    from castinspect.training.inputs import split_train_val

    root = tmp_path / "d"
    shutil.copytree(synth_root / "train", root / "train")
    originals = sorted((root / "train" / "ok_front").iterdir())[:20]
    for f in originals:  # a turned copy of each: the same part photographed again
        cv2.imwrite(str(f.with_name(f.stem + "_turned.png")), cv2.rotate(cv2.imread(str(f)), cv2.ROTATE_90_CLOCKWISE))
    cfg = tiny_config(1)
    train, val, _ = split_train_val(cfg, root)
    val_names = {p.split("/")[-1] for p in val.paths}
    for f in originals:
        assert (f.name in val_names) == (f.stem + "_turned.png" in val_names), f.name
    assert 0.1 < len(val.paths) / (len(train.paths) + len(val.paths)) < 0.3


def test_a_tiny_validation_split_does_not_pick_the_epoch(synth_root, tmp_path):
    cfg = tiny_config(4)
    cfg.train.patience = 1
    cfg.train.min_val_to_select = 10_000  # every validation split is "too small" here
    result = fit(cfg, synth_root, tmp_path)
    assert len(result.history) == 4  # no early stopping
    assert result.checkpoint.info["best_epoch"] == 4  # the last weights
    assert result.checkpoint.temperature == 1.0  # no temperature fitted on a handful of photos


def test_weight_average_follows_the_model():
    import torch

    from castinspect.training.average import WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    for _ in range(200):
        average.update(model)
    assert torch.allclose(average.model[0].weight, model[0].weight, atol=1e-6)
    assert average.model[1].num_batches_tracked == model[1].num_batches_tracked


def test_device_setting_is_resolved_and_checked():
    import torch

    from castinspect.core.runtime import training_device

    assert training_device("cpu").type == "cpu"
    assert training_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        training_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            training_device("cuda")
