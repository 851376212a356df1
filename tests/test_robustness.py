import json

import cv2
import numpy as np
import pytest

from castinspect.data.datasets import load_folder
from castinspect.evaluation.robustness import (
    SUITE,
    run_suite,
    sample_views,
    suite_metrics,
    variation_rng,
    worst,
)
from castinspect.inference.predict import Predictor


@pytest.fixture(scope="module")
def photo(synth_root):
    import cv2
    return cv2.imread(str(next((synth_root / "test" / "def_front").iterdir())), cv2.IMREAD_GRAYSCALE)


def test_every_variation_keeps_shape_and_type_and_is_seeded(photo):
    for k, v in enumerate(SUITE):
        a = v.apply(photo, variation_rng(0, k, 3))
        b = v.apply(photo, variation_rng(0, k, 3))
        changes_size = v.name.startswith("resolution")  # another camera's resolution, on purpose
        assert (a.shape == photo.shape) != changes_size and a.dtype == np.uint8, v.name
        assert np.array_equal(a, b), v.name  # same seed, same photo, same result
        assert np.array_equal(a, photo) == (v.kind == "none"), v.name  # every other one changes it


def test_camera_variations_do_what_they_say(photo):
    from castinspect.data.locate import part_mask

    by_name = {v.name: v for v in SUITE}
    rng = np.random.default_rng(0)
    mask = cv2.resize(part_mask(photo)[0], photo.shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    outer = ~cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    lighter = by_name["background_lighter"].apply(photo, rng).astype(float)
    assert lighter[outer].mean() > photo[outer].mean() + 30 and abs(lighter[inner].mean() - photo[inner].mean()) < 3
    assert by_name["resolution_0.5"].apply(photo, rng).shape == (photo.shape[0] // 2, photo.shape[1] // 2)
    assert by_name["exposure_+1EV"].apply(photo, rng).mean() > 1.5 * photo.mean()
    assert {v.kind for v in SUITE} == {"none", "photometric", "geometric", "camera"}


def test_variations_do_what_they_say(photo):
    by_name = {v.name: v for v in SUITE}
    rng = np.random.default_rng(0)
    assert by_name["darker"].apply(photo, rng).mean() < photo.mean() < by_name["brighter"].apply(photo, rng).mean()
    assert by_name["low_contrast"].apply(photo, rng).std() < 0.6 * photo.std()
    assert by_name["blur"].apply(photo, rng).std() < photo.std()
    turned = [by_name["rotate"].apply(photo, variation_rng(0, 10, i)) for i in range(2)]
    assert not np.array_equal(turned[0], turned[1])  # each photo its own angle


def test_suite_on_a_model(model_path, synth_root, tmp_path):
    predictor = Predictor.load(model_path)
    images = load_folder(synth_root / "test", predictor.classes)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    images.paths.append(str(bad))
    images.labels = np.append(images.labels, 0)
    results, errors = run_suite(predictor, images, chunk=256)
    assert [e.source for e in errors] == [str(bad)]
    assert list(results) == [v.name for v in SUITE]
    assert all(r["n"] == len(images) - 1 for r in results.values())
    assert results["original"]["accuracy"] >= 0.9
    # Chunking changes nothing: every photo's variation is seeded by its own index.
    again, _ = run_suite(predictor, images, chunk=7)
    assert again == results
    summary = worst(results)
    assert summary["lowest_accuracy"] == min(r["accuracy"] for r in results.values())
    # Each variation names the photos behind its counts: defects passed, OK parts rejected.
    label_of = dict(zip(images.paths, images.labels))
    for r in results.values():
        assert len(r["escaped"]) == r["escapes"] and len(r["falsely_rejected"]) == r["false_rejects"]
        assert all(label_of[p] != predictor.ok_index for p in r["escaped"])
        assert all(label_of[p] == predictor.ok_index for p in r["falsely_rejected"])
    assert sum(len(v) for v in summary["photometric_escaped_photos"].values()) == summary["photometric_escapes"]
    views = sample_views(images.paths[0], predictor.input_size)
    assert set(views) == set(results) and all(v.shape == (predictor.input_size,) * 2 for v in views.values())


def test_evaluate_robustness_cli(model_path, synth_root, tmp_path):
    from test_cli import cli

    r = cli("evaluate", str(synth_root / "test"), "--model", str(model_path), "--robustness",
            "--review-band", "0.2", "0.8", "--json", str(tmp_path / "m.json"), "--report", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert set(m["robustness"]) == {v.name for v in SUITE}
    assert m["robustness"]["jpeg_q15"]["kind"] == "photometric"
    assert "lowest_accuracy_under" in m["robustness_summary"]
    html = (tmp_path / "r.html").read_text()
    assert "Line variations" in html and "uneven_light" in html
    assert "line variations" in r.stdout
    # With a review band, the suite also counts what goes to a person and what passes without.
    assert "escapes outside review" in html
    assert all(row["review_band"] == [0.2, 0.8] for row in m["robustness"].values())
    assert "photometric_escapes_unreviewed" in m["robustness_summary"]
    # Whatever escaped is listed in the report, each photo once with the variations it passed
    # under (and once more among those passed without review).
    unreviewed = {p for r in m["robustness"].values() for p in r["passed_unreviewed"]}
    for photo in {p for r in m["robustness"].values() for p in r["escaped"]}:
        assert html.count(f"<li><code>{photo}</code>") == 1 + (photo in unreviewed)


def test_report_lists_each_escaped_photo_once():
    from castinspect.evaluation.report import _robustness_section

    row = {"kind": "photometric", "description": "", "accuracy": 0.5, "escapes": 1, "false_rejects": 0}
    results = {"blur": {**row, "escaped": ["a/def.jpg"]}, "noise": {**row, "escaped": ["a/def.jpg"]},
               "darker": {**row, "escapes": 0, "escaped": []}}
    section = _robustness_section(results, None)
    assert section.count("a/def.jpg") == 1 and "blur, noise" in section
    assert "Defects passed" not in _robustness_section({"darker": results["darker"]}, None)


def test_review_band_counts_what_passes_without_review():
    from types import SimpleNamespace

    from castinspect.evaluation.report import _robustness_section

    # Defects scored 0.9, 0.15, 0.01 and OK parts 0.05, 0.3, 0.95; threshold 0.5, review band [0.1, 0.5).
    p_defect = np.array([0.9, 0.15, 0.01, 0.05, 0.3, 0.95])
    labels = np.array([0, 0, 0, 1, 1, 1])  # ok_index 1
    probs = np.stack([p_defect, 1 - p_defect], axis=1)
    paths = [f"p{i}.jpg" for i in range(6)]
    suite = tuple(v for v in SUITE if v.name in ("original", "blur"))
    predictor = SimpleNamespace(classes=["def_front", "ok_front"], ok_index=1, review_band=(0.1, 0.5))
    results = suite_metrics({v.name: probs for v in suite}, labels, predictor, 0.5, suite, paths)
    r = results["blur"]
    assert (r["escapes"], r["false_rejects"]) == (2, 1)  # at the threshold alone
    assert (r["reviewed"], r["auto_escapes"], r["auto_false_rejects"]) == (2, 1, 1)
    assert r["passed_unreviewed"] == ["p2.jpg"]  # 0.15 went to a person; 0.01 passed
    summary = worst(results)
    assert summary["photometric_escapes_unreviewed"] == 1
    assert summary["photometric_passed_unreviewed"] == {"p2.jpg": ["blur"]}
    section = _robustness_section(results, None)
    assert "Defects passed without review (1)" in section and "escapes outside review" in section
    # Without a band, none of it.
    predictor.review_band = None
    plain = suite_metrics({v.name: probs for v in suite}, labels, predictor, 0.5, suite, paths)
    assert "auto_escapes" not in plain["blur"] and "photometric_escapes_unreviewed" not in worst(plain)
    assert "without review" not in _robustness_section(plain, None)
