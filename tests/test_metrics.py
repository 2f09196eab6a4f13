"""Calibration and error metrics (spacy_tokclf/metrics.py) and the fitting
functions of spacy_tokclf/calibration/fit.py, against numbers worked out by hand."""
import numpy
import pytest

from spacy_tokclf.calibrated import check_calibration, map_entity_scores, scale_log_probs
from spacy_tokclf.calibration.fit import fit_isotonic, fit_platt, fit_temperature
from spacy_tokclf.metrics import (
    calibration_summary,
    classify_errors,
    count_error_kinds,
    expected_calibration_error,
    reliability_bins,
    threshold_table,
)

# ECE ------------------------------------------------------------------------


def test_ece_by_hand():
    # bin 9 [0.9, 1.0]: 0.95, 0.95 -> conf 0.95, acc 0.5, |gap| 0.45, weight 2/5
    # bin 8 [0.8, 0.9): 0.85 -> conf 0.85, acc 1.0, |gap| 0.15, weight 1/5
    # bin 3 [0.3, 0.4): 0.35, 0.31 -> conf 0.33, acc 0.5, |gap| 0.17, weight 2/5
    conf = [0.95, 0.95, 0.85, 0.35, 0.31]
    right = [1, 0, 1, 0, 1]
    expected = 2 / 5 * 0.45 + 1 / 5 * 0.15 + 2 / 5 * 0.17
    assert expected_calibration_error(conf, right) == pytest.approx(expected)
    bins = reliability_bins(conf, right)
    assert [b["n"] for b in bins] == [0, 0, 0, 2, 0, 0, 0, 0, 1, 2]
    assert bins[3]["confidence"] == pytest.approx(0.33)
    assert bins[3]["accuracy"] == pytest.approx(0.5)
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None


