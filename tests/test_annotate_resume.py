"""Fault injection for `tokclf-annotate` (issue 26, finding 3), local engine:
the command runs in a subprocess, made slow by SPACY_TOKCLF_TEST_COMMIT_DELAY
(seconds of sleep after each part it writes), and is SIGKILLed once part of
the output is written. Nothing is then under the output's name; `--resume`
finishes the run, and the output is the same bytes as an uninterrupted
run's, one row per input row, each id once. The Ray engine's are in
test_annotate_resume_ray.py."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
import spacy

from spacy_tokclf.annotate import annotate_local
from spacy_tokclf.annotate.output import read_output

from .util import make_examples, make_nlp, train

TEXTS = ["Angela Merkel visited New York City.", "I like London and Paris.", "Apple is in Cupertino."]
N_ROWS = 44  # batches of 4, parts of 8 rows: 6 parts
PARQUET = pytest.param(
    ".parquet",
    marks=pytest.mark.skipif(
        importlib.util.find_spec("pyarrow") is None, reason="Parquet needs pyarrow (the ray extra)"
    ),
)
SETTINGS = ["--batch-size", "4", "--checkpoint-rows", "8", "--cpus-per-worker", "1", "--no-progress"]


@pytest.fixture(scope="module")
def model_dir(encoders, tmp_path_factory) -> Path:
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), n_iter=10)
    path = tmp_path_factory.mktemp("resume") / "model"
    nlp.to_disk(path)
    return path


def make_corpus(path: Path, n: int = N_ROWS, surrogate: bool = True) -> Path:
    """n rows, with an empty text at 5 and (surrogate) a lone surrogate id
    at 17: bad rows, an error row each."""
    rows = [{"id": f"d{i}", "text": f"{TEXTS[i % 3]} Row {i}."} for i in range(n)]
    rows[5]["text"] = ""
    if surrogate:
        rows[17]["id"] = "\ud800"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")
    return path


def parts_of(output: Path) -> List[Path]:
    return sorted((output.parent / f".{output.name}.partial" / "parts").glob("part-*"))


def kill_mid_run(args: List[str], output: Path, env: dict, min_parts: int = 2, timeout: float = 300) -> int:
    """Start `python -m spacy tokclf-annotate ARGS` in its own process group,
    SIGKILL the group once `min_parts` parts are written; RETURNS the parts
    written when it was killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacy", "tokclf-annotate", *args],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while len(parts_of(output)) < min_parts:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it was killed:\n{proc.stdout.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no parts written in time")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return len(parts_of(output))


def docbin_docs(path: Path):
    from spacy.tokens import DocBin

    vocab = spacy.blank("en").vocab
    return [
        (d.text, [(e.start_char, e.end_char, e.label_) for e in d.ents], [t.tag_ for t in d],
         d.user_data["id"], d.user_data["error"])
        for d in DocBin().from_disk(path).get_docs(vocab)
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", PARQUET, ".spacy"])
def test_killed_run_leaves_no_output_and_resume_gives_the_uninterrupted_output(model_dir, tmp_path, suffix):
    corpus = make_corpus(tmp_path / "in.jsonl")
    nlp = spacy.load(model_dir)
    quiet = {"progress": False, "log": lambda line: None, "threads": 1}
    reference = tmp_path / f"reference{suffix}"
    annotate_local(nlp, corpus, reference, batch_size=4, checkpoint_rows=8, **quiet)

    output = tmp_path / f"out{suffix}"
    killed_at = kill_mid_run(
        [str(model_dir), str(corpus), str(output), *SETTINGS], output,
        {"SPACY_TOKCLF_TEST_COMMIT_DELAY": "0.5"},
    )  # fmt: skip
    assert 2 <= killed_at < 6
    assert not output.exists()  # nothing that looks finished

    lines: List[str] = []
    counts = annotate_local(
        nlp, corpus, output, batch_size=4, checkpoint_rows=8, resume=True,
        progress=False, log=lines.append, threads=1,
    )  # fmt: skip
    assert counts.resumed == 8 * killed_at
    assert counts.read == counts.written.rows == N_ROWS - counts.resumed
    assert output.read_bytes() == reference.read_bytes()
    assert not (tmp_path / f".out{suffix}.partial").exists()
    if suffix == ".spacy":
        ids = [doc[3] for doc in docbin_docs(output)]
        assert docbin_docs(output) == docbin_docs(reference)
    else:
        ids = [row["id"] for row in read_output(output)]
    assert ids == [f"d{i}" if i != 17 else "\\ud800" for i in range(N_ROWS)]


@pytest.mark.slow
def test_killed_multiprocess_run_resumed_by_the_command(model_dir, tmp_path):
    """The same with --workers 2, resumed by the command itself: the output
    is the uninterrupted run's, and the command says what it kept."""
    corpus = make_corpus(tmp_path / "in.jsonl")
    reference = tmp_path / "reference.jsonl"
    annotate_local(
        spacy.load(model_dir), corpus, reference, batch_size=4, checkpoint_rows=8, threads=1,
        progress=False, log=lambda line: None,
    )  # fmt: skip
    output = tmp_path / "out.jsonl"
    args = [str(model_dir), str(corpus), str(output), *SETTINGS, "--workers", "2"]
    killed_at = kill_mid_run(args, output, {"SPACY_TOKCLF_TEST_COMMIT_DELAY": "0.5"})
    assert not output.exists()
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "tokclf-annotate", *args, "--resume"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = " ".join(result.stdout.split())
    assert f"keeping the {killed_at} finished parts" in text
    assert f"{8 * killed_at} rows kept from the earlier run" in text
    assert f"Wrote {N_ROWS} rows to" in text
    assert output.read_bytes() == reference.read_bytes()
