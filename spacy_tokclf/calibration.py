"""Post-training calibration of a token_classifier's probabilities.

`calibrate(nlp, examples)` fits, on gold dev examples, what the component
then applies at prediction time, and stores it in `pipe.cfg["calibration"]`
(JSON: saved, loaded and packaged with the pipeline):

- a temperature T per task: the reported token probabilities (and so
  `doc._.tokclf_probs`) become softmax(log_softmax(scores) / T), fitted by
  minimising the negative log-likelihood of the gold labels;
- a monotone map of entity scores (the mean probability of an entity's
  token labels, after the temperature) to the probability that the entity is
  right (span and type): centered isotonic regression ("isotonic", piecewise
  linear through the centres of the isotonic steps) or logistic regression on
  the logit of the score ("platt"), fitted on the dev entities labelled right
  or wrong. "temperature" fits no map.

Decoding never changes: labels are chosen (argmax, or constrained Viterbi)
on the uncalibrated scores, and only the probabilities reported for them are
calibrated. Both maps are monotone, so the order of entity scores is kept
(the isotonic map is flat below its first and above its last step centre,
where scores become equal).

`method="auto"` (the default) picks, among the three, the one with the lowest
entity ECE measured by 2-fold cross-fitting on the examples (fit on the first
half of the docs, measure on the second, and the other way round). The report returned holds the ECEs of
every method, in-sample and cross-fitted.
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy

from .annotation import label_spans
from .metrics import N_BINS, calibration_summary, expected_calibration_error

METHODS = ("auto", "isotonic", "platt", "temperature")
ENTITY_MAPS = ("isotonic", "platt")
# Each step of the isotonic map holds at least this share of the entities.
MIN_STEP_SHARE = 0.01
# Inverse temperatures searched: T in [0.01, 100].
_BETA_RANGE = (0.01, 100.0)
_EPS = 1e-6


# Applying a calibration (the component calls these) -----------------------


def temperature_of(calibration: Optional[Dict], task: str) -> float:
    """The fitted temperature of a task; 1.0 without calibration."""
    if not calibration:
        return 1.0
    return float(calibration.get("temperature", {}).get(task, 1.0))


def scale_log_probs(log_probs: numpy.ndarray, temperature: float) -> numpy.ndarray:
    """log_softmax(log_probs / T), row-wise: the same as dividing the raw
    scores by T, since log_probs differ from them by a constant per row.

    log_probs [n_tokens, n_labels] -> [n_tokens, n_labels]
    """
    if temperature == 1.0:
        return log_probs
    scaled = log_probs / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    return scaled - numpy.log(numpy.exp(scaled).sum(axis=1, keepdims=True))


def map_entity_scores(calibration: Optional[Dict], scores: Sequence[float]) -> numpy.ndarray:
    """Entity scores through the fitted monotone map (unchanged without one)."""
    s = numpy.asarray(scores, dtype="float64")
    entity_map = (calibration or {}).get("entity_map")
    if not entity_map or len(s) == 0:
        return s
    if entity_map["method"] == "isotonic":
        return numpy.interp(s, entity_map["x"], entity_map["y"])
    if entity_map["method"] == "platt":
        return _sigmoid(entity_map["a"] * _logit(s) + entity_map["b"])
    raise ValueError(f"unknown entity map method {entity_map['method']!r}")


def check_calibration(calibration: Any, tasks: Sequence[str]) -> Optional[str]:
    """What is wrong with a stored calibration, or None if it is valid."""
    if calibration is None:
        return None
    if not isinstance(calibration, dict):
        return "calibration is not a JSON object"
    temps = calibration.get("temperature", {})
    if not isinstance(temps, dict) or any(
        task not in tasks or not _is_number(t) or not t > 0 for task, t in temps.items()
    ):
        return f"calibration.temperature must map tasks {list(tasks)} to positive numbers"
    entity_map = calibration.get("entity_map")
    if entity_map is None:
        return None
    if not isinstance(entity_map, dict) or entity_map.get("method") not in ENTITY_MAPS:
        return f"calibration.entity_map.method must be one of {list(ENTITY_MAPS)}"
    if entity_map["method"] == "isotonic":
        x, y = entity_map.get("x"), entity_map.get("y")
        ok = (
            isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and len(x) > 0
            and all(_is_number(v) for v in x + y)
            and all(a < b for a, b in zip(x, x[1:]))
            and all(a <= b for a, b in zip(y, y[1:]))
        )
        if not ok:
            return "calibration.entity_map x and y must be equal-length increasing lists of numbers"
    elif not (_is_number(entity_map.get("a")) and _is_number(entity_map.get("b"))):
        return "calibration.entity_map needs numbers a and b (platt)"
    return None


# Fitting ---------------------------------------------------------------------


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
    x = _logit(numpy.asarray(scores, dtype="float64"))
    right = numpy.asarray(correct, dtype=bool)
    if len(x) == 0:
        return {"method": "platt", "a": 1.0, "b": 0.0}
    n_pos, n_neg = int(right.sum()), int((~right).sum())
    y = numpy.where(right, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    X = numpy.stack([x, numpy.ones_like(x)], axis=1)
    w = numpy.array([1.0, 0.0])
    for _ in range(100):
        p = _sigmoid(X @ w)
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


# Data for fitting: one pass of the component over gold examples ------------


@dataclass
class TaskData:
    """One task's predictions on all tokens, the docs' rows one after another."""

    log_probs: numpy.ndarray  # [n_tokens, n_labels], uncalibrated
    ids: numpy.ndarray  # [n_tokens] decoded label ids
    gold: numpy.ndarray  # [n_tokens] gold label ids, -1 where missing
    doc: numpy.ndarray  # [n_tokens] the doc of each token


@dataclass
class EntityData:
    """The decoded entities; start/end index the rows of the "ents" TaskData."""

    start: numpy.ndarray
    end: numpy.ndarray
    label: List[str]
    correct: numpy.ndarray  # span and type of a gold entity
    doc: numpy.ndarray
    n_gold: int


def collect(nlp, examples: Iterable, component: Optional[str] = None, batch_size: int = 256):
    """Run the component over the examples' predicted docs (after the
    components before it) and gather what calibration is fitted on.

    RETURNS (Tuple[pipe, Dict[str, TaskData], Optional[EntityData]])
    """
    pipe = find_component(nlp, component)
    examples = list(examples)
    upstream = []
    for name, proc in nlp.pipeline:
        if name == pipe.name:
            break
        upstream.append(proc)
    parts: Dict[str, List[Tuple[numpy.ndarray, numpy.ndarray]]] = {t: [] for t in pipe.tasks}
    lengths: List[int] = []
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        docs = [eg.predicted for eg in batch]
        for proc in upstream:
            docs = list(proc.pipe(docs))
        per_task, batch_lengths = pipe.predict_log_probs(docs)
        lengths.extend(batch_lengths)
        for task in pipe.tasks:
            parts[task].append(per_task[task])
    doc_index = numpy.repeat(numpy.arange(len(lengths)), lengths)
    data: Dict[str, TaskData] = {}
    for task in pipe.tasks:
        n_labels = len(pipe.layout.output_labels(task))
        log_probs = [lp for lp, _ in parts[task]]
        ids = [i for _, i in parts[task]]
        gold = [pipe.gold_ids(eg, task) for eg in examples]
        data[task] = TaskData(
            log_probs=numpy.concatenate(log_probs) if log_probs else numpy.zeros((0, n_labels)),
            ids=numpy.concatenate(ids) if ids else numpy.zeros((0,), dtype="int64"),
            gold=numpy.concatenate(gold) if gold else numpy.zeros((0,), dtype="int64"),
            doc=doc_index,
        )
    entities = None
    if "ents" in data:
        entities = _entities(pipe, examples, data["ents"], lengths)
    return pipe, data, entities


def _entities(pipe, examples: List, ents: TaskData, lengths: List[int]) -> EntityData:
    labels = pipe.layout.output_labels("ents")
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)]).astype("int64")
    starts, ends, types, correct, docs = [], [], [], [], []
    n_gold = 0
    for d, eg in enumerate(examples):
        lo, hi = offsets[d], offsets[d + 1]
        spans = label_spans(ents.ids[lo:hi], numpy.zeros(hi - lo), labels)
        gold = {(s.start, s.end, s.label_) for s in eg.get_aligned_spans_y2x(eg.reference.ents)}
        n_gold += len(eg.reference.ents)
        for start, end, label, _ in spans:
            starts.append(lo + start)
            ends.append(lo + end)
            types.append(label)
            correct.append((start, end, label) in gold)
            docs.append(d)
    return EntityData(
        start=numpy.asarray(starts, dtype="int64"),
        end=numpy.asarray(ends, dtype="int64"),
        label=types,
        correct=numpy.asarray(correct, dtype=bool),
        doc=numpy.asarray(docs, dtype="int64"),
        n_gold=n_gold,
    )


def token_probs(data: TaskData, temperature: float) -> numpy.ndarray:
    """The probability of each token's decoded label at a temperature."""
    log_probs = scale_log_probs(data.log_probs, temperature)
    return numpy.exp(log_probs[numpy.arange(len(data.ids)), data.ids])