def test_ece_edges_and_perfect():
    # 1.0 falls in the last bin, 0.0 in the first.
    bins = reliability_bins([0.0, 1.0, 1.0], [0, 1, 1])
    assert bins[0]["n"] == 1 and bins[9]["n"] == 2
    assert expected_calibration_error([0.0, 1.0, 1.0], [0, 1, 1]) == pytest.approx(0.0)
    # Scores of 0.75 that are right 3 times in 4: calibrated.
    assert expected_calibration_error([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)
    # Always 0.9 confident, right half the time: ECE 0.4.
    assert expected_calibration_error([0.9] * 10, [1, 0] * 5) == pytest.approx(0.4)
    assert expected_calibration_error([], []) == 0.0
    with pytest.raises(ValueError):
        expected_calibration_error([0.5], [1, 0])


def test_calibration_summary_of_a_subset_by_hand():
    """`where` restricts the summary to some predictions (the entities whose
    labels decoding repaired): here 0.05 (right), 0.08 (right), 0.95 (wrong)."""
    conf = [0.95, 0.05, 0.9, 0.08, 0.95]
    right = [1, 1, 1, 1, 0]
    repaired = [False, True, False, True, True]
    sub = calibration_summary(conf, right, where=repaired)
    assert sub["n"] == 3
    assert sub["accuracy"] == pytest.approx(2 / 3)
    assert sub["mean_confidence"] == pytest.approx((0.05 + 0.08 + 0.95) / 3)
    # bin 0: 0.05, 0.08 -> conf 0.065, acc 1, weight 2/3; bin 9: 0.95, acc 0, weight 1/3
    assert sub["ece"] == pytest.approx(2 / 3 * 0.935 + 1 / 3 * 0.95)
    assert sum(b["n"] for b in sub["bins"]) == 3
    whole = calibration_summary(conf, right)
    assert whole["n"] == 5 and calibration_summary(conf, right, where=[True] * 5) == whole
    empty = calibration_summary(conf, right, where=[False] * 5)
    assert (empty["n"], empty["ece"], empty["accuracy"]) == (0, 0.0, None)
    with pytest.raises(ValueError, match="where"):
        calibration_summary(conf, right, where=[True])
    with pytest.raises(ValueError, match="correct flags"):
        calibration_summary(conf[:2], right[:1], where=[True, False])


# Threshold ------------------------------------------------------------------


def test_threshold_table_by_hand():
    scores = [0.95, 0.9, 0.7, 0.6, 0.4]
    right = [True, True, False, True, False]
    rows = threshold_table(scores, right, n_gold=4, thresholds=[None, 0.6, 0.7, 0.99])
    none, t06, t07, t099 = rows
    assert (none["kept"], none["tp"]) == (5, 3)
    assert none["p"] == pytest.approx(3 / 5) and none["r"] == pytest.approx(3 / 4)
    # An entity scored exactly at the threshold is kept.
    assert (t06["kept"], t06["dropped"], t06["tp"]) == (4, 1, 3)
    assert t06["p"] == pytest.approx(3 / 4) and t06["f"] == pytest.approx(0.75)
    assert (t07["kept"], t07["tp"]) == (3, 2)
    assert t07["p"] == pytest.approx(2 / 3) and t07["r"] == pytest.approx(2 / 4)
    assert (t099["kept"], t099["p"], t099["r"], t099["f"]) == (0, 0.0, 0.0, 0.0)


# Error kinds ----------------------------------------------------------------


def test_classify_errors_each_kind():
    gold = [(0, 2, "PER"), (3, 6, "LOC"), (7, 8, "LOC"), (9, 11, "ORG"), (14, 15, "MISC")]
    pred = [
        (0, 2, "PER", 0.9),   # right
        (3, 5, "LOC", 0.6),   # wrong boundary (same type)
        (7, 8, "ORG", 0.5),   # wrong type
        (12, 13, "MISC", 0.3),  # spurious
        (14, 16, "PER", 0.4),  # wrong boundary and type
    ]  # (9, 11, ORG) is missed
    result = classify_errors(gold, pred)
    assert result["right"] == [(0, 2, "PER", 0.9)]
    kinds = {(e["kind"], e["pred"][:3] if e["pred"] else None) for e in result["errors"]}
    assert kinds == {
        ("wrong boundary", (3, 5, "LOC")),
        ("wrong type", (7, 8, "ORG")),
        ("spurious", (12, 13, "MISC")),
        ("wrong boundary", (14, 16, "PER")),
        ("missed", None),
    }
    by_pred = {e["pred"][:3]: e for e in result["errors"] if e["pred"]}
    assert by_pred[(3, 5, "LOC")]["gold"] == [(3, 6, "LOC")]
    assert by_pred[(3, 5, "LOC")]["type_differs"] is False
    assert by_pred[(14, 16, "PER")]["type_differs"] is True
    assert by_pred[(7, 8, "ORG")]["gold"] == [(7, 8, "LOC")]
    missed = [e for e in result["errors"] if e["kind"] == "missed"]
    assert missed[0]["gold"] == [(9, 11, "ORG")]
    assert count_error_kinds(result["errors"]) == {
        "missed": 1, "spurious": 1, "wrong type": 1, "wrong boundary": 2,
    }


def test_classify_errors_split_and_merge():
    # One gold entity split into two predictions: two boundary errors, no miss.
    result = classify_errors([(0, 3, "ORG")], [(0, 1, "ORG", 0.5), (1, 3, "ORG", 0.5)])
    assert [e["kind"] for e in result["errors"]] == ["wrong boundary", "wrong boundary"]
    # Two gold entities merged into one prediction: one boundary error.
    result = classify_errors([(0, 1, "LOC"), (2, 3, "LOC")], [(0, 3, "LOC", 0.5)])
    assert [e["kind"] for e in result["errors"]] == ["wrong boundary"]
    assert result["errors"][0]["gold"] == [(0, 1, "LOC"), (2, 3, "LOC")]
    # All right; nothing predicted; nothing in gold.
    assert classify_errors([(0, 1, "X")], [(0, 1, "X", 1.0)])["errors"] == []
    assert [e["kind"] for e in classify_errors([(0, 1, "X")], [])["errors"]] == ["missed"]
    assert [e["kind"] for e in classify_errors([], [(0, 1, "X", 1.0)])["errors"]] == ["spurious"]


# Fitting --------------------------------------------------------------------


def test_fit_temperature_recovers_a_known_temperature():
    rng = numpy.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 5))
    true_t = 2.0
    p = numpy.exp(logits / true_t)
    p /= p.sum(axis=1, keepdims=True)
    gold = numpy.array([rng.choice(5, p=row) for row in p])
    log_probs = logits - numpy.log(numpy.exp(logits).sum(axis=1, keepdims=True))
    assert fit_temperature(log_probs, gold) == pytest.approx(true_t, rel=0.05)
    assert fit_temperature(numpy.zeros((0, 5)), numpy.zeros((0,), dtype=int)) == 1.0


def test_scale_log_probs_matches_scaled_logits():
    logits = numpy.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    log_probs = logits - numpy.log(numpy.exp(logits).sum(axis=1, keepdims=True))
    t = 1.7
    direct = logits / t - numpy.log(numpy.exp(logits / t).sum(axis=1, keepdims=True))
    numpy.testing.assert_allclose(scale_log_probs(log_probs, t), direct, atol=1e-12)
    # The argmax of each row does not move.
    assert (scale_log_probs(log_probs, t).argmax(1) == log_probs.argmax(1)).all()
    assert scale_log_probs(log_probs, 1.0) is log_probs


