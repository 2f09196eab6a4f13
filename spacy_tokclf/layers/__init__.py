"""The encoder's internals. Modules outside `layers/` import from here."""
from .hf_encoder import (
    EncoderSettings,
    HFEncoderShim,
    PieceEncoder,
    fit_window,
    load_encoder,
    max_window,
)
from .int8 import quantization_of, quantize_linear_layers
from .pieces import PieceLayout, SpecialPieces, layout_pieces, prepare_tokenizer, tokenize_docs

__all__ = [
    "EncoderSettings",
    "HFEncoderShim",
    "PieceEncoder",
    "PieceLayout",
    "SpecialPieces",
    "fit_window",
    "layout_pieces",
    "load_encoder",
    "max_window",
    "prepare_tokenizer",
    "quantization_of",
    "quantize_linear_layers",
    "tokenize_docs",
]
