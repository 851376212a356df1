"""Familiarity: calibrated on validation, measured on every judgement, stored with the model."""

import numpy as np
import pytest
from conftest import REAL_DATA, real_data_available

from castinspect.data.datasets import read_manifest
from castinspect.inference.familiarity import Familiarity, coreset, fit_familiarity
from castinspect.inference.predict import Predictor
from castinspect.models.checkpoint import (
    NO_FAMILIARITY,
    describe,
    load_checkpoint,
    save_checkpoint,
)

NEU = REAL_DATA.parent / "neu_det"


@pytest.mark.parametrize("share", [0.005, 0.02, 0.1])
def test_calibration_leaves_the_chosen_share_of_validation_outside(share):
    rng = np.random.default_rng(0)
    # embeddings after a ReLU point into one orthant: here around the direction (1, ..., 1)
    photos = lambda n: rng.normal(size=(n, 32)) + 3.0  # noqa: E731
    fam = fit_familiarity(photos(3000), val := photos(2000), share=share, bank=300)
    flagged = ~fam.familiar(fam.score(val))
    assert flagged.sum() == int(np.ceil(share * len(val))) - 1  # those strictly beyond the quantile
    assert fam.familiar(fam.score(photos(4000))).mean() == pytest.approx(1 - share, abs=0.02)
    # photos pointing elsewhere are unfamiliar, however tightly they cluster
    elsewhere = np.zeros((50, 32)) + rng.normal(size=(50, 32)) * 0.1
    elsewhere[:, 0] += 5.0
    assert not fam.familiar(fam.score(elsewhere)).any()


def test_the_coreset_covers_rare_photos():
    rng = np.random.default_rng(1)
    common = rng.normal(size=(990, 8)) + np.array([5.0] + [0.0] * 7)
    rare = rng.normal(size=(10, 8)) * 0.1 + np.array([0.0, 5.0] + [0.0] * 6)
    vectors = np.concatenate([common, rare])
    import torch
    unit = torch.nn.functional.normalize(torch.as_tensor(vectors).float(), dim=1)
    assert (coreset(unit, 20) >= 990).any()  # a random 20 of 1,000 would miss the 10 rare ones most times


def test_the_state_round_trips(model_path):
    ckpt = load_checkpoint(model_path)
    fam = Familiarity.from_state(ckpt.familiarity)
    again = Familiarity.from_state(fam.to_state())
    x = np.random.default_rng(0).normal(size=(20, fam.bank.shape[1])).astype(np.float32)
    np.testing.assert_array_equal(fam.score(x), again.score(x))
    assert describe(ckpt, model_path)["familiarity"]["share"] == ckpt.config.train.familiarity_share


def test_validation_photos_spread_over_the_scale(trained_run):
    # The training run calibrated on exactly these photos (through PyTorch); the predictor measures
    # them again through its default backend: each is the share of them at least as far as itself.
    result, _ = trained_run
    val = read_manifest(result.run_dir / "split.csv", "val")
    got = list(Predictor.load(result.run_dir / "model.ckpt").predict(val.paths))
    ranks = np.sort([g.familiarity * len(got) for g in got])
    # (a photo's distance may land a float's width either side of its own and its neighbours')
    assert np.abs(ranks - np.arange(1, len(got) + 1)).max() <= 2.001
    assert all(g.familiar for g in got)  # 0.5% of ~60: none strictly beyond the farthest


@pytest.fixture(scope="module")
def foreign_photo(tmp_path_factory):
    """A photo of something else: a checkerboard, nothing like the synthetic castings."""
    import cv2
    board = (np.indices((300, 300)).sum(axis=0) // 30 % 2 * 200 + 30).astype(np.uint8)
    path = tmp_path_factory.mktemp("foreign") / "board.png"
    cv2.imwrite(str(path), board)
    return path


@pytest.mark.parametrize("on_unfamiliar, expected", [("review", {"review"}), ("reject", {"defective"}),
                                                     ("judge", {"ok", "defective"})])
def test_an_unfamiliar_photo_is_decided_as_asked(model_path, foreign_photo, on_unfamiliar, expected):
    predictor = Predictor.load(model_path, on_unfamiliar=on_unfamiliar)
    for insp in (predictor.predict_one(foreign_photo), *predictor.predict([foreign_photo])):
        assert insp.familiar is False and insp.familiarity == 0.0 and insp.reasons[0] == "unfamiliar"
        assert insp.decision in expected and insp.label in predictor.classes


def test_a_model_without_familiarity_loads_and_says_so(model_path, foreign_photo, tmp_path):
    ckpt = load_checkpoint(model_path)
    ckpt.familiarity = None
    save_checkpoint(ckpt, tmp_path / "old.ckpt")
    old = Predictor.load(tmp_path / "old.ckpt")
    insp = old.predict_one(foreign_photo)
    assert old.familiarity_share is None and insp.familiarity is None and insp.familiar is None
    assert "unfamiliar" not in insp.reasons
    assert describe(load_checkpoint(tmp_path / "old.ckpt"), tmp_path / "old.ckpt")["familiarity"] == NO_FAMILIARITY
    from castinspect.inference.export import export_onnx
    exported = Predictor.load(export_onnx(load_checkpoint(tmp_path / "old.ckpt"), tmp_path / "old.onnx"))
    assert exported.predict_one(foreign_photo).familiarity is None  # the graph has no familiarity output


@pytest.mark.skipif(not (real_data_available() and (NEU / "test").is_dir()), reason="needs ../shared/data/neu_det")
def test_the_bundled_model_finds_another_product_unfamiliar():
    from castinspect.core.io import expand_paths
    files = expand_paths([NEU / "test"], recursive=True)[::12]
    got = list(Predictor.load().predict(files))
    assert len(got) >= 20 and all(g.familiar is False and g.decision == "review" for g in got)


def test_evaluate_counts_the_unfamiliar_and_the_silent_errors(model_path, synth_root, foreign_photo, tmp_path):
    import shutil

    from castinspect.evaluation.evaluate import evaluate
    from castinspect.evaluation.robustness import SUITE, run_suite

    for cls in ("ok_front", "def_front"):  # the test photos, and five boards labelled OK parts
        shutil.copytree(synth_root / "test" / cls, tmp_path / "set" / cls)
    for i in range(5):
        shutil.copy(foreign_photo, tmp_path / "set" / "ok_front" / f"board{i}.png")
    predictor = Predictor.load(model_path)
    result = evaluate(predictor, tmp_path / "set")
    m = result.metrics
    boards = [i for i in result.inspections if "board" in i.source]
    assert all(not b.familiar for b in boards) and m["unfamiliar"] >= 5 and m["unlike_training"] >= 5
    wrong = {i.source for i, t in zip(result.inspections, result.labels) if predictor.classes.index(i.label) != t}
    flagged = {i.source for i in result.inspections if i.reasons or i.decision == "review"}
    assert m["silent_errors"] == len(wrong - flagged) and m["flagged"] == len(flagged)
    # the suite: per variation, the photos flagged and the errors left unflagged
    results, _ = run_suite(predictor, result.images(predictor.classes), suite=SUITE[:2])
    assert all({"unlike_training", "silent_errors", "silent_escapes"} <= set(r) for r in results.values())
    assert results["original"]["unlike_training"] >= 5 and results["original"]["silent_errors"] <= results["original"]["errors"]
