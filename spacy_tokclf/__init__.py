"""spacy_tokclf: transformer token classification for spaCy."""
from .architectures import build_hf_encoder, build_token_classifier
from .calibrate_pipeline import calibrate
from .extras import make_require_listener_extra
from .hf_export import to_huggingface
from .hf_import import from_huggingface
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
