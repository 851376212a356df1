"""Training under torchrun (gloo on the CPU): two processes make the single process's run, split up."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_DATA, real_data_available, tiny_config

from castinspect.models.checkpoint import load_checkpoint
from castinspect.training.distributed import World


def test_each_share_of_a_batch_is_weighted_so_the_average_is_the_whole_batch():
    for n in (5, 64, 65):
        shares = [World(rank, 2).share(n) for rank in range(2)]
        sizes = [len(range(n)[part]) for part, _ in shares]
        assert sum(sizes) == n and sorted(sum((list(range(n)[p]) for p, _ in shares), [])) == list(range(n))
        # DDP averages the processes' gradients: the weighted shares' means average to the batch's
        losses = [float(i * i) for i in range(n)]
        means = [sum(losses[part]) / len(losses[part]) for part, _ in shares]
        assert sum(w * m for (_, w), m in zip(shares, means)) / 2 == pytest.approx(sum(losses) / n)
    assert World(1, 2).share(1) == (slice(None), 1.0)  # one photo left: every process judges it whole
    assert World().share(7) == (slice(None), 1.0)


def run_train(root: Path, out: Path, config: Path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                if processes > 1 else [sys.executable])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*launcher, "-m", "castinspect", "train", str(root), "--out", str(out),
                           "--config", str(config), *extra], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def history(run: Path) -> list[dict]:
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not real_data_available(), reason="needs ../shared/data/casting_data")
def test_two_processes_train_the_same_steps_to_a_model_within_noise(tmp_path):
    from castinspect.models.registry import choose

    root = tmp_path / "data"
    for label in ("ok_front", "def_front"):
        (root / "train" / label).mkdir(parents=True)
        for photo in sorted((REAL_DATA / "train" / label).iterdir())[:80]:
            (root / "train" / label / photo.name).symlink_to(photo)
    cfg = choose(tiny_config(8), backbone="efficientnet_lite0")
    cfg.model.input_size, cfg.train.min_steps, cfg.train.max_steps, cfg.train.min_val_to_select = 96, 0, 0, 10
    cfg.save(tmp_path / "recipe.yaml")

    one = run_train(root, tmp_path / "one", tmp_path / "recipe.yaml", 1, "--no-search")
    two = run_train(root, tmp_path / "two", tmp_path / "recipe.yaml", 2, "--no-search")
    assert one.stdout.count("run directory:") == two.stdout.count("run directory:") == 1  # rank 0 alone reports
    single, split = load_checkpoint(tmp_path / "one" / "model.ckpt"), load_checkpoint(tmp_path / "two" / "model.ckpt")
    assert split.info["distributed"] == {"processes": 2, "backend": "gloo"} and "distributed" not in single.info
    assert split.info["steps"] == single.info["steps"] == 32
    assert [r["lr"] for r in history(tmp_path / "two")] == [r["lr"] for r in history(tmp_path / "one")]
    assert single.info["data"]["val"] == split.info["data"]["val"]  # the same validation photos

    a, b = (json.loads((tmp_path / run / "metrics.json").read_text())["validation"] for run in ("one", "two"))
    assert a["accuracy"] >= 0.7 and b["accuracy"] >= 0.7, (a["accuracy"], b["accuracy"])
    assert abs(a["accuracy"] - b["accuracy"]) <= 0.2  # 36 validation photos: ~0.15 either side is noise
    assert abs(a["roc_auc"] - b["roc_auc"]) <= 0.15


def test_rank_0_searches_and_the_other_process_trains_its_recipe(synth_root, tmp_path):
    tiny_config(4).save(tmp_path / "recipe.yaml")
    proc = run_train(synth_root, tmp_path / "run", tmp_path / "recipe.yaml", 2, "--budget", "40s")
    assert proc.stdout.count("run directory:") == 1
    assert (tmp_path / "run" / "search.csv").exists()
    ckpt = load_checkpoint(tmp_path / "run" / "model.ckpt")
    assert ckpt.info["distributed"]["processes"] == 2
