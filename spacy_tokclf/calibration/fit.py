"""Fitting the parts of a calibration (spacy_tokclf/calibrated.py applies them): the
temperature of a task's probabilities, and the increasing map of entity
scores, by centered isotonic regression or Platt's logistic regression with
a bounded positive slope. A map the data cannot give (no entities, all right
or all wrong, equal scores, a flat or decreasing best fit) raises MapRefused
instead of coming out flat, decreasing or unbounded.

Pure numpy functions of arrays; pipeline.py gathers the arrays from
a pipeline and stores what these return.
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy

from ..calibrated import (
    LOGIT_EPS,
    PLATT_MAX_SLOPE,
    PLATT_MIN_SLOPE,
    check_calibration,
    logit,
    sigmoid,
)
from ..errors import CalibrationErrors

# Each step of the isotonic map holds at least this share of the entities.
MIN_STEP_SHARE = 0.01
# Inverse temperatures searched: T in [0.01, 100].
_BETA_RANGE = (0.01, 100.0)


class MapRefused(ValueError):
    """The data give no increasing entity map (the message says why, as an
    Errors template's {reason}): calibrate() reports it as an error naming
    the method, and method="auto" leaves the method out."""


def fit_temperature(log_probs: numpy.ndarray, gold: numpy.ndarray) -> float:
    """The temperature T that minimises the mean negative log-likelihood of
    the gold labels under softmax(log_probs / T).

    log_probs [n, n_labels]; gold [n] label ids. The NLL is convex in
    beta = 1 / T (its derivative, E_p[z] - z_gold, grows with beta), so the
    root of the derivative is found by bisection on log beta.
    """
    z = numpy.asarray(log_probs, dtype="float64")
    gold = numpy.asarray(gold, dtype="int64")
    if len(z) == 0:
        return 1.0
    z_gold = z[numpy.arange(len(z)), gold]

    def slope(beta: float) -> float:
        scaled = beta * z
        scaled -= scaled.max(axis=1, keepdims=True)
        p = numpy.exp(scaled)
        p /= p.sum(axis=1, keepdims=True)
        return float(((p * z).sum(axis=1) - z_gold).mean())

    lo, hi = math.log(_BETA_RANGE[0]), math.log(_BETA_RANGE[1])
    if slope(math.exp(lo)) >= 0:
        return 1.0 / _BETA_RANGE[0]
    if slope(math.exp(hi)) <= 0:
        return 1.0 / _BETA_RANGE[1]
    for _ in range(60):
        mid = (lo + hi) / 2
        if slope(math.exp(mid)) > 0:
            hi = mid
        else:
            lo = mid
    return float(1.0 / math.exp((lo + hi) / 2))


def fit_isotonic(
    scores: Sequence[float], correct: Sequence[bool], min_share: float = MIN_STEP_SHARE
) -> Dict:
    """Centered isotonic regression of `correct` on `scores`: pool adjacent
    violators gives the non-decreasing step function that fits best; the map
    stored is the line through the centre of each step (the mean score of its
    entities, at the share of them that is right), flat beyond the first and
    last centre (Oron and Flournoy's centered isotonic regression). Unlike the
    steps themselves, it keeps distinct scores apart, so a threshold can still
    be set between any two of them.

    Each step holds at least `min_share` of the entities: a smaller one is
    pooled with the neighbour whose share right is closer (pooling neighbours
    keeps the steps in order). Without this, a few wrong entities with the
    lowest scores make a step of their own, and the line from it to the next
    centre maps low-scored entities that are mostly right (entities whose
    labels Viterbi repaired) close to 0.

    The targets are Platt's: (N+ + 1) / (N+ + 2) for a right entity and
    1 / (N- + 2) for a wrong one, so no score is mapped to exactly 0 or 1.

    RETURNS (Dict): {"method": "isotonic", "x": [...], "y": [...]}.
    RAISES (MapRefused): no entities, one class, equal scores, or one step
        (the steps of the best non-decreasing fit pool into a flat map).
    """
    s = numpy.asarray(scores, dtype="float64")
    right = numpy.asarray(correct, dtype=bool)
    _check_fittable(s, right)
    c = _platt_targets(right)
    order = numpy.argsort(s, kind="stable")
    s, c = s[order], c[order]
    # Equal scores first become one point, weighted by their number.
    xs, first = numpy.unique(s, return_index=True)
    weights = numpy.diff(numpy.append(first, len(s))).astype("float64")
    means = numpy.add.reduceat(c, first) / weights
    # Pool adjacent violators: blocks of [sum of scores, weight, mean target].
    blocks: List[List[float]] = []
    for x, w, m in zip(xs.tolist(), weights.tolist(), means.tolist()):
        blocks.append([x * w, w, m])
        while len(blocks) > 1 and blocks[-2][2] >= blocks[-1][2]:
            x2, w2, m2 = blocks.pop()
            x1, w1, m1 = blocks[-1]
            blocks[-1] = [x1 + x2, w1 + w2, (w1 * m1 + w2 * m2) / (w1 + w2)]
    min_size = max(1.0, min_share * len(s))
    while len(blocks) > 1:
        small = [i for i, b in enumerate(blocks) if b[1] < min_size]
        if not small:
            break
        i = min(small, key=lambda k: blocks[k][1])
        if i == 0:
            j = 1
        elif i == len(blocks) - 1:
            j = i - 1
        else:
            closer_left = blocks[i][2] - blocks[i - 1][2] <= blocks[i + 1][2] - blocks[i][2]
            j = i - 1 if closer_left else i + 1
        (x1, w1, m1), (x2, w2, m2) = blocks[min(i, j)], blocks[max(i, j)]
        blocks[min(i, j)] = [x1 + x2, w1 + w2, (w1 * m1 + w2 * m2) / (w1 + w2)]
        del blocks[max(i, j)]
    if len(blocks) == 1:
        raise MapRefused(CalibrationErrors.REFUSED_NOT_INCREASING.format(method="isotonic"))
    return {
        "method": "isotonic",
        "x": [float(b[0] / b[1]) for b in blocks],
        "y": [float(b[2]) for b in blocks],
    }


def fit_platt(scores: Sequence[float], correct: Sequence[bool]) -> Dict:
    """Logistic regression of `correct` on logit(score): p = sigmoid(a *
    logit(s) + b), with Platt's targets (N+ + 1) / (N+ + 2) for right and
    1 / (N- + 2) for wrong entities, and the slope a bounded to
    [PLATT_MIN_SLOPE, PLATT_MAX_SLOPE], so that the map is increasing and
    finite however the scores fall (one class, equal or saturated scores).

    The mean log-loss is convex in (a, b); its minimum over b for a fixed a,
    g(a), is convex in a, and g'(a) is the loss's derivative in a at that b.
    So a is found by bisection on the sign of g' within its bounds, and b,
    for each a, by safeguarded Newton steps on the sign of the derivative in b
    (which always has a root, as the targets lie in (0, 1)). Newton steps on
    both at once, undamped, diverge where p(1 - p) is tiny (saturated
    scores) or come out with a < 0.

    RETURNS (Dict): {"method": "platt", "a": a, "b": b}.
    RAISES (MapRefused): no entities, one class, equal scores, or g'(a) >= 0
        at the lowest slope (the best map is flat or decreasing).
    """
    x = logit(numpy.asarray(scores, dtype="float64"))
    right = numpy.asarray(correct, dtype=bool)
    _check_fittable(x, right, after=f" once clipped to [{LOGIT_EPS:g}, 1 - {LOGIT_EPS:g}]")
    y = _platt_targets(right)

    def slope(a: float) -> float:
        p = sigmoid(a * x + _platt_intercept(x, y, a))
        return float(((p - y) * x).mean())

    if slope(PLATT_MIN_SLOPE) >= 0:
        raise MapRefused(CalibrationErrors.REFUSED_NOT_INCREASING.format(method="platt"))
    lo, hi = PLATT_MIN_SLOPE, PLATT_MAX_SLOPE
    if slope(hi) < 0:
        a = hi
    else:
        for _ in range(60):
            mid = (lo + hi) / 2
            if slope(mid) > 0:
                hi = mid
            else:
                lo = mid
        a = (lo + hi) / 2
    return {"method": "platt", "a": float(a), "b": _platt_intercept(x, y, a)}


def _platt_intercept(x: numpy.ndarray, y: numpy.ndarray, a: float) -> float:
    """The b that minimises the mean log-loss of sigmoid(a * x + b) against
    the targets y: the root of mean(p) - mean(y), increasing in b, bracketed
    by the b's that put every p at or below min(y) and at or above max(y)."""
    lo = float(logit(numpy.array([y.min()]))[0] - a * x.max())
    hi = float(logit(numpy.array([y.max()]))[0] - a * x.min())
    target = float(y.mean())
    b = (lo + hi) / 2
    for _ in range(100):
        p = sigmoid(a * x + b)
        gap = float(p.mean()) - target
        if gap > 0:
            hi = b
        else:
            lo = b
        if abs(gap) < 1e-13 or hi - lo < 1e-12:
            break
        curvature = float((p * (1 - p)).mean())
        step = b - gap / curvature if curvature > 0 else (lo + hi) / 2
        # A Newton step that leaves the bracket is replaced by bisection.
        b = step if lo < step < hi else (lo + hi) / 2
    return b


def _platt_targets(right: numpy.ndarray) -> numpy.ndarray:
    n_pos, n_neg = int(right.sum()), int((~right).sum())
    return numpy.where(right, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))


def _check_fittable(values: numpy.ndarray, right: numpy.ndarray, after: str = "") -> None:
    """Raise MapRefused where no map can say how being right depends on the
    score: no entities, all right or all wrong, all scores equal (values are
    what the fit sees: the scores, or their logits, which are clipped)."""
    n = len(values)
    if n == 0:
        raise MapRefused(CalibrationErrors.REFUSED_NO_ENTITIES)
    n_right = int(right.sum())
    if n_right in (0, n):
        which = "right" if n_right else "wrong"
        raise MapRefused(CalibrationErrors.REFUSED_ONE_CLASS.format(n=n, which=which))
    if values.min() == values.max():
        raise MapRefused(CalibrationErrors.REFUSED_EQUAL_SCORES.format(n=n, after=after))


def fit_entity_map(method: str, scores: Sequence[float], correct: Sequence[bool]) -> Optional[Dict]:
    """The fitted map of `method` ("isotonic", "platt"; None for any other),
    its numbers rounded (see `rounded`).

    RAISES (MapRefused): the data give no increasing map (see fit_platt), or
        the rounded map fails the check it meets on load (rounding can pool
        the points of an isotonic map whose scores barely differ).
    """
    if method == "isotonic":
        entity_map = _rounded_map(fit_isotonic(scores, correct))
    elif method == "platt":
        entity_map = _rounded_map(fit_platt(scores, correct))
    else:
        return None
    problem = check_calibration({"entity_map": entity_map}, [])
    if problem is not None:
        raise MapRefused(problem)
    return entity_map


def rounded(value: float) -> float:
    """Saved JSON keeps about 10 decimals (srsly): numbers are rounded to 8
    when fitted, so a saved and loaded calibration is the very same."""
    return round(float(value), 8)


def _rounded_map(entity_map: Dict) -> Dict:
    if entity_map["method"] != "isotonic":
        return {k: rounded(v) if k in ("a", "b") else v for k, v in entity_map.items()}
    x_out: List[float] = []
    y_out: List[float] = []
    for x, y in zip(entity_map["x"], entity_map["y"]):
        x, y = rounded(x), rounded(y)
        if x_out and x <= x_out[-1]:
            y_out[-1] = max(y_out[-1], y)
            continue
        x_out.append(x)
        y_out.append(y)
    return {"method": "isotonic", "x": x_out, "y": y_out}