def entity_scores(entities: EntityData, probs: numpy.ndarray) -> numpy.ndarray:
    """Mean token probability of each entity (as label_spans scores them)."""
    sums = numpy.concatenate([[0.0], numpy.cumsum(probs, dtype="float64")])
    if len(entities.start) == 0:
        return numpy.zeros((0,), dtype="float64")
    means = (sums[entities.end] - sums[entities.start]) / (entities.end - entities.start)
    return numpy.clip(means, 0.0, 1.0)


# Calibrating a pipeline ------------------------------------------------------


def find_component(nlp, component: Optional[str] = None):
    """The named token_classifier, or the only one in the pipeline."""
    from .pipeline import TokenClassifier

    found = [(name, p) for name, p in nlp.pipeline if isinstance(p, TokenClassifier)]
    if component is not None:
        for name, p in found:
            if name == component:
                return p
        raise ValueError(
            f"No token_classifier named '{component}' in the pipeline; its "
            f"token_classifier components are {[n for n, _ in found]}."
        )
    if len(found) != 1:
        raise ValueError(
            f"The pipeline has {len(found)} token_classifier components "
            f"({[n for n, _ in found]}): name one, e.g. component=\"{found[0][0] if found else 'token_classifier'}\" "
            f"(--component on the command line)."
        )
    return found[0][1]


