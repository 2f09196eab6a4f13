"""The data and the figures of scripts/train/add_label.py (issue 28's
scenario): disjoint halves, the old half without the new type, the new half
with only the new type and everything else unannotated (kept through the
chunking and a DocBin round trip), and the old types' micro F1."""
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

from common import score
from train import add_label

TYPES = ["PER", "LOC", "ORG", "MISC"]


def make_docs(n: int):
    """n documents of three sentences, one entity of each type in each."""
    nlp = spacy.blank("en")
    docs = []
    for i in range(n):
        words = f"Anna{i} saw Paris . Acme{i} likes German . Bob{i} is here .".split()
        doc = Doc(nlp.vocab, words=words, sent_starts=[w in (0, 4, 8) for w in range(len(words))])
        doc.set_ents([Span(doc, 0, 1, "PER"), Span(doc, 2, 3, "LOC"), Span(doc, 4, 5, "ORG"),
                      Span(doc, 6, 7, "MISC"), Span(doc, 8, 9, "PER")], default="outside")
        docs.append(doc)
    return docs


def test_halves_are_disjoint_and_cover_the_documents():
    docs = make_docs(11)
    old, new = add_label.split_halves(docs)
    assert len(old) == 5 and len(new) == 6
    ids = [id(d) for d in old + new]
    assert len(set(ids)) == 11
    assert add_label.split_halves(docs)[0] == old  # seeded


@pytest.mark.parametrize("new_label", TYPES)
def test_the_systems_see_the_data_of_the_scenario(new_label, tmp_path):
    docs = make_docs(10)
    data = add_label.scenario_data(new_label, docs)
    old_words = {t.text for d in data["old"] for t in d}
    new_words = {t.text for d in data["naive_masked"] for t in d}
    assert not {w for w in old_words if w[-1].isdigit()} & {w for w in new_words if w[-1].isdigit()}
    # The old half: three types, the new one made O; every token annotated.
    assert {e.label_ for d in data["old"] for e in d.ents} == set(TYPES) - {new_label}
    assert all(t.ent_iob_ != "" for d in data["old"] for t in d)
    # The new half: only the new type; the rest unannotated (masked) or O.
    for system, other in (("naive_masked", ""), ("distill", ""), ("naive_o", "O")):
        # read back as training reads it: through a DocBin file
        path = tmp_path / f"{system}.spacy"
        DocBin(docs=data[system]).to_disk(path)
        back = list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))
        assert {e.label_ for d in back for e in d.ents} == {new_label}
        assert sum(len(d.ents) for d in back) == sum(len(d.ents) for d in data[system])
        outside = [t.ent_iob_ for d in back for t in d if t.ent_type_ != new_label]
        assert outside and set(outside) == {other}
    # Chunks of whole sentences, the same documents for every new-half system.
    assert [d.text for d in data["naive_o"]] == [d.text for d in data["distill"]]
    assert all(sum(1 for _ in d.sents) >= 1 for d in data["old"])


def test_an_unknown_new_label_is_refused():
    with pytest.raises(SystemExit, match="DATE"):
        add_label.scenario_data("DATE", make_docs(4))


def test_micro_f1_from_counts_and_rebuilt_from_precision_and_recall():
    gold = [["B-PER", "O", "B-LOC", "B-ORG", "O", "B-MISC"], ["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "B-ORG", "B-ORG", "B-LOC", "B-MISC"], ["B-PER", "O", "O", "B-LOC"]]
    per_type = score(gold, pred, "ents")["ents_per_type"]
    n_gold = {"PER": 2, "LOC": 2, "ORG": 1, "MISC": 1}
    old = ["PER", "LOC", "ORG"]
    # by hand: tp PER 1, LOC 1, ORG 1 = 3; fp PER 1, LOC 1, ORG 1 = 3; fn PER 1, LOC 1 = 2
    assert add_label.micro_f1(per_type, old, n_gold) == pytest.approx(200 * 3 / (6 + 3 + 2))
    legacy = {t: {k: v for k, v in d.items() if k in ("p", "r", "f")} for t, d in per_type.items()}
    assert add_label.micro_f1(legacy, old, n_gold) == pytest.approx(200 * 3 / (6 + 3 + 2))
    # A type never predicted and never found counts its gold as missed.
    assert add_label.micro_f1({}, ["PER"], n_gold) == 0.0


def test_best_rate_is_the_best_mean_over_seeds():
    def run(system, lr, seed, f):
        return {"system": system, "learn_rate": lr, "seed": seed, "dev": {"docs_gold_sentences": {"ents_f": f}}}

    results = [run("distill", 1e-4, 0, 0.80), run("distill", 1e-4, 1, 0.70),
               run("distill", 2e-4, 0, 0.78), run("distill", 2e-4, 1, 0.77), run("old", 2e-4, 0, 0.6)]
    best = add_label.best_runs(results)
    assert [r["learn_rate"] for r in best["distill"]] == [2e-4, 2e-4]
    assert [r["system"] for r in best["old"]] == ["old"]


def test_the_gate_verdict_of_each_fine_tune_against_the_old_model():
    def run(system, seed, f1s):
        per_type = {t: {"f": f / 100} for t, f in f1s.items()}
        return {"system": system, "seed": seed, "dev": {"docs_no_sentences": {"ents_per_type": per_type}}}

    best = {
        "old": [run("old", 0, {"PER": 95.0, "LOC": 92.0, "ORG": 88.0})],
        "naive_o": [run("naive_o", 0, {"PER": 40.0, "LOC": 91.9, "ORG": 10.0, "MISC": 80.0})],
        # seed 0 decides: seed 1 would fail
        "distill": [run("distill", 1, {"PER": 10.0}), run("distill", 0, {"PER": 94.8, "LOC": 92.1, "ORG": 87.6})],
    }
    verdicts = add_label.gate_verdicts(best, ["PER", "LOC", "ORG"], max_drop=0.5)
    assert verdicts["distill"] == "passes"
    assert verdicts["naive_o"].startswith("fails") and "PER -55.0" in verdicts["naive_o"]
    assert "ORG -78.0" in verdicts["naive_o"] and "LOC" not in verdicts["naive_o"]
    assert "naive_masked" not in verdicts
