"""The audit on synthetic castings with planted copies: exact, turned + mirrored, shifted + zoomed
+ relit. Distinct parts of the same design must not be flagged."""

import json

import cv2
import numpy as np
import pytest
from conftest import REAL_DATA
from typer.testing import CliRunner

from castinspect.cli import app
from castinspect.data.audit import audit, summarize
from castinspect.data.parts import groups

SIZE = 300


def textured_part(rng: np.random.Generator) -> np.ndarray:
    """One product's design (disc, hub, vane ring) with this part's own casting texture."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    d = np.hypot(xx - SIZE / 2 - rng.uniform(-4, 4), yy - SIZE / 2 - rng.uniform(-4, 4))
    img = np.where(d < 125, 165.0, 200.0)
    img[(d > 45) & (d < 80)] = 50  # the dark ring of vanes
    img[d < 20] = 120  # the hole
    texture = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32), (0, 0), 5.0)
    img = img + texture / texture.std() * 12
    for _ in range(3):  # a few burrs and pits unique to this part
        a, r = rng.uniform(0, 2 * np.pi), rng.uniform(85, 120)
        cv2.circle(img, (int(SIZE / 2 + r * np.cos(a)), int(SIZE / 2 + r * np.sin(a))), int(rng.integers(2, 5)), 70, -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def transformed(img: np.ndarray, angle: float, scale: float, shift: tuple[float, float],
                gain: float, mirror: bool) -> np.ndarray:
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
    m[:, 2] += shift
    out = cv2.warpAffine(img, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
    out = out[:, ::-1] if mirror else out
    return np.clip(out * gain, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(5)
    parts = [textured_part(rng) for _ in range(24)]
    for split, cls in (("train", "ok"), ("test", "ok"), ("train", "bad"), ("test", "bad")):
        (root / split / cls).mkdir(parents=True)
    for i, p in enumerate(parts[:16]):
        cv2.imwrite(str(root / "train" / ("ok" if i % 2 else "bad") / f"part{i}.png"), p)
    for i, p in enumerate(parts[16:], start=16):  # distinct parts in test: must not be flagged
        cv2.imwrite(str(root / "test" / ("ok" if i % 2 else "bad") / f"part{i}.png"), p)
    (root / "test" / "bad" / "exact.png").write_bytes((root / "train" / "bad" / "part0.png").read_bytes())
    cv2.imwrite(str(root / "test" / "ok" / "turned.png"), transformed(parts[1], 137, 1.0, (0, 0), 1.0, True))
    cv2.imwrite(str(root / "test" / "bad" / "moved.png"), transformed(parts[2], 23, 1.05, (6, -5), 0.8, False))
    cv2.imwrite(str(root / "train" / "ok" / "copy3.png"), transformed(parts[3], 90, 0.95, (-5, 4), 1.15, False))
    (root / "test" / "ok" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def test_planted_copies_found_and_distinct_parts_not_flagged(planted):
    result = audit(planted)
    summary = summarize(result)
    assert summary["exact_cross_split"] == 1
    assert summary["near_cross_split"] == 3  # exact, turned, moved
    names = {(p["a"].split("/")[-1], p["b"].split("/")[-1]) for p in summary["pairs"]}
    flat = {n for pair in names for n in pair}
    assert {"exact.png", "turned.png", "moved.png", "copy3.png"} <= flat
    assert all(not (a.startswith("part") and b.startswith("part")) for a, b in names), names
    assert summary["near_within_split"]["train"] == 2  # part3 and its copy
    assert summary["unreadable"] and summary["unreadable"][0]["path"].endswith("broken.png")
    assert summary["class_counts"]["test"] == {"bad": 6, "ok": 6}


def test_groups_join_copies_only(planted):
    result = audit(planted)
    g = groups(len(result.images), result.pairs)
    by_name = {im.path.split("/")[-1]: g[i] for i, im in enumerate(result.images)}
    assert by_name["exact.png"] == by_name["part0.png"]
    assert by_name["turned.png"] == by_name["part1.png"]
    assert by_name["part4.png"] != by_name["part5.png"]


def test_cli_exits_zero_and_writes_json_and_report(planted, tmp_path):
    r = CliRunner().invoke(app, ["audit", str(planted), "--json", str(tmp_path / "a.json"),
                                 "--report", str(tmp_path / "a.html")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["exact_cross_split"] == 1 and data["near_cross_split"] == 3 and data["pairs"]
    assert "Closest cross-split pairs" in (tmp_path / "a.html").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "test").is_dir(), reason="the casting dataset is not beside the project")
def test_real_dataset_leaks_are_found():
    summary = summarize(audit(REAL_DATA))
    assert summary["images"] == 7348 and not summary["unreadable"]
    assert summary["exact_cross_split"] == 64  # byte-identical test/train files (data README)
    assert summary["near_cross_split"] >= 249  # the 64 px, 8-orientation correlation's lower bound
    assert summary["near_cross_split"] < 715  # some test photos are parts never seen in train
