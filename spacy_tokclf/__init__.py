"""spacy_tokclf: transformer token classification for spaCy.

The component's core is at the top level: pipeline.py (the factory and the
TrainablePipe), labels.py, decoding.py (scores -> label ids and entity spans),
calibrated.py (a fitted calibration applied), annotation.py (-> Doc.ents,
token.tag_), loss.py, scoring.py, architectures.py, saved.py, errors.py.
Subpackages by role:

    layers/        the encoder's thinc and torch internals
    calibration/   fitting a calibration on gold dev examples
    annotate/      corpus annotation (local and Ray engines)
    distributed/   data-parallel training (torch.distributed, Ray Train)
    hf/            Hugging Face import and export
    serve/         the HTTP server (python -m spacy_tokclf.serve)

cli.py holds every spaCy CLI command (python -m spacy tokclf-...).
"""
from .architectures import build_hf_encoder, build_token_classifier
from .calibration import calibrate
from .extras import make_require_listener_extra
from .hf import from_huggingface, to_huggingface
from .optimizers import ScaledAdam, make_scaled_adam
from .pipeline import DEFAULT_CONFIG_STR, TokenClassifier, make_token_classifier
from .quantization import quantize_encoder
from .scoring import make_tokclf_scorer, score_token_classifier

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_CONFIG_STR",
    "TokenClassifier",
    "build_hf_encoder",
    "build_token_classifier",
    "calibrate",
    "ScaledAdam",
    "from_huggingface",
    "make_require_listener_extra",
    "make_scaled_adam",
    "make_token_classifier",
    "make_tokclf_scorer",
    "quantize_encoder",
    "score_token_classifier",
    "to_huggingface",
]
