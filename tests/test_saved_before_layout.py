"""A pipeline saved before the package was laid out by role (issue 27; made
at commit c89b2fa by tests/data/make_saved_before_layout.py) loads with
today's code, from disk and from bytes, and predicts what it predicted then:
the same sentences, entities, scored spans, repaired flags and tags, and the
same entity scores and token probabilities within 1e-6.

The pipeline holds what a saved token_classifier can hold: tasks ents + tag
(scheme BILUO), an HFEncoder.v2 with sentence context (the sentencizer sets
the boundaries) and windows, a fitted isotonic calibration and a threshold
(that drops an entity). It is loaded from a copy in a temporary directory,
with the working directory elsewhere, so nothing of the machine that made it
(the encoder's directory, named in the config) is read.
"""
import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy
from spacy.util import load_config, load_model_from_config, make_tempdir

import spacy_tokclf
from tests.data.make_saved_before_layout import doc_record

DATA = Path(__file__).parent / "data" / "saved_before_layout"
NAME = "token_classifier"
TOLERANCE = 1e-6
EXPECTED = json.loads((DATA / "predictions.json").read_text(encoding="utf8"))


def predictions(docs) -> List[Dict[str, Any]]:
    """What make_saved_before_layout.py wrote, as JSON reads it back."""
    return [json.loads(json.dumps(doc_record(doc))) for doc in docs]


def assert_same(found: List[Dict[str, Any]], expected: List[Dict[str, Any]]) -> None:
    assert len(found) == len(expected)
    for got, want in zip(found, expected):
        for key in ("text", "sents", "ents", "spans", "repaired", "tags"):
            assert got[key] == want[key], (want["text"], key)
        assert got["scores"] == pytest.approx(want["scores"], abs=TOLERANCE), want["text"]
        assert sorted(got["probs"]) == sorted(want["probs"])
        for task in want["probs"]:
            assert got["probs"][task] == pytest.approx(want["probs"][task], abs=TOLERANCE)


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """The saved files in a fresh directory; the working directory is another."""
    root = tmp_path_factory.mktemp("saved_before_layout")
    shutil.copytree(DATA, root / "saved")
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    yield root / "saved"
    os.chdir(cwd)


def test_fixture_is_what_the_test_expects():
    """The fixture covers what it says, and names no path of its machine."""
    config = load_config(DATA / "pipeline" / "config.cfg")
    component = config["components"][NAME]
    assert component["tasks"] == ["ents", "tag"]
    assert component["model"]["tok2vec"]["@architectures"] == "spacy-tokclf.HFEncoder.v2"
    assert component["model"]["tok2vec"]["context"] > 0
    assert not Path(component["model"]["tok2vec"]["name"]).is_absolute()
    cfg = json.loads((DATA / "pipeline" / NAME / "cfg").read_text(encoding="utf8"))
    assert cfg["calibration"]["entity_map"]["method"] == "isotonic"
    assert cfg["threshold"] == EXPECTED["threshold"]
    predicted = EXPECTED["predictions"]
    assert any(len(p["sents"]) > 1 for p in predicted)
    assert any(p["ents"] for p in predicted) and any(p["tags"] for p in predicted)
    assert any(True in p["repaired"] for p in predicted)
    assert any(False in p["repaired"] for p in predicted)
    for path in DATA.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for root in (b"/tmp/", b"/work/", b"/home/", b"/root/", b"/Users/", b"C:\\"):
                assert root not in data, (path, root)


def test_loads_from_disk_and_predicts_the_same(copied):
    nlp = spacy.load(copied / "pipeline")
    assert nlp.pipe_names == ["sentencizer", NAME]
    pipe = nlp.get_pipe(NAME)
    assert type(pipe) is spacy_tokclf.TokenClassifier
    assert pipe.cfg["threshold"] == EXPECTED["threshold"]
    texts = EXPECTED["texts"]
    assert_same(predictions(nlp.pipe(texts)), EXPECTED["predictions"])
    assert_same(predictions(nlp(text) for text in texts), EXPECTED["predictions"])


def test_loads_from_bytes_and_predicts_the_same(copied):
    config = load_config(copied / "pipeline" / "config.cfg")
    nlp = load_model_from_config(config, auto_fill=True)
    nlp.from_bytes((copied / "pipeline.bin").read_bytes())
    assert_same(predictions(nlp.pipe(EXPECTED["texts"])), EXPECTED["predictions"])


def test_saved_again_with_todays_code_predicts_the_same(copied):
    """Loaded, saved by today's code and loaded again: the same."""
    with make_tempdir() as tmp:
        spacy.load(copied / "pipeline").to_disk(tmp / "again")
        nlp = spacy.load(tmp / "again")
        assert_same(predictions(nlp.pipe(EXPECTED["texts"])), EXPECTED["predictions"])
