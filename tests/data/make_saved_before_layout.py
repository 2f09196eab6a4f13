"""Regenerate tests/data/saved_before_layout/: a tiny pipeline saved with the
package as it was before it was laid out by role (issue 27), and what it
predicted then. tests/test_saved_before_layout.py loads it with today's code
and asserts the same predictions.

Made at commit c89b2fa (pre-move: the flat spacy_tokclf/ of ~30 modules).
Regenerating it with later code tests nothing about that move: check out
c89b2fa first (`git worktree add /tmp/pre c89b2fa`), then from that checkout

    python tests/data/make_saved_before_layout.py

It writes, all seeded (torch and spaCy seed 0), without absolute paths:
    pipeline/             nlp.to_disk: sentencizer + token_classifier (tasks
                          ents + tag, scheme BILUO, HFEncoder.v2 with context,
                          a fitted isotonic calibration, a threshold)
    pipeline.bin          nlp.to_bytes() of the same pipeline
    predictions.json      per text of TEXTS: entities, scored spans, tags and
                          the component's probabilities
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import spacy
import torch
from spacy.training import Example

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from spacy_tokclf import calibrate  # noqa: E402 (the one import path both layouts have)
from tests.util import TRAIN_DATA, build_wordpiece, make_examples, train  # noqa: E402

OUT = Path(__file__).resolve().parent / "saved_before_layout"
NAME = "token_classifier"
# The encoder's directory, relative: it is not read again once the pipeline
# is saved (the weights and tokenizer are in pipeline/), and the config holds
# this name and no path of the machine that made it.
ENCODER = "tiny-wordpiece"
THRESHOLD = 0.3
TEXTS = [
    "Angela Merkel visited New York City in 2019.",
    "I like London and Paris.",
    # Several sentences: the encoder reads each with CONTEXT pieces of its
    # neighbours, in windows of WINDOW pieces.
    "Apple Inc. is based in Cupertino. Angela Merkel visited Paris in 2019. "
    "I like New York City and London. The quick brown fox jumps over the lazy dog.",
    "Hello 😀 world 👍🏽",
    "",
]
ENCODER_SETTINGS = {
    "@architectures": "spacy-tokclf.HFEncoder.v2",
    "window": 48,
    "stride": 32,
    "context": 8,
    "pooling": "first",
}


def doc_record(doc) -> Dict[str, Any]:
    """One doc's predictions as predictions.json holds them (the test reads
    today's predictions with this same function)."""
    group = doc.spans[NAME]
    return {
        "text": doc.text,
        "sents": [(s.start, s.end) for s in doc.sents] if len(doc) else [],
        "ents": [(e.start, e.end, e.label_, e.start_char, e.end_char) for e in doc.ents],
        "spans": [(s.start, s.end, s.label_) for s in group],
        "scores": [float(x) for x in group.attrs["scores"]],
        "repaired": [bool(x) for x in group.attrs["repaired"]],
        "tags": [t.tag_ for t in doc],
        "probs": {task: [float(p) for p in probs] for task, probs in doc._.tokclf_probs[NAME].items()},
    }


def predictions(nlp, texts: List[str]) -> List[Dict[str, Any]]:
    return [doc_record(doc) for doc in nlp.pipe(texts)]


def dev_examples(nlp) -> List[Example]:
    """Gold examples on which the entities the pipeline predicts now with the
    lowest third of the scores are wrong and the others right, so that an
    isotonic map can be fitted (as tests/test_calibration.py's dev_examples)."""
    texts = [text for text, _ in TRAIN_DATA] + [t for t in TEXTS if t.strip()]
    docs = list(nlp.pipe(texts))
    found = sorted(
        (float(score), d, (span.start_char, span.end_char, span.label_))
        for d, doc in enumerate(docs)
        for span, score in zip(doc.spans[NAME], doc.spans[NAME].attrs["scores"])
    )
    right = found[max(1, len(found) // 3) :]
    return [
        Example.from_dict(
            nlp.make_doc(text), {"entities": [ent for _, doc, ent in right if doc == d]}
        )
        for d, text in enumerate(texts)
    ]


def main() -> None:
    torch.manual_seed(0)
    spacy.util.fix_random_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            build_wordpiece(Path(ENCODER))
            nlp = spacy.blank("en")
            nlp.add_pipe("sentencizer")
            nlp.add_pipe(
                NAME,
                config={
                    "model": {"tok2vec": {**ENCODER_SETTINGS, "name": ENCODER}},
                    "tasks": ["ents", "tag"],
                    "scheme": "BILUO",
                    "threshold": THRESHOLD,
                },
            )
            train(nlp, make_examples(nlp), n_iter=12)
            pipe = nlp.get_pipe(NAME)
            pipe.cfg["threshold"] = None  # score every entity for the dev set
            examples = dev_examples(nlp)
            pipe.cfg["threshold"] = THRESHOLD
            calibrate(nlp, examples, method="isotonic")
        finally:
            os.chdir(cwd)
    assert pipe.cfg["calibration"]["entity_map"]["method"] == "isotonic"
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    nlp.to_disk(OUT / "pipeline")
    (OUT / "pipeline.bin").write_bytes(nlp.to_bytes())
    result = {"threshold": THRESHOLD, "texts": TEXTS, "predictions": predictions(nlp, TEXTS)}
    (OUT / "predictions.json").write_text(
        json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf8"
    )


if __name__ == "__main__":
    main()
