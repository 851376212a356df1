"""The learning curve: nested grouped subsets, one fixed test set of unseen parts, resumable."""

import csv
import json

import cv2
import numpy as np
import pytest
from conftest import make_casting, tiny_config

from castinspect.lab.learning_curve import draw_subset, learning_curve


@pytest.fixture(scope="module")
def flat_root(tmp_path_factory):
    """Class folders directly under the root (no train/test folders), some parts shot twice."""
    root = tmp_path_factory.mktemp("flat")
    rng = np.random.default_rng(5)
    for cls, defect in (("def_front", "blob"), ("ok_front", None)):
        (root / cls).mkdir()
        for i in range(70):
            img = make_casting(rng, defect)
            cv2.imwrite(str(root / cls / f"{i}.png"), img)
            if i % 4 == 0:
                cv2.imwrite(str(root / cls / f"{i}_turned.png"), cv2.rotate(img, cv2.ROTATE_180))
    return root


def test_subsets_are_stratified_nested_and_seeded():
    labels = np.array([0] * 60 + [1] * 40)
    small, big = draw_subset(labels, 20, seed=1), draw_subset(labels, 50, seed=1)
    assert len(small) == 20 and (labels[small] == 0).sum() == 12
    assert set(small) <= set(big)
    assert not np.array_equal(small, draw_subset(labels, 20, seed=2))
    assert (labels[draw_subset(labels, 3, 0)] == 1).sum() == 2  # two per class at least


def test_curve_on_a_dataset_without_a_test_folder(flat_root, tmp_path):
    cfg = tiny_config(4)
    out = tmp_path / "curve"
    lines = []
    curve = learning_curve(flat_root, out, sizes=(40, 0), backbones=("castnet",), seeds=2, small=40, base=cfg,
                           report=lines.append)
    points = curve["points"]
    assert [(p["size"], p["seed"]) for p in points] == [(40, 0), (40, 1), (curve["pool_photos"], 0)]
    assert all(p["test"]["n"] == curve["test_photos"] > 0 for p in points)  # one fixed test set
    rows = {r["photos"]: r for r in curve["mean"]}
    assert rows[40]["seeds"] == 2 and rows[curve["pool_photos"]]["seeds"] == 1
    assert (out / "curve.png").stat().st_size > 0 and (out / "curve.csv").exists()

    # No part on both sides: a photo and its turned copy share their split in the manifest.
    def key(path: str) -> str:  # class folder and file: "1.png" is in both classes
        return "/".join(path.split("/")[-2:])

    split = {key(r["path"]): r["split"] for r in csv.DictReader(open(out / "split.csv"))}
    for name, side in split.items():
        if name.endswith("_turned.png"):
            assert split[name.replace("_turned", "")] == side
    # Each run trained only on photos of the training side, and was tested on all the test side.
    sub = list(csv.DictReader(open(out / "castnet" / "n40_s1" / "subset.csv")))
    test_names = {n for n, s in split.items() if s == "test"}
    assert {key(r["path"]) for r in sub if r["split"] == "test"} == test_names
    assert not {key(r["path"]) for r in sub if r["split"] != "test"} & test_names
    assert {r["split"] for r in sub} == {"train", "val", "test"}

    # A second call reads the finished runs back instead of training again.
    again = learning_curve(flat_root, out, sizes=(40, 0), backbones=("castnet",), seeds=2, small=40, base=cfg)
    assert again["points"] == json.loads((out / "curve.json").read_text())["points"] == points


def test_cli_reads_a_finished_curve_back(flat_root, tmp_path):
    from test_cli import cli

    cfg = tiny_config(2)
    cfg.save(tmp_path / "tiny.yaml")
    args = ["learning-curve", str(flat_root), "--out", str(tmp_path / "c"), "--size", "30", "--seeds", "1",
            "--backbone", "castnet", "--config", str(tmp_path / "tiny.yaml")]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "learning curve" in first.stdout and "castnet" in first.stdout
    again = cli(*args)  # nothing left to train: read back, same table
    assert again.returncode == 0 and again.stdout == first.stdout