def fit(
    data: Dict[str, TaskData], entities: Optional[EntityData], method: str, mask=None
) -> Dict:
    """Fit a calibration on the tokens and entities of the docs in `mask`
    (a bool array over docs; all docs if None)."""
    temperature = {}
    for task, d in data.items():
        rows = d.gold >= 0
        if mask is not None:
            rows &= mask[d.doc]
        temperature[task] = fit_temperature(d.log_probs[rows], d.gold[rows])
    temperature = {task: _round(t) for task, t in temperature.items()}
    calibration: Dict[str, Any] = {"temperature": temperature, "entity_map": None}
    if entities is not None and method in ENTITY_MAPS:
        keep = numpy.ones(len(entities.start), dtype=bool) if mask is None else mask[entities.doc]
        scores = entity_scores(entities, token_probs(data["ents"], temperature["ents"]))
        entity_map = fit_entity_map(method, scores[keep], entities.correct[keep])
        calibration["entity_map"] = _rounded_map(entity_map)
    return calibration


def _round(value: float) -> float:
    """Saved JSON keeps about 10 decimals (srsly): numbers are rounded to 8
    when fitted, so a saved and loaded calibration is the very same."""
    return round(float(value), 8)


def _rounded_map(entity_map: Optional[Dict]) -> Optional[Dict]:
    if entity_map is None or entity_map["method"] != "isotonic":
        return entity_map and {k: _round(v) if k in ("a", "b") else v for k, v in entity_map.items()}
    x_out: List[float] = []
    y_out: List[float] = []
    for x, y in zip(entity_map["x"], entity_map["y"]):
        x, y = _round(x), _round(y)
        if x_out and x <= x_out[-1]:
            y_out[-1] = max(y_out[-1], y)
            continue
        x_out.append(x)
        y_out.append(y)
    return {"method": "isotonic", "x": x_out, "y": y_out}


