"""Corpus annotation (`tokclf-annotate`): rows in, one row out per row in,
bad rows reported and never fatal, and the same output from every engine
(local with 1 and 2 processes, Ray Data with 2 actors on a local 2-CPU
cluster). Every run uses one torch thread per worker: the number of threads
changes the last digits of a transformer's scores (torch splits its sums by
thread), so the same output needs the same threads, as the defaults give on
one machine."""
import importlib.util
import json
import re
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_tokclf.annotate import annotate_chunk, annotate_local
from spacy_tokclf.annotate.input import input_files, read_rows
from spacy_tokclf.annotate.output import output_format, output_spec, read_output
from spacy_tokclf.errors import ScaleErrors, error

from .util import make_examples, make_nlp, train

RAY_EXTRA = 'pip install "spacy-tokclf[ray]"'
HAS_RAY = importlib.util.find_spec("ray") is not None
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason=f"needs Ray Data, the ray extra: {RAY_EXTRA}")
needs_pyarrow = pytest.mark.skipif(
    not HAS_PYARROW, reason=f"Parquet needs pyarrow, in the ray extra: {RAY_EXTRA}"
)

TEXTS = [
    "Angela Merkel visited New York City in 2019.",
    "I like London and Paris.",
    "Apple Inc. is based in Cupertino.",
]
# One of each kind of bad row, between good ones; the blank line is not a row.
BAD_LINES = [
    json.dumps({"id": "no-text"}),
    json.dumps({"id": "null-text", "text": None}),
    json.dumps({"id": "int-text", "text": 5}),
    json.dumps({"id": "empty", "text": ""}),
    "{not json",
    "[1, 2]",
    json.dumps({"id": "surrogate", "text": "bad \ud800 text"}),
    "",
    json.dumps({"text": "No id here, but Paris."}),
    json.dumps({"id": 7, "text": "A number as the id, in London."}),
]
N_ROWS = 20 + len(BAD_LINES) - 1
ERRORS = {
    "no-text": "no text",
    "null-text": "no text",
    "int-text": "text is not a string",
    "empty": "empty text",
    "surrogate": "text is not valid Unicode",
}


