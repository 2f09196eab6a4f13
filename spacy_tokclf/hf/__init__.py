"""Hugging Face import and export (`python -m spacy tokclf-import`, `tokclf-export`).

    importing.py  from_huggingface: a token-classification checkpoint -> a
                  pipeline with a token_classifier that predicts as it does
    exporting.py  to_huggingface: a trained token_classifier -> a checkpoint
                  that transformers.pipeline("token-classification") loads
"""
from .exporting import to_huggingface
from .importing import from_huggingface

__all__ = ["from_huggingface", "to_huggingface"]
