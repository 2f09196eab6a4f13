"""Kept import path: README 0.1.0 documented
`from spacy_tokclf.calibrate_pipeline import examples_from_docs`. The module
moved to spacy_tokclf/calibration/ (issue 27); import from
`spacy_tokclf.calibration`. Importing this module warns (DeprecationWarning).
"""
import warnings

from .calibration import calibrate, calibrate_saved, examples_from_docs, summary_lines
from .errors import Warnings, error

warnings.warn(
    error(Warnings.MOVED_MODULE, old="spacy_tokclf.calibrate_pipeline", new="spacy_tokclf.calibration"),
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["calibrate", "calibrate_saved", "examples_from_docs", "summary_lines"]
