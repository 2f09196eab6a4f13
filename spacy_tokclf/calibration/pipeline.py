"""Calibrating a pipeline: `calibrate(nlp, examples)` fits, on gold dev
examples, what the component then applies at prediction time (calibrated.py),
and stores it in `pipe.cfg["calibration"]` (JSON: saved, loaded and packaged
with the pipeline):

- a temperature T per task: the reported token probabilities (and so
  `doc._.tokclf_probs`) become softmax(log_softmax(scores) / T), fitted by
  minimising the negative log-likelihood of the gold labels;
- an increasing map of entity scores (after the temperature) to the
  probability that the entity is right (span and type): centered isotonic
  regression ("isotonic", piecewise linear through the centres of the
  isotonic steps) or logistic regression on the logit of the score with a
  bounded positive slope ("platt"), fitted on the dev entities labelled right
  or wrong. "temperature" fits no map. A map the data cannot give (no
  entities, all right or all wrong, equal scores, or a flat or decreasing
  best fit: fit.MapRefused) is refused: an error for that method,
  and left out by "auto".

`method="auto"` (the default) picks, among the methods not refused, the one
with the lowest entity ECE measured by 2-fold cross-fitting on the examples
(fit on the first half of the docs, measure on the second, and the other way
round). That lowest figure is optimistic: it is the minimum of several noisy
estimates. The honest estimate of "auto" is nested (report["auto"]): in each
outer fold, the choice is made the same way on the other fold's docs alone,
the chosen method is fitted on them and measured on the held-out fold.

`calibrate_saved` is `python -m spacy tokclf-calibrate` (spacy_tokclf/cli.py):
load a saved pipeline, calibrate it on a .spacy file, save it; `summary_lines`
prints the ECEs before and after.
"""
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy

from ..calibrated import ENTITY_MAPS, map_entity_scores, temperature_of
from ..errors import CalibrationErrors, error
from ..metrics import N_BINS, calibration_summary
from .data import (
    EntityData,
    TaskData,
    collect,
    entity_scores,
    entity_token_probs,
    examples_from_docs,
    token_probs,
)
from .fit import MapRefused, fit_entity_map, fit_temperature, rounded

METHODS = ("auto", "isotonic", "platt", "temperature")
# What report["auto"]["cross_fitted"] is.
NESTED_ESTIMATE = (
    "nested cross-fitting: in each of the {folds} folds of the docs, 'auto' chose "
    "its method on the other folds' docs alone (by their own {folds}-fold "
    "cross-fitted ECE), fitted it on them and was measured on the held-out fold; "
    "the chosen method's own 'cross_fitted' ECE is the lowest of the candidates' "
    "and so optimistic"
)
NO_ESTIMATE = "none: fewer docs than folds, so auto chose by in-sample ECE, which is optimistic"

Mask = numpy.ndarray  # bool, one per doc


def fit(
    data: Dict[str, TaskData], entities: Optional[EntityData], method: str, mask=None
) -> Dict:
    """Fit a calibration on the tokens and entities of the docs in `mask`
    (a bool array over docs; all docs if None). Where the method's entity map
    cannot be fitted, the calibration has no map and "refused" says why."""
    temperature = {}
    for task, d in data.items():
        rows = d.gold >= 0
        if mask is not None:
            rows &= mask[d.doc]
        temperature[task] = fit_temperature(d.log_probs[rows], d.gold[rows])
    temperature = {task: rounded(t) for task, t in temperature.items()}
    calibration: Dict[str, Any] = {"temperature": temperature, "entity_map": None}
    if entities is not None and method in ENTITY_MAPS:
        keep = numpy.ones(len(entities.start), dtype=bool) if mask is None else mask[entities.doc]
        scores = entity_scores(entities, entity_token_probs(data["ents"], entities, temperature["ents"]))
        try:
            calibration["entity_map"] = fit_entity_map(method, scores[keep], entities.correct[keep])
        except MapRefused as err:
            calibration["refused"] = str(err)
    return calibration


def apply(
    calibration: Optional[Dict], data: Dict[str, TaskData], entities: Optional[EntityData]
) -> Tuple[Dict[str, numpy.ndarray], Optional[numpy.ndarray]]:
    """Token probabilities per task and entity scores under a calibration
    (None: uncalibrated), as the component reports them."""
    probs = {task: token_probs(d, temperature_of(calibration, task)) for task, d in data.items()}
    scores = None
    if entities is not None:
        mass = entity_token_probs(data["ents"], entities, temperature_of(calibration, "ents"))
        scores = map_entity_scores(calibration, entity_scores(entities, mass))
    return probs, scores


def measure(
    calibration: Optional[Dict],
    data: Dict[str, TaskData],
    entities: Optional[EntityData],
    docs: Optional[Mask] = None,
) -> Dict:
    """Calibration metrics: token ECE per task (over tokens with gold), and
    entity ECE, mean score and precision; of the docs in `docs` (all if None)."""
    probs, scores = apply(calibration, data, entities)
    return _summaries(probs, scores, data, entities, docs)


