"""Applying a fitted calibration: what a token_classifier does to its
probabilities at prediction time (decoding.py calls these; saved.py checks a
loaded calibration with `check_calibration`). Part of the core, so that the
core never imports calibration/, which fits calibrations and imports the core.

A calibration is JSON in `pipe.cfg["calibration"]` (saved, loaded and
packaged with the pipeline), fitted by `calibrate()` (calibration/pipeline.py):

- a temperature T per task: the reported token probabilities (and so
  `doc._.tokclf_probs`) become softmax(log_softmax(scores) / T);
- an increasing map of entity scores (the entity's score, after the
  temperature) to the probability that the entity is right (span and type):
  piecewise linear through fitted points ("isotonic") or logistic on the
  logit of the score with a slope in [PLATT_MIN_SLOPE, PLATT_MAX_SLOPE]
  ("platt"). "temperature" has no map. A flat, decreasing or non-finite map
  is not a valid calibration (check_calibration), as the fit refuses it.

Decoding never changes: labels are chosen (argmax, or constrained Viterbi)
on the uncalibrated scores, and only the probabilities reported for them are
calibrated. Both maps are monotone, so the order of entity scores is kept
(the isotonic map is flat below its first and above its last point, where
scores become equal). With a `threshold`, which entities pass it depends on
the scores, so calibrating can change which entities are kept (decoding.py).
"""
import math
from typing import Any, Dict, Optional, Sequence, Union

import numpy

from .errors import CalibrationErrors, error

ENTITY_MAPS = ("isotonic", "platt")
# Scores are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before their logit is taken.
LOGIT_EPS = 1e-6
# Bounds of the slope `a` of a Platt map: below the lower one the map is flat
# (over the whole range of logits, 2 * 13.8, its output logit moves by less
# than 0.03); the upper one keeps the fit finite where the right and wrong
# entities' scores barely differ.
PLATT_MIN_SLOPE = 1e-3
PLATT_MAX_SLOPE = 100.0


def temperature_of(calibration: Optional[Dict], task: str) -> float:
    """The fitted temperature of a task; 1.0 without calibration."""
    if not calibration:
        return 1.0
    return float(calibration.get("temperature", {}).get(task, 1.0))


def row_sums(values: Any) -> Any:
    """Row sums [n, 1] taken column by column, left to right (numpy's sum
    pairs terms in an order that depends on the row's length): adding
    columns of exact or near zeros at the end of a row (a grown head,
    labels.grow_head) leaves every sum bit-identical."""
    total = values[:, :1].copy()
    for column in range(1, values.shape[1]):
        total += values[:, column : column + 1]
    return total


def scale_log_probs(log_probs: numpy.ndarray, temperature: float) -> numpy.ndarray:
    """log_softmax(log_probs / T), row-wise: the same as dividing the raw
    scores by T, since log_probs differ from them by a constant per row.

    log_probs [n_tokens, n_labels] -> [n_tokens, n_labels]
    """
    if temperature == 1.0:
        return log_probs
    scaled = log_probs / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    return scaled - numpy.log(row_sums(numpy.exp(scaled)))


def map_entity_scores(
    calibration: Optional[Dict], scores: Union[Sequence[float], numpy.ndarray]
) -> numpy.ndarray:
    """Entity scores through the fitted monotone map (unchanged without one)."""
    s = numpy.asarray(scores, dtype="float64")
    entity_map = (calibration or {}).get("entity_map")
    if not entity_map or len(s) == 0:
        return s
    if entity_map["method"] == "isotonic":
        return numpy.interp(s, entity_map["x"], entity_map["y"])
    if entity_map["method"] == "platt":
        return sigmoid(entity_map["a"] * logit(s) + entity_map["b"])
    raise ValueError(error(CalibrationErrors.UNKNOWN_ENTITY_MAP, method=entity_map["method"]))


def check_calibration(calibration: Any, tasks: Sequence[str]) -> Optional[str]:
    """What is wrong with a stored calibration, or None if it is valid."""
    if calibration is None:
        return None
    if not isinstance(calibration, dict):
        return CalibrationErrors.BAD_NOT_OBJECT
    temps = calibration.get("temperature", {})
    if not isinstance(temps, dict) or any(
        task not in tasks or not _is_number(t) or not t > 0 for task, t in temps.items()
    ):
        return CalibrationErrors.BAD_TEMPERATURE.format(tasks=list(tasks))
    entity_map = calibration.get("entity_map")
    if entity_map is None:
        return None
    if not isinstance(entity_map, dict) or entity_map.get("method") not in ENTITY_MAPS:
        return CalibrationErrors.BAD_MAP_METHOD.format(methods=list(ENTITY_MAPS))
    if entity_map["method"] == "isotonic":
        x: Any = entity_map.get("x")
        y: Any = entity_map.get("y")
        ok = (
            isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and len(x) > 0
            and all(_is_number(v) for v in x + y)
            and all(a < b for a, b in zip(x, x[1:]))
            and all(a <= b for a, b in zip(y, y[1:]))
        )
        if not ok:
            return CalibrationErrors.BAD_ISOTONIC
        if not all(0.0 <= v <= 1.0 for v in y):
            return CalibrationErrors.BAD_ISOTONIC_RANGE
        if not y[0] < y[-1]:
            return CalibrationErrors.BAD_FLAT_MAP
    else:
        a: Any = entity_map.get("a")
        b: Any = entity_map.get("b")
        if not (_is_number(a) and _is_number(b)):
            return CalibrationErrors.BAD_PLATT
        if not PLATT_MIN_SLOPE <= a <= PLATT_MAX_SLOPE:
            return CalibrationErrors.BAD_PLATT_SLOPE.format(
                a=a, low=PLATT_MIN_SLOPE, high=PLATT_MAX_SLOPE
            )
    return None


def logit(s: numpy.ndarray) -> numpy.ndarray:
    """log(s / (1 - s)), with s clipped away from 0 and 1."""
    s = numpy.clip(s, LOGIT_EPS, 1 - LOGIT_EPS)
    return numpy.log(s) - numpy.log1p(-s)


def sigmoid(x: numpy.ndarray) -> numpy.ndarray:
    """1 / (1 + exp(-x))."""
    return 0.5 * (1.0 + numpy.tanh(0.5 * x))  # no overflow for large |x|


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "ENTITY_MAPS",
    "LOGIT_EPS",
    "PLATT_MAX_SLOPE",
    "PLATT_MIN_SLOPE",
    "check_calibration",
    "logit",
    "map_entity_scores",
    "scale_log_probs",
    "sigmoid",
    "temperature_of",
]
