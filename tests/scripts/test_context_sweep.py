"""scripts/train/context_sweep.py: the config a run trains, and the file name it
is kept under, follow its settings (a run with --averages must neither
train without them nor be skipped as the run without them; a smoke run or
another encoder is neither reused for nor reported as a full run)."""
import argparse
import json
import shutil
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc
from train import context_sweep
from train.run_cache import RUN_SETTINGS


@pytest.mark.parametrize("averages", [False, True])
def test_context_config_sets_context_rate_scheme_and_averages(averages):
    config = context_sweep.context_config("conll", 16, 2e-4, 3, "BIO", averages)
    assert config["components"]["token_classifier"]["model"]["tok2vec"]["context"] == 16
    assert config["components"]["token_classifier"]["scheme"] == "BIO"
    assert config["training"]["optimizer"]["learn_rate"]["initial_rate"] == 2e-4
    assert config["training"]["optimizer"]["use_averages"] is averages
    assert config["system"]["seed"] == 3


def test_run_name_tells_averaged_runs_apart():
    args = argparse.Namespace(dataset="conll", unit="chunk", lr=2e-4, scheme="BILUO", averages=False, singles=0.0)
    plain = context_sweep.run_name(args, 16, 0, "ents")
    args.averages = True
    averaged = context_sweep.run_name(args, 16, 0, "ents")
    assert plain == "conll_chunk_ctx16_biluo_lr0.0002_seed0"
    assert averaged == "conll_chunk_ctx16_biluo_lr0.0002_avg_seed0"
    # --singles on chunks is in the name too; 0 (today's chunks) leaves it out
    args.singles = 0.25
    assert context_sweep.run_name(args, 16, 0, "ents") == "conll_chunk_single0.25_ctx16_biluo_lr0.0002_avg_seed0"
    # the names of the runs already kept (no averages) do not change
    args = argparse.Namespace(dataset="ewt", unit="doc", lr=1e-4, scheme="BILUO", averages=False, singles=0.0)
    assert context_sweep.run_name(args, 0, 1, "tags") == "ewt_ctx0_lr0.0001_seed1"


# Kept runs: reused, and reported, only when made with the same run settings.

RESULTS = Path(__file__).resolve().parents[2] / "results"


@pytest.fixture
def fake_sweep(tmp_path, monkeypatch):
    """context_sweep.run on two tiny docs with fake training and scoring;
    results go to tmp_path. Returns the training calls."""
    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=["Angela", "Merkel", "visited", "Paris", "."], ents=["B-PER", "I-PER", "O", "B-LOC", "O"],
                sent_starts=[True, False, False, False, False])]
    monkeypatch.setattr(context_sweep, "OUT", tmp_path)
    monkeypatch.setattr(context_sweep, "read_docs", lambda path, unit="doc", limit=0, **kw: docs)
    calls = []

    def train_spacy(config, workdir, train_docs, dev_docs, overrides):
        calls.append(overrides["training.max_steps"])
        return None, 1.0

    monkeypatch.setattr(context_sweep, "train_spacy", train_spacy)
    view = {"ents_f": 0.5, "words_per_second": 100.0}
    monkeypatch.setattr(context_sweep, "evaluate", lambda nlp, dev, task: {v: view for v in VIEWS})
    return calls


VIEWS = ("docs_gold_sentences", "docs_no_sentences", "sentences")


def sweep_args(**settings):
    """`context_sweep.py run`'s arguments for context 16, run settings at their defaults unless given."""
    return argparse.Namespace(**{"dataset": "conll", "unit": "doc", "contexts": "16", "seeds": "0", "lr": 1e-4,
                                 "scheme": "BILUO", "averages": False, "singles": 0.0, "force": False, **RUN_SETTINGS,
                                 **settings})


def kept(path: Path, f: float, **settings) -> None:
    view = {"ents_f": f, "words_per_second": 100.0}
    result = {"dataset": "conll", "unit": "doc", "context": 16, "scheme": "BILUO", "learn_rate": 1e-4,
              "averages": False, "seed": 0, "epochs": 3, "max_steps": 0, "train_docs": 946, "train_seconds": 900.0,
              "machine": "test machine", "dev": {v: view for v in VIEWS}, "run_settings": {**RUN_SETTINGS, **settings}}
    path.write_text(json.dumps(result), encoding="utf8")


def test_a_smoke_run_under_the_full_run_name_is_not_skipped_over(tmp_path, fake_sweep):
    kept(tmp_path / "conll_ctx16_biluo_lr0.0001_seed0.json", 0.5, train_limit=200)
    with pytest.raises(SystemExit, match=r"train_limit 200 \(asked: 0\).*--force"):
        context_sweep.run(sweep_args())
    assert fake_sweep == []


def test_another_encoder_or_a_smoke_run_is_run_apart_and_left_out_of_the_full_table(tmp_path, fake_sweep):
    kept(tmp_path / "conll_ctx16_biluo_lr0.0001_seed0.json", 0.91)
    context_sweep.run(sweep_args(encoder="other-encoder"))
    context_sweep.run(sweep_args(train_limit=1, max_steps=2))
    assert len(fake_sweep) == 2 and fake_sweep[1] <= 2
    assert {p.name for p in tmp_path.glob("*.json")} == {
        "conll_ctx16_biluo_lr0.0001_seed0.json",
        "conll_ctx16_biluo_lr0.0001_seed0_enc-other-encoder.json",
        "conll_ctx16_biluo_lr0.0001_seed0_limit1_steps2.json",
    }
    context_sweep.report(argparse.Namespace(**RUN_SETTINGS))
    rows = [line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| doc ")]
    assert len(rows) == 1 and "| 91.00 | 91.00 | 91.00 |" in rows[0]


def test_the_committed_runs_make_the_committed_table(tmp_path, monkeypatch):
    shutil.copytree(RESULTS / "context", tmp_path / "context")
    monkeypatch.setattr(context_sweep, "OUT", tmp_path / "context")
    context_sweep.report(argparse.Namespace(**RUN_SETTINGS))
    assert (tmp_path / "context" / "table.md").read_text() == (RESULTS / "context" / "table.md").read_text()
