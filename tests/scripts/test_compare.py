"""scripts/train/compare.py: a kept run is skipped (reused) only when it was made
with the same encoder, epochs, training data and step cap, and the table
shows only the runs made with the settings it is asked for, so a smoke run
never takes a full run's place; the committed runs make the committed table."""
import argparse
import json
import shutil
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from train import compare
from train.run_cache import RUN_SETTINGS, run_suffix

RESULTS = Path(__file__).resolve().parents[2] / "results"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with a two-sentence CoNLL corpus and a fake tokclf
    runner that records its calls."""
    vocab = spacy.blank("en").vocab
    words = [["Angela", "Merkel", "visited", "Paris", "."], ["Apple", "is", "big", "."]]
    ents = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O", "O", "O"]]
    docs = [Doc(vocab, words=w, ents=e, sent_starts=[True] + [False] * (len(w) - 1)) for w, e in zip(words, ents)]
    (tmp_path / "corpus").mkdir()
    for name in ("conll_train.spacy", "conll_dev.spacy"):
        DocBin(docs=docs).to_disk(tmp_path / "corpus" / name)
    monkeypatch.setattr(compare, "PROJECT", tmp_path)
    calls = []

    def runner(dataset, unit, encoder, train_docs, dev_docs, epochs, max_steps, workdir):
        calls.append({"encoder": encoder, "max_steps": max_steps, "train_docs": len(train_docs)})
        return [["O"] * len(doc) for doc in dev_docs], 1.0

    monkeypatch.setitem(compare.RUNNERS, "tokclf", runner)
    (tmp_path / "out").mkdir()
    return tmp_path / "out", calls


def args(**settings):
    """`compare.py run`'s arguments for tokclf on CoNLL sentences, run settings at their defaults unless given."""
    return argparse.Namespace(**{"dataset": "conll", "unit": "sentence", "systems": "tokclf", "out": "out",
                                 "force": False, **RUN_SETTINGS, **settings})


def kept(path: Path, ents_f: float, **settings) -> Path:
    """A kept tokclf CoNLL result as compare.py writes it, with run_settings."""
    result = {"system": "tokclf", "dataset": "conll", "unit": "sentence", "encoder": RUN_SETTINGS["encoder"],
              "train_sentences": 14041, "epochs": 3, "seconds_per_epoch": 300.0, "machine": "test machine",
              "ents_p": ents_f, "ents_r": ents_f, "ents_f": ents_f, "ents_per_type": {},
              "run_settings": {**RUN_SETTINGS, **settings}}
    path.write_text(json.dumps(result), encoding="utf8")
    return path


def test_a_smoke_run_under_the_full_run_name_is_not_skipped_over(project):
    out, calls = project
    kept(out / "conll_tokclf_sentence.json", 0.5, train_limit=200)
    with pytest.raises(SystemExit, match=r"train_limit 200 \(asked: 0\).*--force"):
        compare.run(args())
    assert calls == []


def test_a_run_with_another_encoder_is_not_reused(project):
    out, calls = project
    kept(out / "conll_tokclf_sentence.json", 0.5, encoder="other-encoder")
    with pytest.raises(SystemExit, match="encoder 'other-encoder'"):
        compare.run(args())
    # asked with that other encoder, the default-encoder run is not reused either
    (out / "conll_tokclf_sentence.json").unlink()
    kept(out / "conll_tokclf_sentence.json", 0.91)
    compare.run(args(encoder="other-encoder"))
    assert [c["encoder"] for c in calls] == ["other-encoder"]
    written = json.loads((out / "conll_tokclf_sentence_enc-other-encoder.json").read_text())
    assert written["run_settings"]["encoder"] == "other-encoder"
    assert json.loads((out / "conll_tokclf_sentence.json").read_text())["ents_f"] == 0.91


def test_a_smoke_run_is_written_apart_and_not_in_the_full_table(project):
    out, calls = project
    kept(out / "conll_tokclf_sentence.json", 0.91)
    compare.run(args(train_limit=1, max_steps=2))
    assert [(c["max_steps"], c["train_docs"]) for c in calls] == [(2, 1)]
    assert (out / "conll_tokclf_sentence_limit1_steps2.json").exists()
    assert (out / "table_limit1_steps2.md").read_text().startswith("Runs made with")
    compare.report(args())
    table = (out / "table.md").read_text()
    assert "| tokclf | sentences | 91.0 | 91.0 | **91.00** |" in table
    assert "**0.00**" not in table


def test_an_old_file_whose_training_data_was_cut_is_not_taken_for_a_full_run(project):
    out, calls = project
    result = {"system": "tokclf", "dataset": "conll", "unit": "sentence", "encoder": RUN_SETTINGS["encoder"],
              "train_sentences": 200, "epochs": 3, "seconds_per_epoch": 3.0, "machine": "test machine",
              "ents_p": 0.5, "ents_r": 0.5, "ents_f": 0.5, "ents_per_type": {}}  # no run_settings: old
    (out / "conll_tokclf_sentence.json").write_text(json.dumps(result))
    with pytest.raises(SystemExit, match=r"train_limit unknown \(asked: 0\)"):
        compare.run(args())
    compare.report(argparse.Namespace(out="out", **RUN_SETTINGS))
    assert "**50.00**" not in (out / "table.md").read_text()


def test_the_committed_runs_make_the_committed_table(tmp_path, monkeypatch):
    shutil.copytree(RESULTS / "compare", tmp_path / "compare")
    monkeypatch.setattr(compare, "PROJECT", tmp_path)
    compare.report(argparse.Namespace(out="compare", **RUN_SETTINGS))
    assert (tmp_path / "compare" / "table.md").read_text() == (RESULTS / "compare" / "table.md").read_text()
    assert run_suffix(RUN_SETTINGS) == ""
