"""Convert CoNLL-U to a .spacy file, one sentence per doc, XPOS -> token.tag_.

    python scripts/convert_conllu.py SRC.conllu OUT.spacy [--limit N]

Uses spaCy's own CoNLL-U reader (syntactic words, as `spacy convert -c conllu`).
"""
import argparse
from pathlib import Path

import spacy
from spacy.tokens import DocBin
from spacy.training.converters import conllu_to_docs


def main(src: Path, out: Path, limit: int) -> None:
    text = src.read_text(encoding="utf8")
    db = DocBin(attrs=["TAG", "POS", "MORPH", "LEMMA", "HEAD", "DEP", "SENT_START"])
    n_words = 0
    for doc in conllu_to_docs(text, n_sents=1, no_print=True):
        if limit and len(db) >= limit:
            break
        db.add(doc)
        n_words += len(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(out)
    print(f"{src} -> {out}: {len(db)} docs (sentences), {n_words} words")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="stop after this many sentences (0: all)")
    args = parser.parse_args()
    spacy.blank("en")  # registers the language data the reader needs
    main(args.src, args.out, args.limit)
