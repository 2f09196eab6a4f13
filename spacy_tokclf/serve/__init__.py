"""Serving a pipeline over HTTP (needs the `serve` extra: starlette, uvicorn).

    python -m spacy_tokclf.serve training/ner/model-best --port 8080

    app.py        make_app(nlp_or_path, ...) -> the Starlette app: POST /annotate,
                  GET /health, its limits and statuses; main(), the command line
    annotator.py  what the server does with a request apart from HTTP: parse_text,
                  Annotator (the one loaded pipeline), SharedMemoryZone, annotation
                  (the answer's JSON)
    __main__.py   `python -m spacy_tokclf.serve`
"""
from .annotator import (
    Annotator,
    SharedMemoryZone,
    annotation,
    assigns_tags,
    parse_text,
    token_classifiers,
)
from .app import DEFAULT_MAX_CHARS, main, make_app

__all__ = [
    "DEFAULT_MAX_CHARS",
    "Annotator",
    "SharedMemoryZone",
    "annotation",
    "assigns_tags",
    "make_app",
    "main",
    "parse_text",
    "token_classifiers",
]
