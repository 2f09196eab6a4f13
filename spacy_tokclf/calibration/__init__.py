"""Calibrating a trained token_classifier: fitting, on gold dev examples, the
temperature per task and the map of entity scores that the component applies
at prediction time (`python -m spacy tokclf-calibrate`).

    data.py      a pipeline's uncalibrated predictions on gold examples (collect),
                 examples_from_docs
    fit.py       fitting a temperature, an isotonic or a Platt map (MapRefused:
                 the data cannot give one)
    pipeline.py  calibrate(nlp, examples): the method chosen by cross-fitting, the
                 report; calibrate_saved (the command), summary_lines

Applying a calibration is part of the component's core, spacy_tokclf/calibrated.py
(decoding.py and saved.py use it, and this subpackage imports the core); its
public names are exported here too.
"""
from ..calibrated import (
    ENTITY_MAPS,
    check_calibration,
    map_entity_scores,
    scale_log_probs,
    temperature_of,
)
from .data import collect, examples_from_docs, find_component
from .fit import MapRefused, fit_entity_map, fit_isotonic, fit_platt, fit_temperature
from .pipeline import METHODS, calibrate, calibrate_saved, summary_lines

__all__ = [
    "ENTITY_MAPS",
    "METHODS",
    "MapRefused",
    "calibrate",
    "calibrate_saved",
    "check_calibration",
    "collect",
    "examples_from_docs",
    "find_component",
    "fit_entity_map",
    "fit_isotonic",
    "fit_platt",
    "fit_temperature",
    "map_entity_scores",
    "scale_log_probs",
    "summary_lines",
    "temperature_of",
]
