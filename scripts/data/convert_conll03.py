"""Convert CoNLL-2003 (IOB1, `token POS chunk NER`) to a .spacy file.

Keeps -DOCSTART- documents whole (--unit doc, default) or makes one doc per
sentence (--unit sentence). Gold entities go to Doc.ents, the POS column to
token.tag_. Prints entity counts so a conversion can be checked against the
source's published statistics.
"""
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import biluo_tags_to_spans, iob_to_biluo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import converter_parser

Sentence = List[Tuple[str, str, str]]  # (word, POS, IOB1 tag)


def read_documents(path: Path) -> Iterator[List[Sentence]]:
    doc: List[Sentence] = []
    sent: Sentence = []
    for line in path.read_text(encoding="utf8").splitlines():
        fields = line.split()
        if not fields:
            if sent:
                doc.append(sent)
                sent = []
        elif fields[0] == "-DOCSTART-":
            if sent:
                doc.append(sent)
                sent = []
            if doc:
                yield doc
            doc = []
        else:
            sent.append((fields[0], fields[1], fields[-1]))
    if sent:
        doc.append(sent)
    if doc:
        yield doc


def make_doc(vocab, sentences: List[Sentence]) -> Doc:
    words = [w for s in sentences for w, _, _ in s]
    tags = [t for s in sentences for _, t, _ in s]
    sent_starts: List[Any] = [i == 0 for s in sentences for i in range(len(s))]
    doc = Doc(vocab, words=words, tags=tags, sent_starts=sent_starts)
    # IOB1 -> BILUO per sentence: an entity never crosses a sentence boundary.
    biluo = [b for s in sentences for b in iob_to_biluo([n for _, _, n in s])]
    doc.ents = biluo_tags_to_spans(doc, biluo)
    return doc


def main(src: Path, out: Path, unit: str, limit: int, expect: str = "") -> Counter:
    nlp = spacy.blank("en")
    db = DocBin(attrs=["ENT_IOB", "ENT_TYPE", "TAG", "SENT_START"])
    counts: Counter = Counter()
    n_sents = 0
    for sentences in read_documents(src):
        groups = [[s] for s in sentences] if unit == "sentence" else [sentences]
        for group in groups:
            if limit and n_sents >= limit:
                break
            doc = make_doc(nlp.vocab, group)
            counts.update(ent.label_ for ent in doc.ents)
            n_sents += len(group)
            db.add(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(out)
    print(f"{src} -> {out}: {len(db)} docs, {n_sents} sentences, entities {dict(sorted(counts.items()))}")
    expected = {k: int(v) for k, v in (item.split("=") for item in expect.split(",") if item)}
    if expected and not limit and dict(counts) != expected:
        raise SystemExit(f"Entity counts {dict(counts)} differ from the source's {expected}: entities were lost.")
    return counts


if __name__ == "__main__":
    parser = converter_parser(__doc__, "stop after this many sentences (0: all)")
    parser.add_argument("--expect", default="", help="entity counts to check, e.g. PER=6600,LOC=7140 (skipped with --limit)")
    args = parser.parse_args()
    main(args.src, args.out, args.unit, args.limit, args.expect)
