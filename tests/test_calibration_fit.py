"""The entity-score maps at their edges (spacy_tokclf/calibration/fit.py fits
them, calibration.py checks a stored one): one class present, all scores
equal, saturated scores (0 and 1), tiny sets, scores that fall as the share
right rises. Each fit is finite, increasing and passes the load check, or is
refused with MapRefused and its reason; a stored map that is decreasing,
flat, unbounded or not finite does not load. Pure numpy: no pipeline.
"""
import re

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_tokclf.calibrated import PLATT_MAX_SLOPE, PLATT_MIN_SLOPE, check_calibration
from spacy_tokclf.calibrated import logit, map_entity_scores, sigmoid
from spacy_tokclf.calibration.fit import MapRefused, fit_entity_map, fit_isotonic, fit_platt
from spacy_tokclf.errors import CalibrationErrors

FITS = {"isotonic": fit_isotonic, "platt": fit_platt}
GRID = numpy.linspace(0.0, 1.0, 1001)


def fixed_text(template: str) -> str:
    """A regex of an error template's text before its first field."""
    return re.escape(template.split("{")[0])


def assert_valid_increasing(entity_map) -> None:
    """Finite, passes the load check, non-decreasing on [0, 1] and not flat."""
    assert check_calibration({"temperature": {}, "entity_map": entity_map}, ["ents"]) is None
    mapped = map_entity_scores({"entity_map": entity_map}, GRID)
    assert numpy.isfinite(mapped).all()
    assert (numpy.diff(mapped) >= -1e-12).all()
    assert mapped[-1] > mapped[0]
    if entity_map["method"] == "platt":
        assert PLATT_MIN_SLOPE <= entity_map["a"] <= PLATT_MAX_SLOPE


# (scores, correct, the reason each fit is refused with: a template of CalibrationErrors)
REFUSED = {
    "no entities": ([], [], "REFUSED_NO_ENTITIES"),
    "one entity": ([0.8], [True], "REFUSED_ONE_CLASS"),
    "all right": ([0.3, 0.5, 0.9, 0.95], [True] * 4, "REFUSED_ONE_CLASS"),
    "all wrong": ([0.3, 0.5, 0.9], [False] * 3, "REFUSED_ONE_CLASS"),
    "all right, saturated": ([1.0, 1.0, 0.0, 1.0], [True] * 4, "REFUSED_ONE_CLASS"),
    "equal scores": ([0.7] * 5, [True, False, True, True, False], "REFUSED_EQUAL_SCORES"),
    "equal saturated scores": ([1.0] * 4, [True, False, True, True], "REFUSED_EQUAL_SCORES"),
    # Higher scores are less often right: the best monotone map is flat.
    "decreasing": ([0.9, 0.8, 0.2, 0.1], [False, False, True, True], "REFUSED_NOT_INCREASING"),
    "decreasing, saturated": (
        [1.0, 1.0, 1.0, 0.0, 1.0], [True, False, True, True, True], "REFUSED_NOT_INCREASING",
    ),
}


@pytest.mark.parametrize("method", sorted(FITS))
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_fit_refuses_what_gives_no_increasing_map(method, case):
    """On today's main these fits 'succeed' with a flat map (isotonic; Platt
    with a ~ 1e-17), a decreasing one (a = -1.4e10) or a diverged one
    (a = 1.8e9 where higher scores are less often right)."""
    scores, correct, reason = REFUSED[case]
    with pytest.raises(MapRefused, match=fixed_text(getattr(CalibrationErrors, reason))):
        FITS[method](scores, correct)
    with pytest.raises(MapRefused):
        fit_entity_map(method, scores, correct)


@pytest.mark.parametrize("method", sorted(FITS))
def test_fit_saturated_and_tiny_sets_stay_finite_and_increasing(method):
    # Saturated scores, perfectly separated: Newton without damping went to a = 1.4e10.
    fitted = FITS[method]([1.0, 1.0, 0.0, 0.0], [True, True, False, False])
    assert_valid_increasing(fitted)
    # With Platt's targets 3/4 and 1/4 and logits +-13.8: a * 13.8 = logit(3/4).
    if method == "platt":
        assert fitted["a"] == pytest.approx(logit(numpy.array([0.75]))[0] / logit(numpy.array([1.0]))[0], rel=1e-6)
        assert fitted["b"] == pytest.approx(0.0, abs=1e-8)
    # Two entities, the right one scored higher: the map goes through Platt's
    # targets 2/3 and 1/3.
    fitted = FITS[method]([0.3, 0.8], [False, True])
    assert_valid_increasing(fitted)
    numpy.testing.assert_allclose(
        map_entity_scores({"entity_map": fitted}, [0.3, 0.8]), [1 / 3, 2 / 3], atol=1e-6
    )


