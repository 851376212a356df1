"""Leak-free splits: copies of one part never straddle train/val/test; train and evaluate take
the manifest."""

import csv
import json

import cv2
import numpy as np
import pytest
from conftest import make_casting, tiny_config
from typer.testing import CliRunner

from castinspect.cli import app
from castinspect.data.datasets import read_manifest
from castinspect.data.split import make_split
from castinspect.training.run import train_and_evaluate


@pytest.fixture(scope="module")
def root_with_copies(tmp_path_factory):
    root = tmp_path_factory.mktemp("copies")
    rng = np.random.default_rng(3)
    for cls, defect in (("def_front", "blob"), ("ok_front", None)):
        folder = root / "all" / cls
        folder.mkdir(parents=True)
        for i in range(60):
            img = make_casting(rng, defect)
            cv2.imwrite(str(folder / f"{i}.png"), img)
            if i % 3 == 0:  # some parts photographed twice more: turned, and mirrored
                cv2.imwrite(str(folder / f"{i}_turned.png"), cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE))
                cv2.imwrite(str(folder / f"{i}_mirrored.png"), img[:, ::-1])
    return root


def test_split_keeps_parts_whole(root_with_copies, tmp_path):
    result = make_split(root_with_copies, tmp_path / "m.csv", val_fraction=0.2, test_fraction=0.2, seed=0)
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert len(rows) == 2 * (60 + 40)
    side = {(r["label"], r["path"].split("/")[-1]): r["split"] for r in rows}
    for cls in ("def_front", "ok_front"):
        for i in range(0, 60, 3):
            assert side[(cls, f"{i}.png")] == side[(cls, f"{i}_turned.png")] == side[(cls, f"{i}_mirrored.png")]
    by_group: dict[str, set] = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_group.values())
    assert result["groups"] == len(by_group) == 2 * 60
    assert sum(result["counts"][name]["groups"] for name in ("train", "val", "test")) == len(by_group)
    for name, share in (("test", 0.2), ("val", 0.2)):
        n = result["counts"][name]["def_front"] + result["counts"][name]["ok_front"]
        assert 0.1 * 200 <= n <= 0.3 * 200, (name, n)
    assert read_manifest(tmp_path / "m.csv", "test").classes == ["def_front", "ok_front"]


def test_train_and_evaluate_take_a_manifest(root_with_copies, tmp_path):
    make_split(root_with_copies, tmp_path / "m.csv", seed=1)
    result, metrics = train_and_evaluate(tiny_config(3), tmp_path / "m.csv", tmp_path / "run")
    counts = json.loads(json.dumps(result.checkpoint.info["data"]))
    manifest_val = read_manifest(tmp_path / "m.csv", "val")
    assert sum(counts["val"].values()) == len(manifest_val)
    assert metrics["test"]["n"] == len(read_manifest(tmp_path / "m.csv", "test"))
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "m.csv"), "--split", "val", "--model",
                                 str(tmp_path / "run" / "model.ckpt"), "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e.json").read_text())["evaluation"]["n"] == len(manifest_val)


def test_split_cli(root_with_copies, tmp_path):
    r = CliRunner().invoke(app, ["split", str(root_with_copies), "--out", str(tmp_path / "s.csv")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.csv").is_file() and "groups" in r.stdout