def apply(
    calibration: Optional[Dict], data: Dict[str, TaskData], entities: Optional[EntityData]
) -> Tuple[Dict[str, numpy.ndarray], Optional[numpy.ndarray]]:
    """Token probabilities per task and entity scores under a calibration
    (None: uncalibrated), as the component reports them."""
    probs = {task: token_probs(d, temperature_of(calibration, task)) for task, d in data.items()}
    scores = None
    if entities is not None:
        scores = map_entity_scores(calibration, entity_scores(entities, probs["ents"]))
    return probs, scores


def measure(
    calibration: Optional[Dict], data: Dict[str, TaskData], entities: Optional[EntityData]
) -> Dict:
    """Calibration metrics: token ECE per task (over tokens with gold), and
    entity ECE, mean score and precision."""
    probs, scores = apply(calibration, data, entities)
    return _summaries(probs, scores, data, entities)


def _summaries(probs, scores, data, entities, n_bins: int = N_BINS) -> Dict:
    out: Dict[str, Any] = {}
    for task, d in data.items():
        rows = d.gold >= 0
        out[f"{task}_tokens"] = calibration_summary(probs[task][rows], d.ids[rows] == d.gold[rows], n_bins)
    if entities is not None:
        out["entities"] = calibration_summary(scores, entities.correct, n_bins)
    return out


def cross_fit(
    data: Dict[str, TaskData],
    entities: Optional[EntityData],
    method: str,
    n_docs: int,
    folds: int = 2,
) -> Dict:
    """Metrics of calibrations each fitted on all folds but one and applied to
    that one, pooled over the folds. The folds are contiguous runs of docs
    (halves for 2 folds), so sentences of one article stay together."""
    fold_of = (numpy.arange(n_docs) * folds) // max(n_docs, 1)
    probs = {task: numpy.zeros(len(d.ids)) for task, d in data.items()}
    scores = numpy.zeros(len(entities.start)) if entities is not None else None
    for k in range(folds):
        held_out = fold_of == k
        calibration = fit(data, entities, method, mask=~held_out)
        fold_probs, fold_scores = apply(calibration, data, entities)
        for task, d in data.items():
            rows = held_out[d.doc]
            probs[task][rows] = fold_probs[task][rows]
        if entities is not None:
            rows = held_out[entities.doc]
            scores[rows] = fold_scores[rows]
    return _summaries(probs, scores, data, entities)


def calibrate(
    nlp,
    examples: Iterable,
    *,
    component: Optional[str] = None,
    method: str = "auto",
    folds: int = 2,
) -> Dict:
    """Fit a calibration of a token_classifier on gold examples and store it
    in the component (`pipe.cfg["calibration"]`), replacing any earlier one.
    Decoding (which entities and tags are predicted) does not change.

    nlp (Language): a pipeline with a trained token_classifier.
    examples (Iterable[Example]): gold dev examples (not the training data).
    component (Optional[str]): the component's name; default: the only one.
    method (str): "auto" (the lowest cross-fitted entity ECE), "isotonic",
        "platt" or "temperature" (no entity map).
    folds (int): folds for the cross-fitted estimate (contiguous runs of docs).
    RETURNS (Dict): what was fitted and the metrics: "uncalibrated",
        per method "in_sample" (fitted and measured on all examples) and
        "cross_fitted", and the chosen "method".
    """
    if method not in METHODS:
        raise ValueError(f"Unknown calibration method {method!r}: use one of {list(METHODS)}.")
    examples = list(examples)
    pipe, data, entities = collect(nlp, examples, component)
    if not any((d.gold >= 0).any() for d in data.values()):
        raise ValueError(
            f"[{pipe.name}] The calibration examples have no gold annotation for "
            f"the tasks {pipe.tasks}: calibrate on an annotated dev set."
        )
    candidates = ["temperature"] + (list(ENTITY_MAPS) if entities is not None else [])
    if method != "auto":
        candidates = [method]
    n_docs = len(examples)
    report: Dict[str, Any] = {
        "component": pipe.name,
        "n_docs": n_docs,
        "n_entities": int(len(entities.start)) if entities is not None else None,
        "n_gold_entities": entities.n_gold if entities is not None else None,
        "folds": folds,
        "uncalibrated": measure(None, data, entities),
        "methods": {},
    }
    for name in candidates:
        fitted = fit(data, entities, name)
        report["methods"][name] = {
            "temperature": fitted["temperature"],
            "in_sample": measure(fitted, data, entities),
            "cross_fitted": cross_fit(data, entities, name, n_docs, folds) if n_docs >= folds > 1 else None,
        }
    if method == "auto":
        key = "entities" if entities is not None else f"{pipe.tasks[0]}_tokens"

        def ece(name: str) -> float:
            info = report["methods"][name]
            return (info["cross_fitted"] or info["in_sample"])[key]["ece"]

        method = min(candidates, key=ece)
    report["method"] = method
    calibration = fit(data, entities, method)
    calibration["method"] = method
    calibration["fitted_on"] = {"docs": n_docs, "entities": report["n_entities"]}
    pipe.cfg["calibration"] = calibration
    report["calibration"] = calibration
    return report