def test_platt_slope_is_bounded_where_scores_barely_differ():
    fitted = fit_platt([0.5000001, 0.5000002], [False, True])
    assert fitted["a"] == PLATT_MAX_SLOPE
    assert_valid_increasing(fitted)


def test_rounding_that_pools_an_isotonic_map_is_refused():
    """Scores 1e-9 apart become one point once rounded to 8 decimals (as
    saved): a flat map, refused rather than stored."""
    assert len(fit_isotonic([0.999999999, 1.0], [False, True])["x"]) == 2
    with pytest.raises(MapRefused, match=fixed_text(CalibrationErrors.BAD_FLAT_MAP)):
        fit_entity_map("isotonic", [0.999999999, 1.0], [False, True])


def platt_loss(x, y, a, b) -> float:
    p = numpy.clip(sigmoid(a * x + b), 1e-300, 1 - 1e-16)
    return float(-(y * numpy.log(p) + (1 - y) * numpy.log1p(-p)).mean())


scores_strategy = st.lists(
    st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.9, 0.99]), st.floats(0.0, 1.0)),
    min_size=0,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(scores=scores_strategy, data=st.data())
def test_fits_are_increasing_or_refused(scores, data):
    """Any scores (ties, 0 and 1 included) and flags: each fit is a finite,
    increasing map that passes the load check, or MapRefused. A Platt fit is
    the best of the maps allowed: its loss is no higher than at nearby
    allowed slopes and intercepts."""
    correct = data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    for method in sorted(FITS):
        try:
            fitted = fit_entity_map(method, scores, correct)
        except MapRefused:
            continue
        assert fitted is not None
        assert_valid_increasing(fitted)
        if method != "platt":
            continue
        x = logit(numpy.asarray(scores, dtype="float64"))
        right = numpy.asarray(correct, dtype=bool)
        n_pos, n_neg = int(right.sum()), int((~right).sum())
        y = numpy.where(right, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        a, b = fitted["a"], fitted["b"]
        best = platt_loss(x, y, a, b)
        for da in (-1e-3, 0.0, 1e-3):
            for db in (-1e-3, 0.0, 1e-3):
                if PLATT_MIN_SLOPE <= a + da <= PLATT_MAX_SLOPE:
                    assert best <= platt_loss(x, y, a + da, b + db) + 1e-9


# The load check -------------------------------------------------------------------


@pytest.mark.parametrize(
    "entity_map,problem",
    [
        ({"method": "platt", "a": -0.5, "b": 0.1}, "BAD_PLATT_SLOPE"),  # decreasing
        ({"method": "platt", "a": 0.0, "b": 1.6}, "BAD_PLATT_SLOPE"),  # flat
        ({"method": "platt", "a": 2e9, "b": 3e8}, "BAD_PLATT_SLOPE"),  # diverged
        ({"method": "platt", "a": float("inf"), "b": 0.0}, "BAD_PLATT"),
        ({"method": "platt", "a": 1.0, "b": float("nan")}, "BAD_PLATT"),
        ({"method": "isotonic", "x": [0.66], "y": [0.83]}, "BAD_FLAT_MAP"),
        ({"method": "isotonic", "x": [0.2, 0.9], "y": [0.5, 0.5]}, "BAD_FLAT_MAP"),
        ({"method": "isotonic", "x": [0.2, 0.9], "y": [0.5, 1.5]}, "BAD_ISOTONIC_RANGE"),
        ({"method": "isotonic", "x": [0.2, 0.9], "y": [0.6, 0.5]}, "BAD_ISOTONIC"),
        ({"method": "isotonic", "x": [0.2, float("inf")], "y": [0.1, 0.5]}, "BAD_ISOTONIC"),
    ],
)
def test_check_refuses_decreasing_flat_or_unbounded_maps(entity_map, problem):
    found = check_calibration({"temperature": {}, "entity_map": entity_map}, ["ents"])
    assert found is not None
    assert re.match(fixed_text(getattr(CalibrationErrors, problem)), found)


def test_check_accepts_increasing_maps():
    for entity_map in (
        {"method": "platt", "a": 0.6, "b": -0.4},
        {"method": "platt", "a": PLATT_MAX_SLOPE, "b": 0.0},
        {"method": "isotonic", "x": [0.2, 0.9], "y": [0.3, 0.8]},
        {"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.2, 0.2, 0.21]},
    ):
        assert check_calibration({"temperature": {}, "entity_map": entity_map}, ["ents"]) is None
