import json

import numpy as np
import pytest

from castinspect.data import load_folder
from castinspect.predict import Predictor
from castinspect.robustness import SUITE, run_suite, sample_views, variation_rng, worst


@pytest.fixture(scope="module")
def photo(synth_root):
    import cv2
    return cv2.imread(str(next((synth_root / "test" / "def_front").iterdir())), cv2.IMREAD_GRAYSCALE)


def test_every_variation_keeps_shape_and_type_and_is_seeded(photo):
    for k, v in enumerate(SUITE):
        a = v.apply(photo, variation_rng(0, k, 3))
        b = v.apply(photo, variation_rng(0, k, 3))
        assert a.shape == photo.shape and a.dtype == np.uint8, v.name
        assert np.array_equal(a, b), v.name  # same seed, same photo, same result
        assert np.array_equal(a, photo) == (v.kind == "none"), v.name  # every other one changes it


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
            "--json", str(tmp_path / "m.json"), "--report", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert set(m["robustness"]) == {v.name for v in SUITE}
    assert m["robustness"]["jpeg_q15"]["kind"] == "photometric"
    assert "lowest_accuracy_under" in m["robustness_summary"]
    html = (tmp_path / "r.html").read_text()
    assert "Line variations" in html and "uneven_light" in html
    assert "line variations" in r.stdout
    # Whatever escaped is listed in the report, each photo once with the variations it passed under.
    for photo in {p for r in m["robustness"].values() for p in r["escaped"]}:
        assert html.count(f"<li><code>{photo}</code>") == 1


def test_report_lists_each_escaped_photo_once():
    from castinspect.report import _robustness_section

    row = {"kind": "photometric", "description": "", "accuracy": 0.5, "escapes": 1, "false_rejects": 0}
    results = {"blur": {**row, "escaped": ["a/def.jpg"]}, "noise": {**row, "escaped": ["a/def.jpg"]},
               "darker": {**row, "escapes": 0, "escaped": []}}
    section = _robustness_section(results, None)
    assert section.count("a/def.jpg") == 1 and "blur, noise" in section
    assert "Defects passed" not in _robustness_section({"darker": results["darker"]}, None)
