"""Calibration and error metrics: pure functions of scores and spans.

Nothing here touches a pipeline, so each function can be checked against
numbers worked out by hand (tests/test_metrics.py).

- `reliability_bins` / `expected_calibration_error`: confidence against
  accuracy in equal-width bins of [0, 1];
- `threshold_table`: entity precision / recall / F1 when entities scored
  under a threshold are dropped;
- `classify_errors`: each predicted and gold entity of a doc as right or as
  one of four kinds of error (missed, spurious, wrong type, wrong boundary);
- `label_drops`: the labels whose F1 fell by more than a bound (the
  forgetting gate, scoring.forgetting_gate).
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy

from .errors import Errors, error

N_BINS = 10
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)

# (start token, end token exclusive, label)
Span = Tuple[int, int, str]

ERROR_KINDS = ("missed", "spurious", "wrong type", "wrong boundary")


# Confidences and right/wrong flags: lists or numpy arrays.
Floats = Union[Sequence[float], numpy.ndarray]
Flags = Union[Sequence[bool], numpy.ndarray]


def reliability_bins(
    confidences: Floats, correct: Flags, n_bins: int = N_BINS
) -> List[Dict[str, Any]]:
    """Equal-width bins of [0, 1]: bin i holds the confidences in
    [i / n_bins, (i + 1) / n_bins), the last bin also 1.0.

    RETURNS (List[Dict]): per bin, "lo", "hi", "n" (predictions in it),
        "confidence" (their mean confidence) and "accuracy" (the share that
        is right); both None for an empty bin.
    """
    conf = numpy.asarray(confidences, dtype="float64")
    right = numpy.asarray(correct, dtype="float64")
    if conf.shape != right.shape:
        raise ValueError(error(Errors.METRICS_LENGTHS_DIFFER, n_conf=len(conf), n_right=len(right)))
    index = numpy.clip(numpy.floor(conf * n_bins).astype("int64"), 0, n_bins - 1)
    n = numpy.bincount(index, minlength=n_bins)
    conf_sum = numpy.bincount(index, weights=conf, minlength=n_bins)
    right_sum = numpy.bincount(index, weights=right, minlength=n_bins)
    bins = []
    for i in range(n_bins):
        bins.append(
            {
                "lo": i / n_bins,
                "hi": (i + 1) / n_bins,
                "n": int(n[i]),
                "confidence": float(conf_sum[i] / n[i]) if n[i] else None,
                "accuracy": float(right_sum[i] / n[i]) if n[i] else None,
            }
        )
    return bins


def expected_calibration_error(
    confidences: Floats, correct: Flags, n_bins: int = N_BINS
) -> float:
    """ECE: the mean over bins of |accuracy - mean confidence|, each bin
    weighted by its share of the predictions (equal-width bins, as in
    `reliability_bins`). 0.0 for no predictions."""
    bins = reliability_bins(confidences, correct, n_bins)
    total = sum(b["n"] for b in bins)
    if total == 0:
        return 0.0
    return float(
        sum(b["n"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"])
    )


def calibration_summary(
    confidences: Floats, correct: Flags, n_bins: int = N_BINS, where: Optional[Flags] = None
) -> Dict:
    """ECE, mean confidence against accuracy (for entities: precision), the
    number of predictions and the bins; of the predictions where `where` is
    true if given (e.g. the entities whose labels decoding repaired)."""
    conf = numpy.asarray(confidences, dtype="float64")
    right = numpy.asarray(correct, dtype="float64")
    if conf.shape != right.shape:
        raise ValueError(error(Errors.METRICS_LENGTHS_DIFFER, n_conf=len(conf), n_right=len(right)))
    if where is not None:
        keep = numpy.asarray(where, dtype=bool)
        if keep.shape != conf.shape:
            raise ValueError(
                error(Errors.METRICS_WHERE_DIFFERS, n_conf=len(conf), n_where=len(keep))
            )
        conf, right = conf[keep], right[keep]
    return {
        "n": int(len(conf)),
        "ece": expected_calibration_error(conf, right, n_bins),
        "mean_confidence": float(conf.mean()) if len(conf) else None,
        "accuracy": float(right.mean()) if len(right) else None,
        "bins": reliability_bins(conf, right, n_bins),
    }


def threshold_table(
    scores: Sequence[float],
    correct: Sequence[bool],
    n_gold: int,
    thresholds: Sequence[Optional[float]] = (None,) + THRESHOLDS,
) -> List[Dict]:
    """Entity precision, recall and F1 when predicted entities scored under
    each threshold are dropped (None: keep all). An entity scored exactly
    at the threshold is kept.

    scores / correct: per predicted entity, its score and whether it matches
        a gold entity exactly (span and type).
    n_gold (int): the gold entities.
    """
    s = numpy.asarray(scores, dtype="float64")
    right = numpy.asarray(correct, dtype=bool)
    rows = []
    for t in thresholds:
        keep = numpy.ones(len(s), dtype=bool) if t is None else s >= t
        n_kept = int(keep.sum())
        tp = int((right & keep).sum())
        p = tp / n_kept if n_kept else 0.0
        r = tp / n_gold if n_gold else 0.0
        rows.append(
            {
                "threshold": t,
                "kept": n_kept,
                "dropped": int(len(s) - n_kept),
                "tp": tp,
                "p": p,
                "r": r,
                "f": 2 * p * r / (p + r) if p + r else 0.0,
            }
        )
    return rows


def classify_errors(gold: Sequence[Any], predicted: Sequence[Any]) -> Dict[str, List]:
    """Each predicted and gold entity of one doc, right or an error.

    - right: a predicted entity with the span and type of a gold one;
    - wrong type: the span of a gold entity, another type;
    - wrong boundary: overlaps a gold entity without its span (whatever its
      type; "type_differs" says whether the type is wrong as well);
    - spurious: overlaps no gold entity;
    - missed: a gold entity that no predicted entity overlaps.

    A gold entity overlapped by a wrongly typed or bounded prediction is
    counted in that error, not again as missed. Spans are (start, end, label)
    with `end` exclusive; predicted spans may carry more items (a score),
    which are kept.

    RETURNS (Dict[str, List]): "right" (predicted spans), "errors": dicts with
        "kind", "pred" (the predicted span or None), "gold" (the gold spans
        involved) and "type_differs".
    """
    gold = [tuple(g) for g in gold]  # (start, end, label, ...)
    gold_exact = {(g[0], g[1]): g for g in gold}
    gold_set = {g[:3] for g in gold}
    overlapped = numpy.zeros(len(gold), dtype=bool)
    right: List = []
    errors: List[Dict] = []
    for pred in predicted:
        pred = tuple(pred)
        start, end, label = pred[0], pred[1], pred[2]
        hits = [i for i, g in enumerate(gold) if g[0] < end and start < g[1]]
        overlapped[hits] = True
        if (start, end, label) in gold_set:
            right.append(pred)
        elif (start, end) in gold_exact:
            errors.append(
                {"kind": "wrong type", "pred": pred, "gold": [gold_exact[(start, end)]],
                 "type_differs": True}
            )
        elif hits:
            errors.append(
                {"kind": "wrong boundary", "pred": pred, "gold": [gold[i] for i in hits],
                 "type_differs": all(gold[i][2] != label for i in hits)}
            )
        else:
            errors.append({"kind": "spurious", "pred": pred, "gold": [], "type_differs": False})
    for i, g in enumerate(gold):
        if not overlapped[i]:
            errors.append({"kind": "missed", "pred": None, "gold": [g], "type_differs": False})
    return {"right": right, "errors": errors}


def count_error_kinds(errors: Sequence[Dict]) -> Dict[str, int]:
    counts = {kind: 0 for kind in ERROR_KINDS}
    for found in errors:
        counts[found["kind"]] += 1
    return counts


def label_drops(
    before: Dict[str, float], after: Dict[str, float], labels: Sequence[str], max_drop: float
) -> List[Tuple[str, float, float, float]]:
    """(label, before, after, drop) for each of `labels` whose F1 fell by more
    than `max_drop` from `before` to `after` (a label missing counts 0)."""
    out = []
    for label in labels:
        b, a = before.get(label, 0.0), after.get(label, 0.0)
        if b - a > max_drop:
            out.append((label, b, a, b - a))
    return out
