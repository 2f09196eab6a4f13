"""scripts/train/tune.py (and scripts/train/run_cache.py): a kept run stands for a
requested one only when it was made with the same encoder, epochs, training
data and step cap, so a smoke run is never reused for, nor averaged into,
the table of full runs; the committed runs keep producing the committed tables."""
import argparse
import json
import shutil
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc
from train import run_cache, tune
from train.run_cache import RUN_SETTINGS, run_suffix

RESULTS = Path(__file__).resolve().parents[2] / "results"
SETTING = {"lr": 1e-4, "scheme": "BIO"}


def tiny_docs():
    """Two CoNLL-like sentences, each a doc with its sentence start."""
    vocab = spacy.blank("en").vocab
    words = [["Angela", "Merkel", "visited", "Paris", "."], ["Apple", "is", "big", "."]]
    ents = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O", "O", "O"]]
    return [Doc(vocab, words=w, ents=e, sent_starts=[True] + [False] * (len(w) - 1)) for w, e in zip(words, ents)]


@pytest.fixture
def fake_training(tmp_path, monkeypatch):
    """tune.Runs on two tiny docs with a fake tokclf runner that records its
    calls; results go to tmp_path."""
    monkeypatch.setattr(tune, "OUT", tmp_path)
    monkeypatch.setattr(tune, "read_docs", lambda path, unit="doc", limit=0, **kw: tiny_docs())
    calls = []

    def runner(dataset, unit, encoder, train_docs, dev_docs, epochs, max_steps, workdir, setting):
        calls.append({"encoder": encoder, "epochs": epochs, "max_steps": max_steps, "setting": setting})
        return [["O"] * len(doc) for doc in dev_docs], 1.0

    monkeypatch.setitem(tune.RUNNERS, "tokclf", runner)
    return calls


def run_args(**settings):
    """`tune.py run`'s arguments, the run settings at their defaults unless given."""
    return argparse.Namespace(**{"dataset": "conll", "unit": "sentence", "force": False, **RUN_SETTINGS, **settings})


def kept(path: Path, ents_f: float, settings=None, seed: int = 0, setting=SETTING, epochs=3) -> Path:
    """A kept tokclf result as tune.py writes it (with run_settings when given)."""
    result = {"system": "tokclf", "dataset": "conll", "unit": "sentence", "setting": setting, "seed": seed,
              "epochs": epochs, "train_seconds": 900.0, "machine": "test machine", "ents_f": ents_f}
    if settings is not None:
        result["run_settings"] = {**RUN_SETTINGS, **settings}
    path.write_text(json.dumps(result), encoding="utf8")
    return path


def default_path(tmp_path: Path, seed: int = 0, setting=SETTING) -> Path:
    return tmp_path / f"conll_sentence_tokclf_{tune.setting_name(setting)}_seed{seed}.json"


def test_a_smoke_run_under_a_full_run_name_is_not_reused(tmp_path, fake_training):
    kept(default_path(tmp_path), 0.5, {"train_limit": 200, "max_steps": 10})
    runs = tune.Runs(run_args())
    with pytest.raises(SystemExit, match=r"train_limit 200 \(asked: 0\).*max_steps 10 \(asked: 0\).*--force"):
        runs.get("tokclf", SETTING, 0)
    assert fake_training == []


def test_an_old_file_cut_short_by_max_steps_is_not_reused_for_a_full_run(tmp_path, fake_training):
    # written before run_settings existed: epochs trained 0.5 (a float) says --max-steps cut it
    kept(default_path(tmp_path), 0.5, epochs=0.5)
    with pytest.raises(SystemExit, match=r"epochs unknown \(asked: 3\).*max_steps unknown"):
        tune.Runs(run_args()).get("tokclf", SETTING, 0)
    assert fake_training == []


def test_force_replaces_it_and_records_the_settings(tmp_path, fake_training):
    path = kept(default_path(tmp_path), 0.5, {"train_limit": 200})
    result = tune.Runs(run_args(force=True)).get("tokclf", SETTING, 0)
    assert len(fake_training) == 1
    assert result["run_settings"] == RUN_SETTINGS == json.loads(path.read_text())["run_settings"]


def test_another_encoder_is_not_reused_and_gets_its_own_file(tmp_path, fake_training):
    full = kept(default_path(tmp_path), 0.91)  # a committed-style full run, default encoder
    result = tune.Runs(run_args(encoder="other-encoder")).get("tokclf", SETTING, 0)
    assert len(fake_training) == 1
    assert result["run_settings"]["encoder"] == "other-encoder"
    assert (tmp_path / f"{default_path(tmp_path).stem}_enc-other-encoder.json").exists()
    assert json.loads(full.read_text())["ents_f"] == 0.91  # the full run is untouched
    # asked again, it is reused from its own file
    tune.Runs(run_args(encoder="other-encoder")).get("tokclf", SETTING, 0)
    assert len(fake_training) == 1


