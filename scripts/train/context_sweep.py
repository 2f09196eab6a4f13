"""Sentence context for token_classifier: train on documents with
`context` pieces around each sentence, and score the same model on the dev
documents with their sentence boundaries, without them (the pipeline's
sentencizer sets them, as for raw text) and on one sentence per doc.

    python scripts/train/context_sweep.py run [--dataset conll|ewt] [--unit doc|chunk]
        --contexts 0,16,32,64,128 [--seeds 0] [--lr 1e-4] [--averages]
    python scripts/train/context_sweep.py report [--encoder, --epochs, --train-limit, --max-steps of the runs]

Each model is the dataset's config (configs/ner.cfg, configs/tagger.cfg)
with a `sentencizer` before the component (an annotating component, so
training reads the sentences prediction reads) and the encoder
`spacy-tokclf.HFEncoder.v2` with `context`. It trains on whole documents
(--unit doc) or on chunks of 1 to 8 consecutive sentences of them (--unit
chunk, common.chunk_docs; --singles P makes a share P of the chunks one
sentence, read without neighbours as a lone sentence is), batched by words (about 32 sentences a batch),
for the same epochs and schedule shape as scripts/train/compare.py; --averages
turns on the optimizer's parameter averaging (`use_averages`). Each run writes
results/context/<dataset>[_chunk[_single<P>]]_ctx<C>[_<scheme>]_lr<LR>[_avg]_seed<S>[_...].json
and is skipped when that file exists and was made with the same --encoder,
--epochs, --train-limit and --max-steps (--force reruns it): a sweep resumes
where it stopped. Those settings are recorded in the file and, where not at
their defaults, in its name (scripts/train/run_cache.py); `report` shows only the
runs made with the settings it is given (the defaults: full data, all
epochs). Scores are exact-span entity P/R/F1 (CoNLL-2003) or tag
accuracy (EWT) on the gold tokens of the dev set (common.score).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

import spacy
from spacy.tokens import Doc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
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
from run_info import machine
from train.compare_systems import sentence_context, train_spacy
from train.run_cache import (
    add_run_arguments, cached_run, matching_runs, run_settings, run_suffix, settings_note, write_run,
)
from train.run_cache import context_made_with as made_with

OUT = PROJECT / "results" / "context"


def context_config(dataset: str, context: int, lr: float, seed: int, scheme: str, averages: bool = False):
    config = spacy.util.load_config(PROJECT / "configs" / f"{DATASETS[dataset][3]}.cfg")
    config = sentence_context(config, context)
    if DATASETS[dataset][2] == "ents":
        config["components"]["token_classifier"]["scheme"] = scheme
    config["training"]["optimizer"]["learn_rate"]["initial_rate"] = lr
    config["training"]["optimizer"]["use_averages"] = averages
    config["system"]["seed"] = seed
    return config


def dev_views(dev_docs: List[Doc], vocab) -> Dict[str, List[Doc]]:
    """The dev set three ways, all on the gold tokens."""
    return {
        "docs_gold_sentences": [bare_doc(vocab, d, sents=True) for d in dev_docs],
        "docs_no_sentences": [bare_doc(vocab, d) for d in dev_docs],
        "sentences": [bare_doc(vocab, s.as_doc(), sents=True) for d in dev_docs for s in d.sents],
    }


def evaluate(nlp, dev_docs: List[Doc], task: str) -> Dict[str, Dict]:
    gold_docs = {
        "docs_gold_sentences": dev_docs,
        "docs_no_sentences": dev_docs,
        "sentences": [s.as_doc() for d in dev_docs for s in d.sents],
    }
    out = {}
    for view, docs in dev_views(dev_docs, nlp.vocab).items():
        n_words = sum(len(d) for d in docs)
        start = time.perf_counter()
        predicted = [gold_labels(doc, task) for doc in nlp.pipe(docs, batch_size=256)]
        seconds = time.perf_counter() - start
        gold = [gold_labels(d, task) for d in gold_docs[view]]
        result = score(gold, predicted, task)
        result["words_per_second"] = round(n_words / seconds, 1)
        out[view] = result
    return out


def run(args) -> None:
    train_path, dev_path, task, _ = DATASETS[args.dataset]
    train_docs = read_docs(PROJECT / train_path, args.unit, args.train_limit, singles=args.singles)
    dev_docs = read_docs(PROJECT / dev_path, "doc")
    encoder = resolve_encoder(args.encoder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    OUT.mkdir(parents=True, exist_ok=True)
    settings = run_settings(args)
    for seed in [int(s) for s in args.seeds.split(",")]:
        for context in [int(c) for c in args.contexts.split(",")]:
            name = run_name(args, context, seed, task) + run_suffix(settings)
            path = OUT / f"{name}.json"
            if cached_run(path, settings, made_with, args.force) is not None:
                print(f"skip {name}: {path} exists (--force reruns)")
                continue
            print(f"=== {name}: {len(train_docs)} docs, {n_sentences(train_docs)} sentences")
            load_before = os.getloadavg()[0]
            overrides = {
                "paths.encoder": encoder,
                **schedule(train_docs, args.unit, args.epochs, args.max_steps),
            }
            nlp, seconds = train_spacy(
                context_config(args.dataset, context, args.lr, seed, args.scheme, args.averages),
                PROJECT / "training" / "context" / name,
                train_docs,
                dev_docs,
                overrides,
            )
            result = {
                "dataset": args.dataset,
                "unit": args.unit,
                "singles": args.singles,
                "single_sentence_share": round(sum(1 for d in train_docs if n_sentences([d]) == 1) / n_sentences(train_docs), 4),
                "context": context,
                "scheme": args.scheme if task == "ents" else None,
                "learn_rate": args.lr,
                "averages": args.averages,
                "seed": seed,
                "epochs": args.epochs,
                "max_steps": args.max_steps,
                "train_docs": len(train_docs),
                "train_seconds": round(seconds, 1),
                "machine": machine(),
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "dev": evaluate(nlp, dev_docs, task),
            }
            result = write_run(path, result, settings)
            print(json.dumps({v: metric(r) for v, r in result["dev"].items()}))
    report(args)


def run_name(args, context: int, seed: int, task: str) -> str:
    unit = "_chunk" if args.unit == "chunk" else ""
    unit += f"_single{args.singles:g}" if args.unit == "chunk" and args.singles else ""
    scheme = f"_{args.scheme.lower()}" if task == "ents" else ""
    averages = "_avg" if args.averages else ""
    return f"{args.dataset}{unit}_ctx{context}{scheme}_lr{args.lr:g}{averages}_seed{seed}"


def metric(result: Dict) -> float:
    return result["ents_f"] if "ents_f" in result else result["tag_acc"]


def report(args) -> None:
    settings = run_settings(args)
    sections = settings_note(settings)
    for dataset, name in (("conll", "entity F1"), ("ewt", "tag accuracy")):
        rows = []
        results = matching_runs(sorted(OUT.glob(f"{dataset}_*.json")), settings, made_with)
        results.sort(key=lambda r: (r.get("unit", "doc"), r.get("singles", 0), r["context"], r["learn_rate"],
                                    r.get("averages", False), r["seed"]))
        for r in results:
            dev = r["dev"]
            rows.append(
                f"| {r.get('unit', 'doc')} | {r.get('singles', 0):g} | {r['context']} | {r['scheme'] or '-'} | {r['learn_rate']:g} | "
                f"{'yes' if r.get('averages') else 'no'} | "
                f"{r['seed']} | {100 * metric(dev['docs_gold_sentences']):.2f} | "
                f"{100 * metric(dev['docs_no_sentences']):.2f} | {100 * metric(dev['sentences']):.2f} | "
                f"{r['train_seconds'] / max(r['epochs'], 1):.0f} | "
                f"{dev['docs_gold_sentences']['words_per_second']:,.0f} |"
            )
        if rows:
            sections += [
                f"## {dataset}: dev {name}",
                "",
                "| trained on | single-sentence chunks | context | scheme | lr | averages | seed | docs (gold sentences) | docs (sentencizer) "
                "| one sentence per doc | s/epoch | dev words/s (docs) |",
                "| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
                *rows,
                "",
            ]
    text = "\n".join(sections)
    (OUT / f"table{run_suffix(settings)}.md").write_text(text, encoding="utf8")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="conll")
    p.add_argument("--unit", choices=["doc", "chunk"], default="doc")
    p.add_argument("--contexts", default="0,16,32,64,128")
    p.add_argument("--seeds", default="0")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--scheme", default="BILUO", choices=["BIO", "BILUO", "IO"], help="entities only")
    p.add_argument("--averages", action="store_true", help="the optimizer's parameter averaging (use_averages)")
    p.add_argument("--singles", type=float, default=0.0,
                   help="--unit chunk: the share of chunks that are one sentence (common.chunk_docs)")
    add_run_arguments(p)
    p.add_argument("--force", action="store_true")
    add_run_arguments(sub.add_parser("report"))  # the table reads only the runs made with these
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
