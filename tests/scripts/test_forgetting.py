"""scripts/reports/forgetting.py, the forgetting gate: on tiny data, it fails
(status 1, a message naming --max-drop and the labels) on a pipeline taught
MISC naively, whose old labels collapse, and passes on one taught with
distillation (spacy-tokclf.extend_labels.v1)."""
from typing import List

import pytest
import srsly
from spacy.tokens import DocBin
from spacy.training import Example

from reports.forgetting import main
from spacy_tokclf.metrics import label_drops

from ..test_add_label import NEW_DATA, TEXTS, teach
from ..util import TRAIN_DATA, make_examples, make_nlp, train


@pytest.fixture(scope="module")
def pipelines(encoders, tmp_path_factory):
    """The old pipeline (PER, LOC, ORG), the naive and the distilled one, saved;
    and a gold dev file with all four labels."""
    root = tmp_path_factory.mktemp("forgetting")
    old = make_nlp(encoders["wordpiece"], scheme="BILUO")
    train(old, make_examples(old), n_iter=20)
    old.to_disk(root / "old")
    paths = {"old": root / "old"}
    for name, distill in (("naive", False), ("distilled", True)):
        nlp, _ = teach(root / "old", distill=distill)
        nlp.to_disk(root / name)
        paths[name] = root / name
    gold: List = [eg.reference for eg in make_examples(old)]
    for text, spans in NEW_DATA:
        doc = old.make_doc(text)
        gold.append(Example.from_dict(doc, {"entities": [
            (doc[s:e].start_char, doc[s:e].end_char, "MISC") for s, e in spans]}).reference)
    DocBin(docs=gold).to_disk(root / "dev.spacy")
    paths["dev"] = root / "dev.spacy"
    assert len(TEXTS) > len(TRAIN_DATA)
    return paths


def test_the_gate_fails_on_a_pipeline_that_forgot(pipelines, capsys):
    status = main([str(pipelines["old"]), str(pipelines["naive"]), str(pipelines["dev"]),
                   "--max-drop", "20"])
    captured = capsys.readouterr()
    assert status == 1
    assert "--max-drop 20" in captured.err and "FORGETTING" in captured.err
    assert "MISC" in captured.out and "(new)" in captured.out


def test_the_gate_passes_on_a_pipeline_taught_with_distillation(pipelines, capsys, tmp_path):
    output = tmp_path / "report.json"
    status = main([str(pipelines["old"]), str(pipelines["distilled"]), str(pipelines["dev"]),
                   "--max-drop", "20", "--output", str(output)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "OK" in captured.out
    report = srsly.read_json(output)
    assert report["passed"] and report["old_labels"] == ["LOC", "ORG", "PER"]


def test_label_drops():
    before = {"PER": 90.0, "LOC": 80.0, "MISC": 0.0}
    after = {"PER": 89.6, "LOC": 70.0, "MISC": 50.0}
    assert label_drops(before, after, ["PER", "LOC"], 0.5) == [("LOC", 80.0, 70.0, 10.0)]
    assert label_drops(before, {}, ["PER"], 0.5) == [("PER", 90.0, 0.0, 90.0)]
    assert label_drops(before, after, ["PER", "LOC"], 10.0) == []
