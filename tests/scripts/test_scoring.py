"""The scoring of scripts/train/compare.py (scripts/common.py), which makes the
README's comparison table: every system is scored by these functions."""
import common
import pytest


def test_iob_spans_reads_iob1_and_iob2_alike():
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]
    expected = [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]
    assert common.iob_spans(iob2) == expected
    assert common.iob_spans(iob1) == expected


def test_iob_spans_type_change_and_hyphens():
    labels = ["I-PER", "I-ORG", "B-WORK-OF-ART", "I-WORK-OF-ART"]
    assert common.iob_spans(labels) == [(0, 1, "PER"), (1, 2, "ORG"), (2, 4, "WORK-OF-ART")]


def test_score_entities_exact_match():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-LOC"]]
    scores = common.score(gold, pred, "ents")
    # tp: LOC, ORG; fp: PER(0,1), LOC(1,2); fn: PER(0,2)
    assert scores["ents_p"] == pytest.approx(2 / 4)
    assert scores["ents_r"] == pytest.approx(2 / 3)
    assert scores["ents_f"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert scores["ents_per_type"]["PER"]["f"] == 0.0
    assert scores["ents_per_type"]["ORG"]["f"] == 1.0
    assert scores["ents_per_type"]["LOC"]["p"] == pytest.approx(0.5)


def test_score_tags_accuracy():
    assert common.score([["NN", "VB"], ["DT"]], [["NN", "NN"], ["DT"]], "tag") == {
        "tag_acc": pytest.approx(2 / 3)
    }