def test_a_file_recording_another_encoder_is_not_reused(tmp_path, fake_training):
    kept(default_path(tmp_path), 0.5, {"encoder": "other-encoder"})
    with pytest.raises(SystemExit, match="encoder 'other-encoder'"):
        tune.Runs(run_args()).get("tokclf", SETTING, 0)


def test_a_smoke_run_is_written_apart_from_the_full_run(tmp_path, fake_training):
    tune.Runs(run_args(train_limit=200, max_steps=10)).get("tokclf", SETTING, 0)
    assert fake_training[0]["max_steps"] == 10
    names = [p.name for p in tmp_path.glob("*.json")]
    assert names == [f"{default_path(tmp_path).stem}_limit200_steps10.json"]
    # the full run is then trained, not taken from the smoke run
    tune.Runs(run_args()).get("tokclf", SETTING, 0)
    assert len(fake_training) == 2
    assert default_path(tmp_path).exists()


def reporting(**args):
    """`tune.py report` / `table`'s arguments, at their defaults unless given."""
    defaults = dict(dataset="conll", unit="sentence", lrs="5e-05,0.0001", max_extensions=3, **RUN_SETTINGS)
    return argparse.Namespace(**{**defaults, **args})


def test_a_smoke_run_is_not_averaged_into_the_report_or_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tune, "OUT", tmp_path)
    for seed, f in [(0, 0.92), (1, 0.91), (2, 0.93)]:
        kept(default_path(tmp_path, seed), f, seed=seed)  # committed-style full runs (no run_settings)
    smoke = {"train_limit": 200, "max_steps": 10}
    kept(tmp_path / f"{default_path(tmp_path, 1).stem}{run_suffix({**RUN_SETTINGS, **smoke})}.json", 0.10, smoke, seed=1)
    tune.report(reporting())
    text = (tmp_path / "conll_sentence.md").read_text()
    assert "| tokclf | lr0.0001_bio (grid not finished: 5e-05 not run) | 92.00 +- 1.00 | 3 | 92.00, 91.00, 93.00 |" in text
    assert "Left out 1 run(s) made with other settings" in capsys.readouterr().out
    tune.table(reporting())
    assert "| tokclf | 92.00 +- 1.00 | 3 | 92.00 |" in (tmp_path / "table.md").read_text()
    # the smoke runs have a report of their own, beside the full one
    kept(tmp_path / f"{default_path(tmp_path, 0).stem}{run_suffix({**RUN_SETTINGS, **smoke})}.json", 0.20, smoke)
    tune.report(reporting(**smoke))
    own = (tmp_path / "conll_sentence_limit200_steps10.md").read_text()
    assert own.splitlines()[2].startswith("Runs made with") and "| 15.00 +- 7.07 | 2 | 20.00, 10.00 |" in own
    assert (tmp_path / "conll_sentence.md").read_text() == text


def test_suffix_names_each_setting_off_its_default_and_none_at_the_defaults():
    assert run_suffix(RUN_SETTINGS) == ""
    suffixes = {
        run_suffix({**RUN_SETTINGS, **change})
        for change in ({"encoder": "/models/bert-base-cased"}, {"encoder": "bert-base-cased"},
                       {"epochs": 1}, {"train_limit": 200}, {"max_steps": 10}, {"train_limit": 200, "max_steps": 10})
    }
    assert len(suffixes) == 6 and "" not in suffixes
    assert all("/" not in s and ".." not in s.replace("...", "") for s in suffixes)
    long_name = run_suffix({**RUN_SETTINGS, "encoder": "/a/" + "x" * 200})
    assert len(long_name) < 60


@pytest.mark.parametrize("name,read", [("tune", run_cache.tune_made_with), ("compare", run_cache.compare_made_with),
                                       ("context", run_cache.context_made_with)])
def test_every_committed_run_reads_as_made_with_the_defaults(name, read):
    paths = sorted((RESULTS / name).glob("*.json"))
    assert paths
    for path in paths:
        assert read(json.loads(path.read_text(encoding="utf8"))) == RUN_SETTINGS, path.name


def test_the_committed_runs_make_the_committed_tables(tmp_path, monkeypatch):
    out = tmp_path / "tune"
    shutil.copytree(RESULTS / "tune", out)
    monkeypatch.setattr(tune, "OUT", out)
    tune.table(reporting())
    for dataset in ("conll", "ewt"):
        tune.report(reporting(dataset=dataset))
    for table in ("table.md", "conll_sentence.md", "ewt_sentence.md"):
        assert (out / table).read_text() == (RESULTS / "tune" / table).read_text(), table
