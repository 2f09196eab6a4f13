"""`tokclf-annotate` at its edges (issue 26): an output that is the input,
rows that cannot be written as they are, .json arrays, byte order marks,
repeated ids, the counts, the vocab over a long run, and what a failed or
repeated run leaves behind. The killed-and-resumed runs are in
test_annotate_resume.py."""
import importlib.util
import json
import re
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

import spacy_tokclf.annotate.local as annotate_module
from spacy_tokclf.annotate import annotate_local
from spacy_tokclf.annotate.input import read_rows
from spacy_tokclf.annotate.output import output_spec, read_output
from spacy_tokclf.errors import ScaleErrors, error

from .util import make_examples, make_nlp, train

TEXTS = ["Angela Merkel visited New York City.", "I like London and Paris.", "Apple is in Cupertino."]
QUIET = {"progress": False, "log": lambda line: None, "threads": 1}
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
PARQUET = pytest.param(
    ".parquet", marks=pytest.mark.skipif(not HAS_PYARROW, reason="Parquet needs pyarrow (the ray extra)")
)


@pytest.fixture(scope="module")
def model_dir(encoders, tmp_path_factory) -> Path:
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), n_iter=10)
    path = tmp_path_factory.mktemp("edges") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def nlp(model_dir):
    return spacy.load(model_dir)


def write_jsonl(path: Path, rows) -> Path:
    # ensure_ascii: a lone surrogate is written as JSON allows it, "\\ud800"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")
    return path


def rows_of(n: int, prefix: str = "d"):
    return [{"id": f"{prefix}{i}", "text": TEXTS[i % 3]} for i in range(n)]


def cli(*args: str):
    from spacy.cli import app

    from spacy_tokclf import cli  # noqa: F401  (registers the command)

    return CliRunner().invoke(
        app, ["tokclf-annotate", *map(str, args), "--cpus-per-worker", "1", "--no-progress"]
    )


def flat(result) -> str:
    """The command's output with its line breaks (wasabi wraps) as spaces."""
    return " ".join(result.output.split())


# Finding 2: an output that is (or holds, or lies in) the input is refused.


def test_output_that_is_the_input_is_refused_and_the_input_kept(model_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "in.jsonl", rows_of(5))
    before = corpus.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(corpus)
    for output in (corpus, tmp_path / "link.jsonl", tmp_path / "sub" / ".." / "in.jsonl"):
        result = cli(model_dir, corpus, output)
        assert result.exit_code != 0, result.output
        assert "is the input" in flat(result)
        assert corpus.read_bytes() == before
    assert not list(tmp_path.glob(".*partial"))


def test_directory_output_holding_the_input_and_output_inside_the_input_are_refused(model_dir, tmp_path):
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    corpus = write_jsonl(corpus_dir / "in.jsonl", rows_of(5))
    before = corpus.read_bytes()
    result = cli(model_dir, corpus, corpus_dir, "--format", "jsonl")  # would replace corpus/
    assert result.exit_code != 0 and "is the input" in flat(result), result.output
    result = cli(model_dir, corpus_dir, tmp_path, "--format", "jsonl")  # holds the input dir
    assert result.exit_code != 0 and "is the input" in flat(result), result.output
    result = cli(model_dir, corpus_dir, corpus_dir / "out.jsonl")  # read back by the next run
    assert result.exit_code != 0 and "inside the input directory" in flat(result), result.output
    assert sorted(p.name for p in corpus_dir.iterdir()) == ["in.jsonl"]
    assert corpus.read_bytes() == before


# Finding 4: one bad row is one error row.


@pytest.mark.parametrize("suffix", [".jsonl", PARQUET, ".spacy"])
def test_lone_surrogate_id_is_an_error_row_and_later_rows_are_written(nlp, tmp_path, suffix):
    rows = rows_of(7)
    rows[3]["id"] = "\ud800"
    corpus = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / f"out{suffix}"
    counts = annotate_local(nlp, corpus, out, batch_size=2, **QUIET)
    if suffix == ".spacy":
        docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
        written = [{"id": d.user_data["id"], "error": d.user_data["error"]} for d in docs]
    else:
        written = read_output(out)
    assert [r["id"] for r in written] == ["d0", "d1", "d2", "\\ud800", "d4", "d5", "d6"]
    assert written[3]["error"] == "id is not valid Unicode: it holds a lone surrogate"
    assert all(r["error"] is None for i, r in enumerate(written) if i != 3)
    assert (counts.read, counts.written.rows, counts.written.annotated, counts.written.failed) == (7, 7, 6, 1)


