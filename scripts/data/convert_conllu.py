"""Convert CoNLL-U to a .spacy file, XPOS -> token.tag_.

    python scripts/data/convert_conllu.py SRC.conllu OUT.spacy [--unit doc|sentence] [--limit N]

Uses spaCy's own CoNLL-U reader (syntactic words, as `spacy convert -c conllu`).
With --unit doc (the default) the sentences of each `# newdoc` document stay
together in one Doc, so an encoder sees context across sentences.
"""
import sys
from pathlib import Path
from typing import List

import spacy
from spacy.tokens import Doc, DocBin
from spacy.training.converters import conllu_to_docs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import converter_parser


def newdoc_starts(text: str) -> List[bool]:
    """For each sentence block of a CoNLL-U text, whether it opens a document."""
    blocks = [b for b in text.split("\n\n") if any(line and not line.startswith("#") for line in b.splitlines())]
    return [any(line.startswith("# newdoc") for line in b.splitlines()) for b in blocks]


def main(src: Path, out: Path, unit: str, limit: int) -> None:
    text = src.read_text(encoding="utf8")
    sentences = list(conllu_to_docs(text, n_sents=1, no_print=True))
    starts = newdoc_starts(text)
    if len(starts) != len(sentences):
        raise SystemExit(f"{src}: read {len(sentences)} sentences but found {len(starts)} sentence blocks.")
    if limit:
        sentences, starts = sentences[:limit], starts[:limit]
    groups: List[List[Doc]] = []
    for sentence, start in zip(sentences, starts):
        if unit == "sentence" or start or not groups:
            groups.append([])
        groups[-1].append(sentence)
    db = DocBin(attrs=["TAG", "POS", "MORPH", "LEMMA", "HEAD", "DEP", "SENT_START"])
    for group in groups:
        db.add(group[0] if len(group) == 1 else Doc.from_docs(group))
    n_words = sum(len(s) for s in sentences)
    out.parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(out)
    print(f"{src} -> {out}: {len(db)} docs, {len(sentences)} sentences, {n_words} words")


if __name__ == "__main__":
    parser = converter_parser(__doc__, "use the first N sentences (0: all)")
    args = parser.parse_args()
    spacy.blank("en")  # registers the language data the reader needs
    main(args.src, args.out, args.unit, args.limit)
