"""Corpus annotation, `python -m spacy tokclf-annotate`: input rows -> output
rows with entities and tags, one output row per input row, resumable.

    input.py   JSONL, Parquet and plain-text inputs -> rows and units of rows
    output.py  output rows and part files (JSONL, Parquet, DocBin); read_output
    resume.py  the partial output of a run: parts written, then moved into place
    local.py   the local engine: nlp.pipe in this process or in worker processes
    ray.py     the Ray engine: Ray Data and a pool of actors (the `ray` extra,
               imported only when it runs)

Both engines read, annotate and write through the same functions, so they
give the same rows.
"""
from .input import input_files, read_rows
from .local import Counts, annotate_chunk, annotate_local
from .output import output_format, output_spec, read_output
from .ray import annotate_ray

__all__ = [
    "Counts",
    "annotate_chunk",
    "annotate_local",
    "annotate_ray",
    "input_files",
    "output_format",
    "output_spec",
    "read_output",
    "read_rows",
]