def _summaries(probs, scores, data, entities, docs: Optional[Mask] = None, n_bins: int = N_BINS) -> Dict:
    out: Dict[str, Any] = {}
    for task, d in data.items():
        rows = d.gold >= 0
        if docs is not None:
            rows &= docs[d.doc]
        out[f"{task}_tokens"] = calibration_summary(probs[task][rows], d.ids[rows] == d.gold[rows], n_bins)
    if entities is not None:
        keep = slice(None) if docs is None else docs[entities.doc]
        out["entities"] = calibration_summary(scores[keep], entities.correct[keep], n_bins)
    return out


def _folds(docs: Mask, folds: int) -> List[Mask]:
    """The docs in `docs` as `folds` contiguous runs (halves for 2 folds), so
    that sentences of one article stay together; masks over all docs."""
    ids = numpy.flatnonzero(docs)
    fold_of = (numpy.arange(len(ids)) * folds) // max(len(ids), 1)
    masks = []
    for k in range(folds):
        mask = numpy.zeros(len(docs), dtype=bool)
        mask[ids[fold_of == k]] = True
        masks.append(mask)
    return masks


def _held_out(
    data: Dict[str, TaskData],
    entities: Optional[EntityData],
    fit_on: Callable[[Mask], Dict],
    docs: Mask,
    folds: int,
) -> Tuple[Dict, List[Dict]]:
    """Metrics, over the docs in `docs`, of each fold under a calibration
    that `fit_on` fitted on the other folds' docs; and those calibrations."""
    probs = {task: numpy.zeros(len(d.ids)) for task, d in data.items()}
    scores = numpy.zeros(len(entities.start)) if entities is not None else None
    fitted = []
    for held_out in _folds(docs, folds):
        calibration = fit_on(docs & ~held_out)
        fitted.append(calibration)
        fold_probs, fold_scores = apply(calibration, data, entities)
        for task, d in data.items():
            rows = held_out[d.doc]
            probs[task][rows] = fold_probs[task][rows]
        if entities is not None and scores is not None and fold_scores is not None:
            rows = held_out[entities.doc]
            scores[rows] = fold_scores[rows]
    return _summaries(probs, scores, data, entities, docs), fitted


def cross_fit(
    data: Dict[str, TaskData],
    entities: Optional[EntityData],
    method: str,
    n_docs: int,
    folds: int = 2,
) -> Dict:
    """Metrics of calibrations each fitted on all folds but one and applied to
    that one, pooled over the folds. The folds are contiguous runs of docs
    (halves for 2 folds), so sentences of one article stay together. A fold
    whose entity map is refused is measured without a map (see _evaluate)."""
    docs = numpy.ones(n_docs, dtype=bool)
    summaries, _ = _held_out(data, entities, lambda m: fit(data, entities, method, m), docs, folds)
    return summaries


def _evaluate(data, entities, method: str, docs: Mask, folds: int) -> Dict:
    """A method fitted on the docs in `docs`: the calibration, its in-sample
    metrics, its cross-fitted metrics (None with fewer docs than folds, or
    where a fold's map is refused), and why its map was refused, if it was."""
    calibration = fit(data, entities, method, mask=docs)
    info: Dict[str, Any] = {"calibration": calibration, "refused": calibration.get("refused")}
    if info["refused"] is not None:
        return info
    info["in_sample"] = measure(calibration, data, entities, docs)
    info["cross_fitted"] = None
    if int(docs.sum()) >= folds > 1:
        crossed, fitted = _held_out(
            data, entities, lambda m: fit(data, entities, method, m), docs, folds
        )
        refusals = [c["refused"] for c in fitted if c.get("refused")]
        if refusals:
            info["refused_in_fold"] = refusals[0]
        else:
            info["cross_fitted"] = crossed
    return info


def _choose(data, entities, candidates: List[str], key: str, docs: Mask, folds: int) -> Tuple[str, Dict[str, Dict]]:
    """The candidate with the lowest ECE of `key` on the docs in `docs`:
    cross-fitted, or in-sample with fewer docs than folds. Candidates refused
    on these docs, or on one of their folds, are left out; "temperature" is
    never refused. RETURNS the choice and each candidate's _evaluate."""
    infos = {name: _evaluate(data, entities, name, docs, folds) for name in candidates}
    cross = int(docs.sum()) >= folds > 1

    def ece(name: str) -> float:
        info = infos[name]
        return info["cross_fitted" if cross else "in_sample"][key]["ece"]

    usable = [
        name for name, info in infos.items()
        if info["refused"] is None and (info["cross_fitted"] is not None or not cross)
    ]
    return min(usable, key=ece), infos


