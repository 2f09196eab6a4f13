"""The encoder's internals. Modules outside `layers/` import from here.

    pieces.py         spaCy tokens -> word pieces -> windows -> padded batches (numpy)
    windows.py        a doc's pieces -> windows, with or without sentence context (numpy)
    piece_encoder.py  EncoderInputs, PieceEncoder: transformer over windows, pooled per token (torch)
    hf_shim.py        HFEncoderShim (state and bytes), loading, position limits
    hf_encoder.py     HFEncoder(settings) -> Model: the thinc layer and its callbacks
    int8.py           int8 linear layers for CPU inference
    heads.py          growing a trained head: more outputs, every trained weight kept
"""
from .heads import grow_linear
from .hf_encoder import POOLINGS, EncoderSettings, HFEncoder
from .hf_shim import (
    HFEncoderShim,
    SlowTokenizerError,
    fit_window,
    load_encoder,
    load_fast_tokenizer,
    max_window,
)
from .int8 import quantization_of, quantize_linear_layers
from .piece_encoder import EncoderInputs, PieceEncoder
from .pieces import PieceLayout, SpecialPieces, layout_pieces, prepare_tokenizer, tokenize_docs

__all__ = [
    "POOLINGS",
    "EncoderInputs",
    "EncoderSettings",
    "HFEncoder",
    "HFEncoderShim",
    "PieceEncoder",
    "PieceLayout",
    "SlowTokenizerError",
    "SpecialPieces",
    "fit_window",
    "grow_linear",
    "layout_pieces",
    "load_encoder",
    "load_fast_tokenizer",
    "max_window",
    "prepare_tokenizer",
    "quantization_of",
    "quantize_linear_layers",
    "tokenize_docs",
]
