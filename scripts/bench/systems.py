"""The systems of scripts/bench/benchmark.py, built and measured in its child
processes: `measure_inference` loads an inference system, warms it up and
times two passes over CoNLL-2003 dev; `measure_training` times training steps
(see benchmark.py's docstring for what each system is)."""
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from common import BATCH_SIZE, CONLL_DEV, CONLL_TRAIN, PROJECT, bare_doc, gold_labels, read_docs
from peers import hf_token_model, hf_training_args, label_ids, run_ner_feature, spacy_trf_config

SYSTEMS = (
    "bare",
    "bare_naive",
    "tokclf_ents",
    "tokclf_ents_context",
    "tokclf_ents_tag",
    "tokclf_ents_int8",
    "spacy_trf_ner",
    "hf_pipeline",
    "hf_token_pipe",
)
TRAIN_SYSTEMS = ("tokclf", "hf_trainer", "spacy_trf")
# Need transformers < 5 (spacy-transformers 1.4 caps it below 4.53.3,
# spacy-huggingface-pipelines 0.0.4 below 5): benchmark.py --peer-python.
PEER_SYSTEMS = ("spacy_trf_ner", "hf_token_pipe", "spacy_trf")
UNITS = ("sentence", "doc")
HF_BATCH = 32  # sequences per forward pass of the HF pipelines
HF_STRIDE = 16  # overlap of the HF pipelines' windows (hf_token_pipe's default)
NAIVE_BATCH = 32
WARMUP = {"sentence": 64, "doc": 3}  # docs of the warm-up slice


def examples_of(vocab, docs) -> List:
    from spacy.training import Example

    return [Example(bare_doc(vocab, doc), doc) for doc in docs]


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


# Inference systems ----------------------------------------------------------
# Each builder loads a system and returns (prepare, run): prepare(gold docs)
# builds its input (not timed), run(input) is the timed pass.

Runner = Tuple[Callable[[List], Any], Callable[[Any], None]]


def spacy_runner(nlp) -> Runner:
    prepare = lambda docs: [bare_doc(nlp.vocab, doc) for doc in docs]  # noqa: E731

    def run(docs) -> None:
        # As a user calls it: the pipeline's own nlp.batch_size (spaCy's
        # default 1000; spaCy's quickstart transformer config sets 128).
        for _ in nlp.pipe(docs):
            pass

    return prepare, run


def build_tokclf(
    encoder: str, docs: List, tasks: Sequence[str], int8: bool = False, context: bool = False
) -> Runner:
    """The factory's defaults (HFEncoder.v1: each doc read whole), or with
    `context` as configs/ner.cfg ships: a sentencizer, then HFEncoder.v2 with
    that config's context (the sentencizer's time is counted)."""
    import spacy

    import spacy_tokclf

    nlp = spacy.blank("en")
    tok2vec: Dict[str, Any] = {"name": encoder}
    if context:
        shipped = spacy.util.load_config(PROJECT / "configs" / "ner.cfg")
        nlp.add_pipe("sentencizer")
        tok2vec.update(shipped["components"]["token_classifier"]["model"]["tok2vec"])
        tok2vec["name"] = encoder
    nlp.add_pipe("token_classifier", config={"model": {"tok2vec": tok2vec}, "tasks": list(tasks)})
    examples = examples_of(nlp.vocab, docs)
    nlp.initialize(lambda: examples)
    if int8:
        spacy_tokclf.quantize_encoder(nlp)
    return spacy_runner(nlp)


def build_spacy_trf(encoder: str, docs: List) -> Runner:
    import spacy

    nlp = spacy.util.load_model_from_config(spacy_trf_config("ner", encoder), auto_fill=True)
    examples = examples_of(nlp.vocab, docs)
    nlp.initialize(lambda: examples)
    return spacy_runner(nlp)


def build_hf_pipeline(model_dir: str, docs: List) -> Runner:
    from transformers import pipeline

    hf = pipeline(
        "token-classification",
        model=model_dir,
        aggregation_strategy="first",
        stride=HF_STRIDE,
        batch_size=HF_BATCH,
        device=-1,
    )
    prepare = lambda docs: [doc.text for doc in docs]  # noqa: E731

    def run(texts) -> None:
        hf(texts)

    return prepare, run