def test_fit_isotonic_by_hand():
    # Platt's targets: 3 right -> (3 + 1) / (3 + 2) = 0.8, 1 wrong -> 1 / 3.
    # Sorted: 0.1 right, 0.2 wrong -> one step (target mean 0.8 / 2 + 1 / 6)
    # centred at 0.15; 0.3, 0.4 right -> one step at 0.8, centred at 0.35.
    fitted = fit_isotonic([0.4, 0.1, 0.3, 0.2], [True, True, True, False])
    assert fitted["method"] == "isotonic"
    numpy.testing.assert_allclose(fitted["x"], [0.15, 0.35])
    numpy.testing.assert_allclose(fitted["y"], [0.4 + 1 / 6, 0.8])
    calibration = {"entity_map": fitted}
    mapped = map_entity_scores(calibration, [0.0, 0.15, 0.25, 0.35, 1.0])
    low = 0.4 + 1 / 6
    numpy.testing.assert_allclose(mapped, [low, low, (low + 0.8) / 2, 0.8, 0.8])
    # Equal scores are one point: 0.5 right twice in four (targets 0.8 and
    # 1 / 4 with 3 right and 2 wrong), 0.9 right.
    fitted = fit_isotonic([0.5, 0.5, 0.5, 0.5, 0.9], [1, 0, 1, 0, 1])
    numpy.testing.assert_allclose(fitted["x"], [0.5, 0.9])
    numpy.testing.assert_allclose(fitted["y"], [0.525, 0.8])
    assert check_calibration({"temperature": {}, "entity_map": fitted}, ["ents"]) is None


def test_fit_isotonic_pools_small_steps():
    # 2 wrong entities with the lowest scores, then 98 entities right 3 times
    # in 4 in order of score, then the top 100 right.
    scores = [0.01, 0.02] + [0.3 + 0.002 * i for i in range(98)] + [0.9 + 0.0005 * i for i in range(100)]
    correct = [False, False] + [i % 4 != 0 for i in range(98)] + [True] * 100
    alone = fit_isotonic(scores, correct, min_share=0.0)
    assert alone["y"][0] == pytest.approx(1 / 29)  # the 2 wrong ones alone: 1 / (N- + 2)
    pooled = fit_isotonic(scores, correct, min_share=0.05)  # steps of 10 entities at least
    assert pooled["y"][0] > 0.3
    assert len(pooled["x"]) < len(alone["x"])
    for fitted in (alone, pooled):
        assert all(a < b for a, b in zip(fitted["x"], fitted["x"][1:]))
        assert all(a < b for a, b in zip(fitted["y"], fitted["y"][1:]))


def test_fit_isotonic_is_monotone_and_calibrated_in_sample():
    rng = numpy.random.default_rng(1)
    scores = rng.uniform(0.3, 1.0, 3000)
    right = rng.uniform(size=3000) < scores ** 3  # overconfident scores
    fitted = fit_isotonic(scores, right)
    mapped = map_entity_scores({"entity_map": fitted}, scores)
    order = numpy.argsort(scores)
    assert (numpy.diff(mapped[order]) >= -1e-12).all()
    assert expected_calibration_error(scores, right) > 0.1
    assert expected_calibration_error(mapped, right) < 0.02


def test_fit_platt_recovers_known_parameters():
    rng = numpy.random.default_rng(2)
    scores = rng.uniform(0.05, 0.999, 20000)
    logit = numpy.log(scores) - numpy.log1p(-scores)
    a, b = 0.6, -0.4
    right = rng.uniform(size=len(scores)) < 1 / (1 + numpy.exp(-(a * logit + b)))
    fitted = fit_platt(scores, right)
    assert fitted["a"] == pytest.approx(a, abs=0.05)
    assert fitted["b"] == pytest.approx(b, abs=0.05)
    # Separable data stay finite.
    fitted = fit_platt([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert numpy.isfinite([fitted["a"], fitted["b"]]).all()
    mapped = map_entity_scores({"entity_map": fitted}, [0.1, 0.9])
    assert 0.0 < mapped[0] < 0.5 < mapped[1] < 1.0


@pytest.mark.parametrize(
    "calibration",
    [
        "T=2",
        {"temperature": {"ents": 0.0}},
        {"temperature": {"ents": -1.0}},
        {"temperature": {"tag": 1.0}},  # not a task of the component
        {"temperature": {}, "entity_map": {"method": "spline"}},
        {"temperature": {}, "entity_map": {"method": "isotonic", "x": [0.5, 0.2], "y": [0.1, 0.2]}},
        {"temperature": {}, "entity_map": {"method": "isotonic", "x": [0.2, 0.5], "y": [0.3, 0.2]}},
        {"temperature": {}, "entity_map": {"method": "isotonic", "x": [0.2], "y": [0.3, 0.4]}},
        {"temperature": {}, "entity_map": {"method": "platt", "a": "1"}},
    ],
)
def test_check_calibration_rejects(calibration):
    assert check_calibration(calibration, ["ents"]) is not None


def test_check_calibration_accepts():
    assert check_calibration(None, ["ents"]) is None
    assert check_calibration({"temperature": {"ents": 1.3}, "entity_map": None}, ["ents"]) is None
    assert check_calibration(
        {"temperature": {"ents": 1.3}, "entity_map": {"method": "platt", "a": 0.5, "b": -1}},
        ["ents"],
    ) is None