def test_a_row_the_writer_refuses_becomes_an_error_row(nlp, tmp_path):
    """Rows that reach the writer with a value it cannot write (here a lone
    surrogate in `file`, bypassing the reader's checks) are written as error
    rows; the rest of the part is written as it is."""
    from spacy_tokclf.annotate.output import Part

    corpus = write_jsonl(tmp_path / "in.jsonl", rows_of(2))
    spec = output_spec(nlp, [corpus], tmp_path)  # a directory root: rows have `file`
    good = {"id": "a", "file": "f.jsonl", "entities": [], "tags": [], "error": None}
    bad = {"id": "b", "file": "f\udc80.jsonl", "entities": [], "tags": [], "error": None}
    for fmt in ("jsonl", "parquet") if HAS_PYARROW else ("jsonl",):
        part = Part(fmt=fmt, spec=spec)
        part.add([good, bad, good])
        assert (part.tally.rows, part.tally.annotated, part.tally.failed) == (3, 2, 1)
        path = tmp_path / f"part.{fmt}"
        path.write_bytes(part.to_bytes())
        written = read_output(path)
        assert [r["id"] for r in written] == ["a", "b", "a"]
        assert written[1]["file"] == "f\\udc80.jsonl" and written[1]["error"].startswith("cannot be written")


# Finding 11: .json arrays, byte order marks, repeated ids, the counts.


def test_json_array_is_read_as_rows(nlp, tmp_path):
    corpus = tmp_path / "in.json"
    corpus.write_text(json.dumps(rows_of(3), indent=2), encoding="utf8")
    annotate_local(nlp, corpus, tmp_path / "out.jsonl", **QUIET)
    written = read_output(tmp_path / "out.jsonl")
    assert [(r["id"], r["error"]) for r in written] == [("d0", None), ("d1", None), ("d2", None)]
    # Without ids, an element's id is its index; a .json file of JSON lines still reads as lines.
    corpus.write_text(json.dumps([{"text": TEXTS[0]}, 5]), encoding="utf8")
    with open(corpus, "rb") as f:
        assert [(r.id, r.error) for r in read_rows(f, "json")] == [(0, None), (1, "not a JSON object: int")]
    write_jsonl(corpus, rows_of(2))
    with open(corpus, "rb") as f:
        assert [r.id for r in read_rows(f, "json")] == ["d0", "d1"]


@pytest.mark.parametrize("name", ["in.jsonl", "in.json", "in.txt"])
def test_byte_order_mark_is_not_text(nlp, tmp_path, name):
    corpus = tmp_path / name
    if name == "in.txt":
        body = "\n".join(TEXTS) + "\n"
    else:
        body = "".join(json.dumps(r) + "\n" for r in rows_of(3))
    corpus.write_bytes(b"\xef\xbb\xbf" + body.encode("utf8"))
    annotate_local(nlp, corpus, tmp_path / "out.jsonl", **QUIET)
    written = read_output(tmp_path / "out.jsonl")
    assert [r["error"] for r in written] == [None, None, None]
    assert written[0]["id"] in ("d0", 0)
    reference = nlp(TEXTS[0])
    assert [(e["start_char"], e["label"]) for e in written[0]["entities"]] == [
        (e.start_char, e.label_) for e in reference.ents
    ]


def test_repeated_ids_are_reported_with_examples(nlp, tmp_path):
    rows = rows_of(6) + [{"id": "d1", "text": "again"}, {"id": "d4", "text": "again"}, {"id": "d1", "text": "x"}]
    corpus = write_jsonl(tmp_path / "in.jsonl", rows)
    lines = []
    counts = annotate_local(nlp, corpus, tmp_path / "out.jsonl", progress=False, log=lines.append)
    assert counts.duplicates == 3 and counts.duplicate_examples == ['"d1"', '"d4"']
    expected = error(ScaleErrors.DUPLICATE_IDS, n=3, examples='"d1", "d4"')
    assert expected in lines
    assert len(read_output(tmp_path / "out.jsonl")) == 9  # every row still written
    # Line numbers as ids never repeat within a file; files of a directory are apart.
    corpus_dir = tmp_path / "dir"
    corpus_dir.mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        write_jsonl(corpus_dir / name, [{"text": t} for t in TEXTS])
    counts = annotate_local(nlp, corpus_dir, tmp_path / "dir.jsonl", **QUIET)
    assert counts.duplicates == 0