@pytest.fixture(scope="module")
def model_dir(encoders, tmp_path_factory) -> Path:
    """A joint (entities and tags) pipeline, trained a little, on disk."""
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), n_iter=10)
    path = tmp_path_factory.mktemp("annotate") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A JSONL file of 20 good rows with the bad rows spread among them."""
    lines = [json.dumps({"id": f"d{i}", "text": TEXTS[i % 3] * (1 + i % 3)}) for i in range(20)]
    for i, line in enumerate(BAD_LINES):
        lines.insert(2 * i + 1, line)
    path = tmp_path_factory.mktemp("corpus") / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory) -> Path:
    """Two Parquet files (several row groups) with null and empty texts."""
    if not HAS_PYARROW:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("pq") / "in"
    root.mkdir()
    texts = TEXTS + [None, ""]
    pq.write_table(
        pa.table({"id": list(range(11)), "text": (texts * 3)[:11]}),
        root / "a.parquet",
        row_group_size=4,
    )
    pq.write_table(pa.table({"id": list(range(100, 106)), "text": texts + [TEXTS[0]]}), root / "b.parquet")
    (root / "_SUCCESS").write_text("")  # skipped, as Ray skips it
    return root


@pytest.fixture(scope="module")
def local_outputs(model_dir, corpus, parquet_dir, tmp_path_factory) -> dict:
    nlp = spacy.load(model_dir)
    out = tmp_path_factory.mktemp("local")
    paths = {}
    runs = [("jsonl1", corpus, "one.jsonl", 1), ("jsonl2", corpus, "two.jsonl", 2)]
    if HAS_PYARROW:
        runs.append(("parquet", parquet_dir, "pq.parquet", 1))
    for name, src, dest, n in runs:
        paths[name] = out / dest
        annotate_local(nlp, src, paths[name], n_process=n, batch_size=4, threads=1, progress=False)
    return paths


def test_one_row_out_per_row_in_and_bad_rows_get_an_error(local_outputs):
    rows = read_output(local_outputs["jsonl1"])
    assert len(rows) == N_ROWS
    by_id = {row["id"]: row for row in rows}
    for row_id, reason in ERRORS.items():
        assert by_id[row_id]["error"].startswith(reason)
        assert by_id[row_id]["entities"] is None and by_id[row_id]["tags"] is None
    # Rows without an id get their 0-based line number: 9 "{not json", 11
    # "[1, 2]", and 17, after the blank line 15 (no row, but a line).
    assert by_id[9]["error"].startswith("invalid JSON")
    assert by_id[11]["error"].startswith("not a JSON object")
    assert by_id[17]["error"] is None and by_id[17]["entities"] is not None
    assert by_id[7]["error"] is None  # an id that is a number stays one
    good = [row for row in rows if row["error"] is None]
    assert len(good) == N_ROWS - 7
    for row in good:
        assert set(row) == {"id", "entities", "tags", "error"}
        assert row["tags"] and all(set(t) == {"start_char", "end_char", "tag"} for t in row["tags"])
        for ent in row["entities"]:
            assert set(ent) == {"start_char", "end_char", "label", "score"}
            assert 0.0 <= ent["score"] <= 1.0 and ent["start_char"] < ent["end_char"]
    assert sum(len(row["entities"]) for row in good) > 0
    # Input order is kept.
    assert [row["id"] for row in rows[:3]] == ["d0", "no-text", "d1"]


def test_output_matches_the_pipeline_on_each_text(model_dir, local_outputs, corpus):
    nlp = spacy.load(model_dir)
    rows = {row["id"]: row for row in read_output(local_outputs["jsonl1"])}
    for i in (0, 4, 11):
        doc = nlp(TEXTS[i % 3] * (1 + i % 3))
        ents = rows[f"d{i}"]["entities"]
        assert [(e["start_char"], e["end_char"], e["label"]) for e in ents] == [
            (e.start_char, e.end_char, e.label_) for e in doc.ents
        ]
        assert [t["tag"] for t in rows[f"d{i}"]["tags"]] == [t.tag_ for t in doc]


def test_two_processes_write_the_same_bytes(local_outputs):
    assert local_outputs["jsonl1"].read_bytes() == local_outputs["jsonl2"].read_bytes()


def test_empty_docs_in_a_batch_change_no_score(model_dir, corpus):
    """Rows with an error take part in their batch as empty docs: they must
    not change the other rows' results, or the engines' outputs would depend
    on where the bad rows fall."""
    nlp = spacy.load(model_dir)
    with open(corpus, "rb") as f:
        all_rows = list(read_rows(f, "jsonl"))
    rows = [r for r in all_rows if r.error is None][:6]
    bad = [r for r in all_rows if r.error is not None]
    spec = output_spec(nlp, [corpus], corpus)
    alone, _ = annotate_chunk(nlp, rows, spec, None, batch_size=64)
    mixed, _ = annotate_chunk(nlp, bad[:3] + rows + bad[3:], spec, None, batch_size=64)
    assert [r for r in mixed if r["error"] is None] == alone


@needs_pyarrow
def test_parquet_directory_input(local_outputs, parquet_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert [p.name for p in input_files(parquet_dir)] == ["a.parquet", "b.parquet"]
    rows = read_output(local_outputs["parquet"])
    assert len(rows) == 11 + 6
    assert [(r["file"], r["id"]) for r in rows[:2]] == [("a.parquet", 0), ("a.parquet", 1)]
    assert rows[3]["error"].startswith("no text") and rows[4]["error"] == "empty text"
    assert pq.read_schema(local_outputs["parquet"]).field("id").type == pa.int64()


def test_text_input(model_dir, tmp_path):
    # Plain text: one document a line, the id is the line number, empty lines are bad rows.
    # A text over nlp.max_length is a bad row too (spaCy would stop the batch).
    text = tmp_path / "in.txt"
    text.write_text(f"{TEXTS[0]}\n\n{TEXTS[1]}\r\n{'word ' * 30}\n", encoding="utf8")
    nlp = spacy.load(model_dir)
    nlp.max_length = 100
    counts = annotate_local(nlp, text, tmp_path / "out.jsonl", progress=False, log=lambda s: None)
    rows = read_output(tmp_path / "out.jsonl")
    assert [(r["id"], r["error"]) for r in rows[:3]] == [(0, None), (1, "empty text"), (2, None)]
    assert rows[3]["error"].startswith("text too long: 150 characters")
    assert (counts.read, counts.written.rows, counts.written.annotated) == (4, 4, 2)
    assert counts.written.errors == {"empty text": 1, "text too long": 1}


def test_cli_local_docbin(model_dir, corpus, tmp_path):
    from spacy.cli import app

    from spacy_tokclf import cli  # noqa: F401  (registers the command)

    out = tmp_path / "out.spacy"
    result = CliRunner().invoke(
        app,
        ["tokclf-annotate", str(model_dir), str(corpus), str(out), "--batch-size", "8",
         "--cpus-per-worker", "1", "--no-progress"],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert f"{N_ROWS} rows read, {N_ROWS} rows written: {N_ROWS - 7} annotated, 7 failed" in result.output
    assert "error 'invalid JSON': 1 rows" in result.output
    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    assert len(docs) == N_ROWS
    assert docs[0].user_data["id"] == "d0" and docs[0].ents
    assert docs[1].user_data["error"].startswith("no text") and len(docs[1]) == 0


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@needs_ray
@needs_pyarrow
def test_ray_engine_gives_the_local_output(ray_cluster, model_dir, corpus, parquet_dir, local_outputs, tmp_path):
    """`tokclf-annotate --engine ray --workers 2` on a local 2-CPU cluster:
    the same JSONL bytes as the local engine, and the same Parquet rows
    (written by the workers to a directory)."""
    from spacy.cli import app

    from spacy_tokclf import cli  # noqa: F401

    runner = CliRunner()
    common = ["--engine", "ray", "--workers", "2", "--cpus-per-worker", "1", "--batch-size", "4",
              "--no-progress"]  # fmt: skip
    result = runner.invoke(
        app, ["tokclf-annotate", str(model_dir), str(corpus), str(tmp_path / "ray.jsonl"), *common]
    )
    assert result.exit_code == 0, result.output
    assert f"{N_ROWS} rows read, {N_ROWS} rows written: {N_ROWS - 7} annotated, 7 failed" in result.output
    assert (tmp_path / "ray.jsonl").read_bytes() == local_outputs["jsonl1"].read_bytes()
    result = runner.invoke(
        app,
        ["tokclf-annotate", str(model_dir), str(parquet_dir), str(tmp_path / "ray_pq"),
         "--format", "parquet", *common],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    parts = sorted((tmp_path / "ray_pq").glob("*.parquet"))
    assert len(parts) > 1  # written by the workers, several files
    ray_rows = read_output(tmp_path / "ray_pq")
    local_rows = read_output(local_outputs["parquet"])
    assert len(ray_rows) == len(local_rows) == 17
    key = lambda r: (r["file"], r["id"])  # noqa: E731
    assert sorted(ray_rows, key=key) == sorted(local_rows, key=key)
    assert sum(r["error"] is not None for r in ray_rows) == 6


def test_input_and_output_errors(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=re.escape(error(ScaleErrors.NO_INPUT, path=missing))):
        input_files(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=re.escape(error(ScaleErrors.EMPTY_INPUT_DIR, path=tmp_path / "empty"))):
        input_files(tmp_path / "empty")
    unknown = error(ScaleErrors.UNKNOWN_OUTPUT_FORMAT, fmt="csv", formats="jsonl, parquet, docbin")
    with pytest.raises(ValueError, match=re.escape(unknown)):
        output_format(tmp_path / "out.jsonl", "csv")
    with pytest.raises(ValueError, match=re.escape(error(ScaleErrors.OUTPUT_FORMAT_FROM_NAME, output=tmp_path / "out"))):
        output_format(tmp_path / "out", None)
