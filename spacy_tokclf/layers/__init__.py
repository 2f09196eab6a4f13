from .pieces import PieceLayout, SpecialPieces, layout_pieces, tokenize_docs
from .hf_encoder import HFEncoderShim, PieceEncoder, load_encoder

__all__ = [
    "PieceLayout",
    "SpecialPieces",
    "layout_pieces",
    "tokenize_docs",
    "HFEncoderShim",
    "PieceEncoder",
    "load_encoder",
]