def test_summary_counts_rows_read_written_and_failed(model_dir, tmp_path):
    rows = rows_of(6) + [{"id": "empty", "text": ""}, {"id": "num", "text": 5}]
    corpus = write_jsonl(tmp_path / "in.jsonl", rows)
    result = cli(model_dir, corpus, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    output = flat(result)
    assert "8 rows read, 8 rows written: 6 annotated, 2 failed (written as error rows)" in output
    assert "error 'empty text': 1 rows" in output and "error 'text is not a string': 1 rows" in output
    assert "Wrote 8 rows to" in output


# Finding 7 (annotation): a memory zone around every batch.


def test_vocab_does_not_grow_with_new_words(model_dir, tmp_path):
    nlp = spacy.load(model_dir)

    def novel(n: int, tag: str):
        return [{"id": f"{tag}{i}", "text": f"Zq{tag}x{i}a Wv{tag}y{i}b lives in London."} for i in range(n)]

    annotate_local(nlp, write_jsonl(tmp_path / "a.jsonl", novel(8, "a")), tmp_path / "a.out.jsonl", batch_size=4, **QUIET)
    # (len(nlp.vocab) counts every lexeme ever added, even those a memory
    # zone removed: count the lexemes the vocab holds.)
    strings, lexemes = len(nlp.vocab.strings), sum(1 for _ in nlp.vocab)
    annotate_local(nlp, write_jsonl(tmp_path / "b.jsonl", novel(40, "b")), tmp_path / "b.out.jsonl", batch_size=4, **QUIET)
    assert (len(nlp.vocab.strings), sum(1 for _ in nlp.vocab)) == (strings, lexemes)
    assert "Zqbx1a" not in nlp.vocab.strings and "Zqbx1a" not in nlp.vocab
    written = read_output(tmp_path / "b.out.jsonl")
    assert len(written) == 40 and all(r["error"] is None for r in written)


# Finding 3: nothing under the output's name until every row is written.


def test_failed_run_leaves_no_output_and_a_rerun_replaces_its_partial(nlp, tmp_path, monkeypatch):
    corpus = write_jsonl(tmp_path / "in.jsonl", rows_of(12))
    out = tmp_path / "out.jsonl"
    real, calls = annotate_module.annotate_chunk, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(annotate_module, "annotate_chunk", failing)
    with pytest.raises(RuntimeError, match="boom"):
        annotate_local(nlp, corpus, out, batch_size=2, checkpoint_rows=4, **QUIET)
    assert not out.exists()
    partial = tmp_path / ".out.jsonl.partial"
    assert len(list((partial / "parts").glob("part-*"))) == 1
    monkeypatch.setattr(annotate_module, "annotate_chunk", real)
    # --resume with another batch size is refused by name; without --resume the partial is replaced.
    with pytest.raises(ValueError, match=re.escape("another --batch-size (2; this run: 3)")):
        annotate_local(nlp, corpus, out, batch_size=3, checkpoint_rows=4, resume=True, **QUIET)
    lines = []
    counts = annotate_local(nlp, corpus, out, batch_size=2, checkpoint_rows=4, progress=False, log=lines.append)
    assert error(ScaleErrors.PARTIAL_REPLACED, partial=partial) in lines
    assert (counts.resumed, counts.read, counts.written.rows) == (0, 12, 12)
    assert [r["id"] for r in read_output(out)] == [f"d{i}" for i in range(12)]
    assert not partial.exists()


def test_directory_output_rerun_replaces_it(nlp, tmp_path):
    corpus = write_jsonl(tmp_path / "in.jsonl", rows_of(10))
    out = tmp_path / "out"
    annotate_local(nlp, corpus, out, fmt="jsonl", batch_size=2, checkpoint_rows=4, **QUIET)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == [f"part-000000-000000{i}.jsonl" for i in range(3)]
    (out / "stale.jsonl").write_text("{}\n")
    annotate_local(nlp, corpus, out, fmt="jsonl", batch_size=2, checkpoint_rows=4, **QUIET)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert len(read_output(out)) == 10
