"""A bit-exact digest of a pipeline's predictions on a corpus, to show that a
code change leaves prediction unchanged.

    python scripts/reports/prediction_digest.py MODEL corpus/conll_dev.spacy --out digest.json

The corpus is read twice, on its gold tokens: whole documents (no sentence
boundaries) and one sentence per doc. For each, the SHA-256 covers every
span group's spans with their scores, doc.ents, token tags and
doc._.tokclf_probs, floats written in hex so that any change of any bit
changes the digest. Which code ran is the `spacy_tokclf` module printed in
the output: run it with PYTHONPATH=<checkout> to compare two checkouts.
"""
import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Dict, List

import spacy
from spacy.tokens import Doc, DocBin


def views(nlp, corpus: Path) -> Dict[str, List[Doc]]:
    gold = list(DocBin().from_disk(corpus).get_docs(nlp.vocab))

    def bare(tokens) -> Doc:
        return Doc(
            nlp.vocab,
            words=[t.text for t in tokens],
            spaces=[bool(t.whitespace_) for t in tokens],
        )

    return {
        "docs": [bare(doc) for doc in gold],
        "sentences": [bare(sent) for doc in gold for sent in doc.sents],
    }


def digest(nlp, docs: List[Doc], batch_size: int) -> Dict:
    h = hashlib.sha256()
    n_ents = 0
    start = time.perf_counter()
    for doc in nlp.pipe(docs, batch_size=batch_size):
        for key, group in doc.spans.items():
            for span, score in zip(group, group.attrs.get("scores", [])):
                h.update(f"{key}|{span.start}|{span.end}|{span.label_}|{float(score).hex()};".encode())
        for ent in doc.ents:
            n_ents += 1
            h.update(f"E{ent.start}|{ent.end}|{ent.label_};".encode())
        h.update(("T" + " ".join(t.tag_ for t in doc)).encode())
        for component, tasks in sorted((doc._.get("tokclf_probs") or {}).items()):
            for task, probs in sorted(tasks.items()):
                values = ",".join("N" if p is None else float(p).hex() for p in probs)
                h.update(f"P{component}|{task}|{values}".encode())
    return {
        "docs": len(docs),
        "entities": n_ents,
        "sha256": h.hexdigest(),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--views", default="docs,sentences")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    nlp = spacy.load(args.model)
    import spacy_tokclf

    result: Dict = {"model": args.model, "corpus": str(args.corpus), "module": spacy_tokclf.__file__}
    wanted = args.views.split(",")
    for name, docs in views(nlp, args.corpus).items():
        if name in wanted:
            result[name] = digest(nlp, docs, args.batch_size)
            print(name, result[name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")


if __name__ == "__main__":
    main()