def examples_from_docs(nlp, gold_docs: Iterable) -> List:
    """Examples that predict on the gold docs' own tokens."""
    from spacy.tokens import Doc
    from spacy.training import Example

    return [
        Example(
            Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold]),
            gold,
        )
        for gold in gold_docs
    ]


def calibrate_saved(
    pipeline: Union[str, Path],
    dev_path: Union[str, Path],
    output: Union[str, Path],
    *,
    component: Optional[str] = None,
    method: str = "auto",
    folds: int = 2,
    report_path: Optional[Union[str, Path]] = None,
) -> Dict:
    """Load a saved pipeline, calibrate it on a .spacy file of gold docs and
    save the calibrated pipeline (what `python -m spacy tokclf-calibrate`
    does). The report is written as JSON to report_path if given.

    RETURNS (Dict): the report of `calibrate`.
    """
    import spacy
    import srsly
    from spacy.tokens import DocBin

    nlp = spacy.load(pipeline)
    gold_docs = list(DocBin().from_disk(dev_path).get_docs(nlp.vocab))
    if not gold_docs:
        raise ValueError(f"{dev_path} holds no docs: calibrate on an annotated dev set.")
    report = calibrate(
        nlp, examples_from_docs(nlp, gold_docs), component=component, method=method, folds=folds
    )
    report["pipeline"] = str(pipeline)
    report["dev"] = str(dev_path)
    Path(output).mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(report_path, report)
    return report


def summary_lines(report: Dict) -> List[str]:
    """A few lines of the ECEs for the command line."""
    lines = []
    chosen = report["methods"][report["method"]]
    for key, what in (("entities", "entity"), ("ents_tokens", "token (ents)"), ("tag_tokens", "tag")):
        if key not in report["uncalibrated"]:
            continue
        before = report["uncalibrated"][key]
        after = chosen["in_sample"][key]
        line = f"{what} ECE {before['ece']:.4f} -> {after['ece']:.4f}"
        if chosen["cross_fitted"]:
            line += f" ({chosen['cross_fitted'][key]['ece']:.4f} cross-fitted)"
        if key == "entities":
            line += (
                f"; mean score {_num(before['mean_confidence'])} -> {_num(after['mean_confidence'])}, "
                f"precision {_num(before['accuracy'])}"
            )
        lines.append(line)
    return lines


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _logit(s: numpy.ndarray) -> numpy.ndarray:
    s = numpy.clip(s, _EPS, 1 - _EPS)
    return numpy.log(s) - numpy.log1p(-s)


def _sigmoid(x: numpy.ndarray) -> numpy.ndarray:
    return 0.5 * (1.0 + numpy.tanh(0.5 * x))  # no overflow for large |x|


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "calibrate",
    "check_calibration",
    "expected_calibration_error",
    "fit_isotonic",
    "fit_platt",
    "fit_temperature",
    "map_entity_scores",
    "scale_log_probs",
]
