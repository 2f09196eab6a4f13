"""Fault injection for `tokclf-annotate --engine ray` (issue 26, findings 3
and 10): on a local 2-CPU Ray cluster, started here with
SPACY_TOKCLF_TEST_COMMIT_DELAY (its actors sleep after each part they write)
and SPACY_TOKCLF_TEST_EXIT_ONCE (an actor ends its process after writing a
part, once, when the marker file is missing), a command run as a separate
driver is SIGKILLed once part of the output is written, then resumed; an
actor that dies after writing a part is retried, and its rows are counted
and written once; a rerun replaces a directory output."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import spacy

from spacy_tokclf.annotate import annotate_local
from spacy_tokclf.annotate.output import read_output

from .test_annotate_resume import N_ROWS, make_corpus, parts_of
from .util import make_examples, make_nlp, train

pytest.importorskip("ray", reason='needs Ray Data, the ray extra: pip install "spacy-tokclf[ray]"')

DELAY, EXIT_ONCE = "SPACY_TOKCLF_TEST_COMMIT_DELAY", "SPACY_TOKCLF_TEST_EXIT_ONCE"
RAY = {"workers": 2, "cpus_per_worker": 1, "progress": False}
SMALL = {"batch_size": 4, "checkpoint_rows": 8}
IDS = [f"d{i}" if i != 17 else "\\ud800" for i in range(N_ROWS)]


@pytest.fixture(scope="module")
def model_dir(encoders, tmp_path_factory) -> Path:
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), n_iter=10)
    path = tmp_path_factory.mktemp("resume_ray") / "model"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray cluster whose processes have the fault injection
    variables (this process does not: its own writes are never slowed and
    it never exits); the exit marker exists, so nothing exits until a test
    removes it."""
    import ray

    marker = tmp_path_factory.mktemp("faults") / "exit-once"
    marker.write_text("")
    saved = {key: os.environ.get(key) for key in (DELAY, EXIT_ONCE)}
    os.environ.update({DELAY: "0.5", EXIT_ONCE: str(marker)})
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield {"address": ray.get_runtime_context().gcs_address, "marker": marker}
    ray.shutdown()


def local_reference(model_dir: Path, corpus: Path, output: Path, **kwargs) -> Path:
    annotate_local(
        spacy.load(model_dir), corpus, output, threads=1, progress=False, log=lambda line: None,
        **SMALL, **kwargs,
    )  # fmt: skip
    return output


def files_of(directory: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def kill_driver_mid_run(args: List[str], output: Path, address: str, timeout: float = 600) -> int:
    """Run the command as a driver of the cluster, with its own writes
    slowed; SIGKILL it once 2 parts are written. RETURNS the parts then."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": address, DELAY: "0.5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacy", "tokclf-annotate", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while len(parts_of(output)) < 2:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it was killed:\n{proc.stdout.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no parts written in time")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return len(parts_of(output))


RAY_ARGS = ["--engine", "ray", "--workers", "2", "--cpus-per-worker", "1", "--batch-size", "4",
            "--checkpoint-rows", "8", "--no-progress"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("output_name,fmt", [("out.jsonl", None), ("out_dir", "parquet")])
def test_killed_ray_run_resumes_to_the_uninterrupted_output(cluster, model_dir, tmp_path, output_name, fmt):
    """A file output (parts written by the driver) and a directory output
    (parts written by the actors): killed, resumed, the same bytes as the
    local engine's uninterrupted run."""
    from spacy_tokclf.annotate import annotate_ray

    corpus = make_corpus(tmp_path / "in.jsonl")
    output = tmp_path / output_name
    reference = local_reference(model_dir, corpus, tmp_path / f"reference_{output_name}", fmt=fmt)
    args = [str(model_dir), str(corpus), str(output), *RAY_ARGS] + (["--format", fmt] if fmt else [])
    killed_at = kill_driver_mid_run(args, output, cluster["address"])
    assert 2 <= killed_at < 6
    assert not output.exists()
    counts = annotate_ray(
        str(model_dir), corpus, output, fmt=fmt, resume=True, log=lambda line: None, **RAY, **SMALL
    )
    # Every part seen before the kill is kept (each holds at least one row;
    # an actor's part can hold fewer than --checkpoint-rows rows when Ray cut
    # its block short), and parts finished after the kill are kept too.
    assert counts.resumed >= killed_at
    assert counts.resumed + counts.read == N_ROWS and counts.read == counts.written.rows
    if fmt is None:
        assert output.read_bytes() == reference.read_bytes()
    else:
        assert files_of(output) == files_of(reference)
    assert [row["id"] for row in read_output(output)] == IDS


@pytest.mark.slow
def test_ray_actor_dying_after_writing_is_retried_and_counted_once(cluster, model_dir, tmp_path):
    from spacy_tokclf.annotate import annotate_ray

    corpus = make_corpus(tmp_path / "in.jsonl")
    output = tmp_path / "out"
    cluster["marker"].unlink()  # armed: the first actor to write a part ends its process
    counts = annotate_ray(
        str(model_dir), corpus, output, fmt="jsonl", log=lambda line: None, **RAY, **SMALL
    )
    assert cluster["marker"].exists()  # an actor did die after writing a part
    assert counts.read == counts.written.rows == N_ROWS
    assert counts.written.failed == 2
    assert [row["id"] for row in read_output(output)] == IDS
    reference = local_reference(model_dir, corpus, tmp_path / "reference", fmt="jsonl")
    assert files_of(output) == files_of(reference)


@pytest.mark.slow
def test_ray_run_with_lost_task_replies_counts_and_writes_each_row_once(model_dir, tmp_path):
    """Ray's own fault injection (RAY_testing_rpc_failure): the replies to
    the first 3 task pushes of every process of a fresh local cluster are
    lost, so Ray runs those tasks again. The command still ends with exact
    counts and the local engine's output."""
    import json

    corpus = make_corpus(tmp_path / "in.jsonl", surrogate=False)
    reference = tmp_path / "reference.jsonl"
    annotate_local(
        spacy.load(model_dir), corpus, reference, batch_size=4, threads=1, progress=False,
        log=lambda line: None,
    )  # fmt: skip
    chaos = {"num_failures": 3, "req_failure_prob": 0, "resp_failure_prob": 100, "in_flight_failure_prob": 0}
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", DELAY, EXIT_ONCE)}
    env.update({
        "HF_HUB_OFFLINE": "1",
        "RAY_testing_rpc_failure": json.dumps({"CoreWorkerService.grpc_client.PushTask": chaos}),
        "RAY_testing_rpc_failure_avoid_intra_node_failures": "0",
    })  # fmt: skip
    output = tmp_path / "out.jsonl"
    args = ["--engine", "ray", "--workers", "2", "--cpus-per-worker", "1", "--batch-size", "4", "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "tokclf-annotate", str(model_dir), str(corpus), str(output), *args],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = " ".join(result.stdout.split())
    assert f"{N_ROWS} rows read, {N_ROWS} rows written: {N_ROWS - 1} annotated, 1 failed" in text
    assert output.read_bytes() == reference.read_bytes()


@pytest.mark.slow
def test_ray_rerun_replaces_a_directory_output(cluster, model_dir, tmp_path):
    from spacy_tokclf.annotate import annotate_ray

    corpus = make_corpus(tmp_path / "in.jsonl", surrogate=False)
    output = tmp_path / "out"
    for _ in range(2):
        annotate_ray(str(model_dir), corpus, output, fmt="parquet", batch_size=4, log=lambda line: None, **RAY)
        assert [row["id"] for row in read_output(output)] == [f"d{i}" for i in range(N_ROWS)]
