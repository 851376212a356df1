import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from castinspect.evaluation.metrics import (
    average_precision,
    binary_summary,
    brier_score,
    choose_threshold,
    confusion_matrix,
    expected_calibration_error,
    per_class_prf,
    roc_auc,
    summarize,
)


def test_confusion_and_prf_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 1, 0, 1, 1, 0, 1])
    cm = confusion_matrix(y, pred, 2)
    assert cm.tolist() == [[2, 1], [1, 3]]
    prf = per_class_prf(cm, ["a", "b"])
    assert prf["b"]["precision"] == pytest.approx(3 / 4)
    assert prf["b"]["recall"] == pytest.approx(3 / 4)
    assert prf["a"]["precision"] == pytest.approx(2 / 3)
    assert prf["a"]["f1"] == pytest.approx(2 / 3)


def test_auc_by_hand_with_ties():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(y, p) == pytest.approx(0.75)
    # a tie between a positive and a negative counts half
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert average_precision(y, p) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))


def test_auc_matches_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) * 0.6 + y * 0.3, 2)  # rounded: many ties
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p))


def test_calibration_by_hand():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.6, 0.6])
    assert brier_score(y, p) == pytest.approx((0.01 + 0.01 + 0.16 + 0.36) / 4)
    # bins (10): 0.1 -> bin 1 (y 0, p .1), 0.6 x2 -> bin 6 (y .5, p .6), 0.9 -> bin 9 (y 1, p .9)
    assert expected_calibration_error(y, p) == pytest.approx(0.25 * 0.1 + 0.5 * 0.1 + 0.25 * 0.1)


def test_choose_threshold_hits_recall_with_fewest_rejects():
    y = np.array([1, 1, 1, 1, 0, 0, 0])
    p = np.array([0.95, 0.9, 0.6, 0.3, 0.5, 0.2, 0.1])
    t = choose_threshold(y, p, 0.75)
    assert t == pytest.approx(0.55)  # halfway between the last defect caught (0.6) and the next score
    s = binary_summary(y, p, t)
    assert s["escapes"] == 1 and s["false_rejects"] == 0
    t_all = choose_threshold(y, p, 1.0)
    assert t_all == pytest.approx(0.25)
    assert binary_summary(y, p, t_all)["false_rejects"] == 1
    with pytest.raises(ValueError):
        choose_threshold(y, p, 0)
    # A backend that scores the last defect a hair lower still catches it.
    assert binary_summary(y, p - 1e-6, choose_threshold(y, p, 0.75))["escapes"] == 1


def test_binary_summary_counts():
    s = binary_summary(np.array([1, 1, 0, 0]), np.array([0.5, 0.49, 0.5, 0.1]), 0.5)
    assert (s["escapes"], s["false_rejects"], s["errors"]) == (1, 1, 2)
    assert s["defect_recall"] == 0.5 and s["false_reject_rate"] == 0.5


def test_summarize_three_classes():
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    labels = np.array([0, 1, 2, 0])
    preds = np.array([0, 1, 2, 2])
    m = summarize(labels, probs, preds, ["ok", "hole", "burr"], ok_index=0, threshold=0.5)
    assert m["accuracy"] == 0.75
    assert m["false_rejects"] == 1 and m["escapes"] == 0


def test_fit_temperature_recovers_overconfidence():
    from castinspect.evaluation.metrics import fit_temperature

    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (4000, 2))
    p1 = np.exp(z[:, 1]) / np.exp(z).sum(axis=1)
    labels = (rng.random(4000) < p1).astype(int)  # labels drawn from softmax(z): calibrated at T = 1
    assert fit_temperature(z, labels) == pytest.approx(1.0, rel=0.1)
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.1)  # overconfident logits


def test_review_band_by_hand():
    from castinspect.evaluation.metrics import review_summary

    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.95, 0.3, 0.6, 0.05, 0.1])
    r = review_summary(y, p, 0.2, 0.7, 0.5)
    assert r["reviewed"] == 2 and r["review_share"] == pytest.approx(0.4)
    assert r["auto_escapes"] == 1 and r["auto_false_rejects"] == 0
    # A band above the threshold: what lies below it is still decided at the threshold, as
    # decision.decide does (0.3 is rejected, not passed; 0.6 reviewed; 0.1 and 0.05 pass).
    r = review_summary(y, p, 0.55, 0.9, 0.25)
    assert r["reviewed"] == 1 and r["auto_escapes"] == 1 and r["auto_false_rejects"] == 0
    from castinspect.core.decision import decide
    decisions = [decide(float(x), 0.25, (0.55, 0.9)) for x in p]
    assert decisions == ["defective", "defective", "review", "ok", "ok"]


def test_reliability_bins():
    from castinspect.evaluation.metrics import reliability

    rows = reliability(np.array([0, 1, 1, 1]), np.array([0.05, 0.95, 0.91, 0.5]), bins=10)
    assert rows[9]["n"] == 2 and rows[9]["observed"] == 1.0 and rows[0]["observed"] == 0.0
    assert rows[5]["n"] == 1 and rows[3]["n"] == 0 and rows[3]["mean_p"] is None
