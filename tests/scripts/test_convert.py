"""The project's converters (scripts/data/convert_conll03.py, scripts/data/convert_conllu.py):
whole documents are kept, nothing is lost, and a lost entity stops the run."""
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.util import make_tempdir

from data import convert_conll03, convert_conllu

CONLL = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- O O

BRUSSELS NNP I-NP I-LOC
1996-08-22 CD I-NP O

Paris NNP I-NP I-LOC
Lyon NNP I-NP B-LOC
"""

CONLLU = """# newdoc id = a
# sent_id = a-1
# text = Hi there
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
2\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t_\t_

# sent_id = a-2
# text = Bye.
1\tBye\tbye\tINTJ\tUH\t_\t0\troot\t_\tSpaceAfter=No
2\t.\t.\tPUNCT\t.\t_\t1\tpunct\t_\t_

# newdoc id = b
# sent_id = b-1
# text = Don't go
1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_

"""


def read(path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


@pytest.mark.parametrize("unit,n_docs", [("doc", 2), ("sentence", 4)])
def test_conll03_keeps_documents_and_every_entity(unit, n_docs):
    with make_tempdir() as d:
        (d / "eng.x").write_text(CONLL, encoding="utf8")
        counts = convert_conll03.main(d / "eng.x", d / "out.spacy", unit, 0, "ORG=1,MISC=1,PER=1,LOC=3")
        docs = read(d / "out.spacy")
    assert counts == {"ORG": 1, "MISC": 1, "PER": 1, "LOC": 3}
    assert len(docs) == n_docs
    assert sum(len(list(doc.sents)) for doc in docs) == 4
    ents = [(e.text, e.label_) for doc in docs for e in doc.ents]
    # IOB1: "Lyon" (B-LOC right after I-LOC) is an entity of its own.
    assert ents[-2:] == [("Paris", "LOC"), ("Lyon", "LOC")]
    assert ("Peter Blackburn", "PER") in ents
    assert [t.tag_ for t in docs[0]][:2] == ["NNP", "VBZ"]


def test_conll03_stops_when_counts_differ_from_the_source():
    with make_tempdir() as d:
        (d / "eng.x").write_text(CONLL, encoding="utf8")
        with pytest.raises(SystemExit, match="entities were lost"):
            convert_conll03.main(d / "eng.x", d / "out.spacy", "doc", 0, "ORG=1,MISC=1,PER=1,LOC=4")


@pytest.mark.parametrize("unit,sizes", [("doc", [4, 3]), ("sentence", [2, 2, 3])])
def test_conllu_groups_sentences_by_newdoc(unit, sizes):
    with make_tempdir() as d:
        (d / "x.conllu").write_text(CONLLU, encoding="utf8")
        convert_conllu.main(d / "x.conllu", d / "out.spacy", unit, 0)
        docs = read(d / "out.spacy")
    assert [len(doc) for doc in docs] == sizes
    words = [t.text for doc in docs for t in doc]
    assert words == ["Hi", "there", "Bye", ".", "Do", "n't", "go"]
    assert [t.tag_ for doc in docs for t in doc] == ["UH", "RB", "UH", ".", "VBP", "RB", "VB"]
    assert sum(len(list(doc.sents)) for doc in docs) == 3
