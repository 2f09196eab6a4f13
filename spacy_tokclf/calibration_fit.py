"""Fitting the parts of a calibration (calibration.py applies them): the
temperature of a task's probabilities, and the monotone map of entity
scores, by centered isotonic regression or Platt's logistic regression.

Pure numpy functions of arrays; calibrate_pipeline.py gathers the arrays from
a pipeline and stores what these return.
"""
import math
from typing import Dict, List, Optional, Sequence

import numpy

from .calibration import logit, sigmoid

# Each step of the isotonic map holds at least this share of the entities.
MIN_STEP_SHARE = 0.01
# Inverse temperatures searched: T in [0.01, 100].
_BETA_RANGE = (0.01, 100.0)


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
    """
    s = numpy.asarray(scores, dtype="float64")
    right = numpy.asarray(correct, dtype=bool)
    if len(s) == 0:
        return {"method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 1.0]}
    n_pos, n_neg = int(right.sum()), int((~right).sum())
    c = numpy.where(right, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
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
    return {
        "method": "isotonic",
        "x": [float(b[0] / b[1]) for b in blocks],
        "y": [float(b[2]) for b in blocks],
    }


def fit_platt(scores: Sequence[float], correct: Sequence[bool]) -> Dict:
    """Logistic regression of `correct` on logit(score): p = sigmoid(a *
    logit(s) + b), by Newton's method, with Platt's targets (N+ + 1) / (N+ + 2)
    for right and 1 / (N- + 2) for wrong entities, which keep a and b finite
    when the data are separable.

    RETURNS (Dict): {"method": "platt", "a": a, "b": b}.
    """
    x = logit(numpy.asarray(scores, dtype="float64"))
    right = numpy.asarray(correct, dtype=bool)
    if len(x) == 0:
        return {"method": "platt", "a": 1.0, "b": 0.0}
    n_pos, n_neg = int(right.sum()), int((~right).sum())
    y = numpy.where(right, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    X = numpy.stack([x, numpy.ones_like(x)], axis=1)
    w = numpy.array([1.0, 0.0])
    for _ in range(100):
        p = sigmoid(X @ w)
        grad = X.T @ (p - y)
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-9 * numpy.eye(2)
        step = numpy.linalg.solve(hess, grad)
        w -= step
        if numpy.abs(step).max() < 1e-10:
            break
    return {"method": "platt", "a": float(w[0]), "b": float(w[1])}


def fit_entity_map(method: str, scores: Sequence[float], correct: Sequence[bool]) -> Optional[Dict]:
    if method == "isotonic":
        return fit_isotonic(scores, correct)
    if method == "platt":
        return fit_platt(scores, correct)
    return None