def build_hf_token_pipe(model_dir: str, docs: List) -> Runner:
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "hf_token_pipe",
        config={
            "model": model_dir,
            "aggregation_strategy": "first",
            "stride": HF_STRIDE,
            "annotate": "ents",
            "kwargs": {"batch_size": HF_BATCH},
        },
    )
    return spacy_runner(nlp)


def build_bare(encoder: str, docs: List, naive: bool = False) -> Runner:
    import numpy
    import torch
    from transformers import AutoModel, AutoTokenizer

    from spacy_tokclf.layers.pieces import (
        layout_pieces,
        prepare_tokenizer,
        tokenize_docs,
        window_starts,
    )
    from spacy_tokclf.pipeline import DEFAULT_CONFIG

    settings = DEFAULT_CONFIG["model"]["tok2vec"]
    tokenizer = AutoTokenizer.from_pretrained(encoder, use_fast=True)
    tokenizer, special = prepare_tokenizer(tokenizer)  # as the component does
    model = AutoModel.from_pretrained(encoder).eval()

    def prepare(docs) -> List[Tuple[Any, Any]]:
        pieces = tokenize_docs(tokenizer, docs, special.unk_id)
        if not naive:
            layout = layout_pieces(
                pieces,
                special,
                window=settings["window"],
                stride=settings["stride"],
                batch_pieces=settings["batch_pieces"],
                pooling=settings["pooling"],
            )
            batches = layout.batches
        else:
            sequences = []
            for ids, _ in pieces:
                if len(ids):
                    starts, length = window_starts(
                        len(ids), settings["window"], settings["stride"]
                    )
                    for s in starts:
                        window = ids[s : s + length]
                        seq = numpy.concatenate([special.prefix, window, special.suffix])
                        sequences.append(seq)
            batches = []
            for i in range(0, len(sequences), NAIVE_BATCH):
                group = sequences[i : i + NAIVE_BATCH]
                width = max(len(seq) for seq in group)
                ids = numpy.full((len(group), width), special.pad_id, dtype="int64")
                mask = numpy.zeros((len(group), width), dtype="int64")
                for row, seq in enumerate(group):
                    ids[row, : len(seq)] = seq
                    mask[row, : len(seq)] = 1
                batches.append((ids, mask))
        return [(torch.from_numpy(ids), torch.from_numpy(mask)) for ids, mask in batches]

    def run(batches) -> None:
        with torch.inference_mode():
            for ids, mask in batches:
                model(input_ids=ids, attention_mask=mask)

    return prepare, run


def build_system(system: str, encoder: str, hf_model: str, docs: List) -> Runner:
    if system in ("bare", "bare_naive"):
        return build_bare(encoder, docs, naive=system == "bare_naive")
    if system == "tokclf_ents":
        return build_tokclf(encoder, docs, ["ents"])
    if system == "tokclf_ents_context":
        return build_tokclf(encoder, docs, ["ents"], context=True)
    if system == "tokclf_ents_tag":
        return build_tokclf(encoder, docs, ["ents", "tag"])
    if system == "tokclf_ents_int8":
        return build_tokclf(encoder, docs, ["ents"], int8=True)
    if system == "spacy_trf_ner":
        return build_spacy_trf(encoder, docs)
    if system == "hf_pipeline":
        return build_hf_pipeline(hf_model, docs)
    if system == "hf_token_pipe":
        return build_hf_token_pipe(hf_model, docs)
    raise ValueError(f"Unknown system '{system}'")