def _nested(data, entities, candidates: List[str], key: str, n_docs: int, folds: int) -> Dict:
    """The honest estimate of method="auto": _choose and fit on all folds but
    one, measure on that one (none with fewer docs than folds)."""
    if not n_docs >= folds > 1:
        return {"cross_fitted": None, "chosen_per_fold": [], "estimate": NO_ESTIMATE}
    chosen: List[str] = []

    def fit_on(train: Mask) -> Dict:
        name, infos = _choose(data, entities, candidates, key, train, folds)
        chosen.append(name)
        return infos[name]["calibration"]

    summaries, _ = _held_out(data, entities, fit_on, numpy.ones(n_docs, dtype=bool), folds)
    return {
        "cross_fitted": summaries,
        "chosen_per_fold": chosen,
        "estimate": NESTED_ESTIMATE.format(folds=folds),
    }


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
    Calibration never changes the decoded labels (the entities and tags that
    decoding finds); with a `threshold` set, which entities pass it depends on
    the (calibrated) scores, so calibrating can change which are kept.

    nlp (Language): a pipeline with a trained token_classifier.
    examples (Iterable[Example]): gold dev examples (not the training data).
    component (Optional[str]): the component's name; default: the only one.
    method (str): "auto" (the lowest cross-fitted entity ECE among the methods
        not refused), "isotonic", "platt" or "temperature" (no entity map).
    folds (int): folds for the cross-fitted estimate (contiguous runs of docs).
    RETURNS (Dict): what was fitted and the metrics: "uncalibrated", per
        method fitted "in_sample" (fitted and measured on all examples) and
        "cross_fitted" (None where a fold's map was refused:
        "refused_in_fold" says why), "refused" (method -> why its map was not
        fitted), the chosen "method", and for method="auto", "auto": the
        nested cross-fitted estimate of the whole choice ("cross_fitted"),
        the method chosen in each fold and what the estimate is ("estimate").
    RAISES (ValueError): the map of the method asked for cannot be fitted.
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
    key = "entities" if entities is not None else f"{pipe.tasks[0]}_tokens"
    all_docs = numpy.ones(n_docs, dtype=bool)
    if method == "auto":
        chosen, infos = _choose(data, entities, candidates, key, all_docs, folds)
    else:
        chosen, infos = method, {method: _evaluate(data, entities, method, all_docs, folds)}
    report: Dict[str, Any] = {
        "component": pipe.name,
        "n_docs": n_docs,
        "n_entities": int(len(entities.start)) if entities is not None else None,
        "n_gold_entities": entities.n_gold if entities is not None else None,
        "folds": folds,
        "uncalibrated": measure(None, data, entities),
        "methods": {},
        "refused": {name: info["refused"] for name, info in infos.items() if info["refused"]},
    }
    for name, info in infos.items():
        if info["refused"] is None:
            report["methods"][name] = {
                "temperature": info["calibration"]["temperature"],
                "in_sample": info["in_sample"],
                "cross_fitted": info["cross_fitted"],
                "refused_in_fold": info.get("refused_in_fold"),
            }
    if chosen in report["refused"]:
        raise ValueError(
            error(
                CalibrationErrors.MAP_REFUSED,
                pipe.name,
                method=chosen,
                n_docs=n_docs,
                reason=report["refused"][chosen],
            )
        )
    if method == "auto":
        report["auto"] = _nested(data, entities, candidates, key, n_docs, folds)
    report["method"] = chosen
    calibration = dict(infos[chosen]["calibration"])
    calibration["method"] = chosen
    calibration["fitted_on"] = {"docs": n_docs, "entities": report["n_entities"]}
    pipe.cfg["calibration"] = calibration
    report["calibration"] = calibration
    return report


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
    """A few lines of the ECEs for the command line. For method "auto", the
    estimate in brackets is the nested one (report["auto"])."""
    lines = []
    chosen = report["methods"][report["method"]]
    nested = (report.get("auto") or {}).get("cross_fitted")
    for key, what in (("entities", "entity"), ("ents_tokens", "token (ents)"), ("tag_tokens", "tag")):
        if key not in report["uncalibrated"]:
            continue
        before = report["uncalibrated"][key]
        after = chosen["in_sample"][key]
        line = f"{what} ECE {before['ece']:.4f} -> {after['ece']:.4f}"
        if nested:
            line += f" ({nested[key]['ece']:.4f} nested cross-fitted, the estimate for auto)"
        elif chosen["cross_fitted"]:
            line += f" ({chosen['cross_fitted'][key]['ece']:.4f} cross-fitted)"
        if key == "entities":
            line += (
                f"; mean score {_num(before['mean_confidence'])} -> {_num(after['mean_confidence'])}, "
                f"precision {_num(before['accuracy'])}"
            )
        lines.append(line)
    for name, reason in (report.get("refused") or {}).items():
        lines.append(f"{name}: no map fitted ({reason})")
    if chosen.get("refused_in_fold"):
        lines.append(f"no cross-fitted estimate: a fold's map was refused ({chosen['refused_in_fold']})")
    return lines


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


__all__ = ["METHODS", "calibrate", "calibrate_saved", "cross_fit", "fit", "measure", "summary_lines"]
