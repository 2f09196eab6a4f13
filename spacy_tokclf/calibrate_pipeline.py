"""Calibrating a pipeline: `calibrate(nlp, examples)` fits, on gold dev
examples, what the component then applies at prediction time (calibration.py),
and stores it in `pipe.cfg["calibration"]` (JSON: saved, loaded and packaged
with the pipeline):

- a temperature T per task: the reported token probabilities (and so
  `doc._.tokclf_probs`) become softmax(log_softmax(scores) / T), fitted by
  minimising the negative log-likelihood of the gold labels;
- a monotone map of entity scores (the mean probability of an entity's
  token labels, after the temperature) to the probability that the entity is
  right (span and type): centered isotonic regression ("isotonic", piecewise
  linear through the centres of the isotonic steps) or logistic regression on
  the logit of the score ("platt"), fitted on the dev entities labelled right
  or wrong. "temperature" fits no map.

`method="auto"` (the default) picks, among the three, the one with the lowest
entity ECE measured by 2-fold cross-fitting on the examples (fit on the first
half of the docs, measure on the second, and the other way round). The report
returned holds the ECEs of every method, in-sample and cross-fitted.

`calibrate_saved` is `python -m spacy tokclf-calibrate` (cli.py): load a saved
pipeline, calibrate it on a .spacy file, save it; `summary_lines` prints the
ECEs before and after.
"""
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy

from .calibration import ENTITY_MAPS, map_entity_scores, temperature_of
from .calibration_data import EntityData, TaskData, collect, entity_scores, token_probs
from .calibration_fit import fit_entity_map, fit_temperature
from .errors import CalibrationErrors, error
from .metrics import N_BINS, calibration_summary

METHODS = ("auto", "isotonic", "platt", "temperature")


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
        if entities is not None and scores is not None and fold_scores is not None:
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
        raise ValueError(error(CalibrationErrors.UNKNOWN_METHOD, method=method, methods=list(METHODS)))
    examples = list(examples)
    pipe, data, entities = collect(nlp, examples, component)
    if not any((d.gold >= 0).any() for d in data.values()):
        raise ValueError(error(CalibrationErrors.NO_GOLD, pipe.name, tasks=pipe.tasks))
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
        raise ValueError(error(CalibrationErrors.NO_DEV_DOCS, path=dev_path))
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


__all__ = ["METHODS", "calibrate", "calibrate_saved", "cross_fit", "fit", "measure", "summary_lines"]