def measure_inference(spec: Dict) -> Dict:
    """In the child process: load, warm up, time a first and a second pass."""
    import torch

    torch.set_num_threads(spec["threads"])
    docs = read_docs(CONLL_DEV, spec["unit"], limit_docs=spec["limit_docs"])
    start = time.perf_counter()
    prepare, run = build_system(spec["system"], spec["encoder"], spec["hf_model"], docs)
    load_seconds = time.perf_counter() - start
    run(prepare(docs[: WARMUP[spec["unit"]]]))
    passes = []
    for _ in range(2):
        inputs = prepare(docs)
        start = time.perf_counter()
        run(inputs)
        passes.append(time.perf_counter() - start)
        del inputs
    first_seconds, seconds = passes
    words = sum(len(doc) for doc in docs)
    return {
        "docs": len(docs),
        "words": words,
        "seconds": seconds,
        "words_per_s": words / seconds,
        "first_seconds": first_seconds,
        "first_words_per_s": words / first_seconds,
        "load_seconds": load_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


# Training systems -----------------------------------------------------------


def train_batches(vocab, steps: int) -> List[List]:
    """steps + 1 batches of BATCH_SIZE training sentences (the first one is
    the warm-up step), in corpus order."""
    n = (steps + 1) * BATCH_SIZE
    docs = read_docs(CONLL_TRAIN, "sentence", n, vocab=vocab)[:n]
    return [docs[i : i + BATCH_SIZE] for i in range(0, len(docs), BATCH_SIZE)]


def train_spacy_loop(nlp, batches: List[List]) -> Tuple[float, int]:
    """nlp.update per batch, as spaCy's training loop does; the seconds of all
    steps after the first, and their words."""
    examples = [examples_of(nlp.vocab, batch) for batch in batches]
    all_examples = [eg for batch in examples for eg in batch]
    optimizer = nlp.initialize(lambda: all_examples)
    dropout = nlp.config["training"]["dropout"]
    start = 0.0
    for step, batch in enumerate(examples):
        nlp.update(batch, drop=dropout, sgd=optimizer, losses={})
        optimizer.step_schedules()
        if step == 0:
            start = time.perf_counter()
    return time.perf_counter() - start, sum(len(doc) for batch in batches[1:] for doc in batch)


def train_tokclf(encoder: str, batches: List[List]) -> Tuple[float, int]:
    import spacy

    config = spacy.util.load_config(
        PROJECT / "configs" / "ner.cfg", overrides={"paths.encoder": encoder}
    )
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    return train_spacy_loop(nlp, batches)


def train_spacy_trf(encoder: str, batches: List[List]) -> Tuple[float, int]:
    import spacy

    nlp = spacy.util.load_model_from_config(spacy_trf_config("ner", encoder), auto_fill=True)
    return train_spacy_loop(nlp, batches)


def train_hf_trainer(encoder: str, batches: List[List]) -> Tuple[float, int]:
    """scripts/train/compare.py's run_hf_trainer recipe, on the same batches in the
    same order (a sequential sampler instead of the Trainer's shuffling)."""
    from torch.utils.data import SequentialSampler
    from transformers import (
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
    )

    docs = [doc for batch in batches for doc in batch]
    labels = [gold_labels(doc, "ents") for doc in docs]
    label_list, label2id = label_ids(labels)
    tokenizer = AutoTokenizer.from_pretrained(encoder, use_fast=True)
    features = [run_ner_feature(tokenizer, d, ls, label2id) for d, ls in zip(docs, labels)]
    model = hf_token_model(encoder, label_list)
    step_ends: List[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            step_ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = hf_training_args(Path(tmp), max_steps=len(batches), disable_tqdm=True)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=features,
            data_collator=DataCollatorForTokenClassification(tokenizer),
            callbacks=[Clock()],
        )
        trainer._get_train_sampler = lambda *a, **k: SequentialSampler(features)  # type: ignore[method-assign]
        trainer.train()
    if len(step_ends) != len(batches):
        raise RuntimeError(f"HF Trainer ran {len(step_ends)} steps, expected {len(batches)}")
    return step_ends[-1] - step_ends[0], sum(len(doc) for batch in batches[1:] for doc in batch)


def measure_training(spec: Dict) -> Dict:
    import spacy
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    batches = train_batches(spacy.blank("en").vocab, spec["steps"])
    runner = {"tokclf": train_tokclf, "hf_trainer": train_hf_trainer, "spacy_trf": train_spacy_trf}
    seconds, words = runner[spec["system"]](spec["encoder"], batches)
    return {
        "steps": len(batches) - 1,
        "words": words,
        "seconds": seconds,
        "words_per_s": words / seconds,
        "peak_rss_mb": peak_rss_mb(),
    }
