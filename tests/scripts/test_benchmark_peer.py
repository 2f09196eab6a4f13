"""scripts/bench/benchmark.py's second interpreter (--peer-python, --peer-systems,
SYSTEM@peer): which child runs where, that the child is started with that
interpreter and its stack reaches the tables. A fake interpreter (a shell
script that prints a result line) stands in for a real benchmark."""
import json
import stat
import sys

from bench import benchmark
from bench import tables as bench_tables
import pytest


def test_peer_systems_and_suffix_run_on_the_peer(tmp_path):
    specs = benchmark.child_specs(
        ["bare", "bare@peer", "spacy_trf_ner"], benchmark.SYSTEMS, ["spacy_trf_ner"],
        "/peer/python", kind="inference", unit="doc",
    )
    assert [(s["system"], s["build"], s["python"]) for s in specs] == [
        ("bare", "bare", sys.executable),
        ("bare@peer", "bare", "/peer/python"),
        ("spacy_trf_ner", "spacy_trf_ner", "/peer/python"),
    ]
    assert all(s["kind"] == "inference" and s["unit"] == "doc" for s in specs)
    # With no peer systems, a peer system runs here.
    (spec,) = benchmark.child_specs(["spacy_trf"], benchmark.TRAIN_SYSTEMS, [], "/p", kind="training")
    assert spec["python"] == sys.executable
    assert set(benchmark.PEER_SYSTEMS) == {"spacy_trf_ner", "hf_token_pipe", "spacy_trf"}


@pytest.mark.parametrize("system", ["bare@listener", "no_such_system", "tokclf@peer"])
def test_unknown_systems_and_stacks_are_refused(system):
    with pytest.raises(SystemExit):
        benchmark.child_specs([system], benchmark.SYSTEMS, [], "/p", kind="inference")


def test_default_peer_python_is_the_listener_venv_if_present(tmp_path):
    listener = tmp_path / ".venv-listener" / "bin" / "python"
    assert benchmark.default_peer_python(listener) == sys.executable
    listener.parent.mkdir(parents=True)
    listener.write_text("")
    assert benchmark.default_peer_python(listener) == str(listener)


def fake_python(path, transformers: str, words_per_s: float):
    """An 'interpreter' that prints one result line with its stack and the
    arguments it was given."""
    result = {
        "words_per_s": words_per_s, "first_words_per_s": words_per_s, "seconds": 1.0,
        "first_seconds": 1.0, "peak_rss_mb": 10.0,
        "stack": {"python": str(path), "transformers": transformers, "torch": "2.13.0+cpu"},
    }
    path.write_text(f"#!/bin/sh\necho '{benchmark.RESULT_PREFIX}{json.dumps(result)}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_children_run_on_their_interpreter_and_the_tables_show_the_stack(tmp_path):
    here = fake_python(tmp_path / "here", "5.24.0", 200.0)
    peer = fake_python(tmp_path / "peer", "4.53.2", 100.0)
    specs = [
        {"kind": "inference", "system": "tokclf_ents", "build": "tokclf_ents", "python": here,
         "unit": "sentence", "threads": 1},
        {"kind": "inference", "system": "spacy_trf_ner", "build": "spacy_trf_ner", "python": peer,
         "unit": "sentence", "threads": 1},
    ]
    raw = tmp_path / "raw.json"
    measurements = benchmark.interleave(specs, 2, raw, {"reps": 2})
    assert [m["stack"]["python"] for m in measurements] == [here, peer, here, peer]
    assert len(json.loads(raw.read_text())["measurements"]) == 4
    rows = {r["system"]: r for r in bench_tables.summarize(measurements, [])}
    assert rows["tokclf_ents"]["stack"] == "5.24.0, 2.13.0+cpu"
    assert rows["spacy_trf_ner"]["stack"] == "4.53.2, 2.13.0+cpu"
    meta = {"machine": "m", "threads": 1, "reps": 2, "date": "d"}
    md = bench_tables.table(list(rows.values()), [], meta)
    assert "| spacy_trf_ner | sentences | 4.53.2, 2.13.0+cpu | 100 |" in md
    (ratio,) = [
        r for r in bench_tables.comparisons(measurements)
        if r["what"] == "token_classifier (ents) speed / spacy-transformers + ner"
    ]
    assert ratio["words_per_s"] == pytest.approx(2.0)
    assert ratio["stacks"] == ["5.24.0, 2.13.0+cpu", "4.53.2, 2.13.0+cpu"]
    assert "| 2.00, 2.00 | 5.24.0, 2.13.0+cpu / 4.53.2, 2.13.0+cpu |" in (
        bench_tables.comparison_table([ratio])
    )


def test_a_failing_interpreter_is_a_failed_measurement(tmp_path):
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho 'No module named spacy_transformers' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    result = benchmark.run_child({"system": "spacy_trf", "python": str(broken), "threads": 1})
    assert result["error"].startswith("exit code 1") and "spacy_transformers" in result["error"]
