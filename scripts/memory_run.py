"""Long-run memory: does a pipeline's resident memory keep growing over many docs?

    python scripts/memory_run.py --model training/ner/model-best [--docs 100000]
        [--every 10000] [--max-growth 5] [--out results/memory]

Pushes --docs texts through nlp.pipe, cycling through the sentences of
--corpus (CoNLL-2003 dev, 3,250 sentences) if it exists, else through
generated sentences, and reads this process's resident memory (VmRSS, after
gc.collect()) every --every docs. The first --every docs are the warm-up
(weights faulted in, kernels picked, the strings of the whole cycle added to
the StringStore); growth is the RSS at the end against the RSS after the
warm-up, in %. Writes memory.json and memory.md to --out. Exits 1 if the
growth is --max-growth % or more, 2 if the run cannot start.
"""
import argparse
import gc
import os
import sys
import time
from itertools import cycle, islice
from typing import Any, Dict, List, Optional

from common import project_path
from loadtest_texts import corpus_texts, generated_texts
from reports import command_line, fmt, machine_info, mb, rss_kb, run_footer, write_result

DEFAULT_MODEL = "training/ner/model-best"
DEFAULT_CORPUS = "corpus/conll_dev.spacy"


def slope_mb_per(points: List[Dict[str, Any]], per: int) -> Optional[float]:
    """Least-squares slope of RSS over docs, in MB per `per` docs."""
    if len(points) < 2:
        return None
    xs = [p["docs"] for p in points]
    ys = [p["rss_mb"] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if not var:
        return None
    return round(per * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var, 2)


def markdown(result: Dict[str, Any]) -> str:
    lines = [
        "| docs | seconds | docs/s | RSS MB | strings |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in result["checkpoints"]:
        lines.append(
            f"| {p['docs']:,} | {fmt(p['seconds'])} | {fmt(p['docs_per_s'])} | "
            f"{fmt(p['rss_mb'])} | {p['strings']:,} |"
        )
    verdict = "PASSED" if result["passed"] else "FAILED"
    lines += [
        "",
        f"RSS after the warm-up ({result['warmup_docs']:,} docs): {fmt(result['rss_after_warmup_mb'])} MB; "
        f"at the end ({result['docs']:,} docs): {fmt(result['rss_end_mb'])} MB; growth "
        f"**{fmt(result['growth_percent'], 2)} %** (limit {fmt(result['max_growth_percent'])} %: "
        f"{verdict}); trend after the warm-up {fmt(result['slope_mb_per_every_after_warmup'], 2)} MB "
        f"per {result['every']:,} docs; peak RSS (VmHWM) {fmt(result['peak_rss_mb'])} MB; RSS "
        f"after loading {fmt(result['rss_loaded_mb'])} MB.",
        "",
        f"Model: `{result['model']}`; texts: {result['texts']}; nlp.pipe batch size "
        f"{result['batch_size']}; {fmt(result['docs_per_s'])} docs/s overall.",
        "",
        run_footer(result),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="pipeline directory (spacy.load)")
    parser.add_argument("--docs", type=int, default=100_000, help="docs to push through nlp.pipe")
    parser.add_argument("--every", type=int, default=10_000, help="docs between RSS readings")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help=".spacy file of sentences")
    parser.add_argument("--batch-size", type=int, default=None, help="nlp.pipe batch size")
    parser.add_argument("--max-growth", type=float, default=5.0, help="%% growth that fails")
    parser.add_argument("--out", default="results/memory", help="folder for memory.json/.md")
    args = parser.parse_args(argv)
    model = project_path(args.model)
    corpus = project_path(args.corpus)
    out = project_path(args.out)
    if not model.exists():
        print(f"No pipeline at {model}: train one first (spacy project run train) or pass --model.")
        return 2
    if args.every < 1 or args.docs < 2 * args.every:
        print(f"--docs ({args.docs}) must be at least twice --every ({args.every}): the first "
              f"{args.every} docs are the warm-up.")
        return 2

    found = corpus_texts(corpus)
    if found is not None and found[0]:
        texts, source = found[0], f"{corpus} ({len(found[0]):,} sentences, cycled)"
    else:
        texts = generated_texts(5000, 0, seed=0)[0]
        source = f"5,000 generated sentences, cycled ({corpus} not found)"

    import spacy

    start = time.perf_counter()
    nlp = spacy.load(model)
    batch_size = args.batch_size or nlp.batch_size
    gc.collect()
    rss_loaded = rss_kb(os.getpid())
    print(f"loaded {model} in {time.perf_counter() - start:.1f} s, RSS {mb(rss_loaded)} MB; "
          f"{args.docs:,} docs from {source}, batch size {batch_size}")

    pid = os.getpid()
    checkpoints: List[Dict[str, Any]] = []
    interactive = sys.stdout.isatty()
    t0 = time.perf_counter()
    n_docs = n_tokens = 0
    for doc in nlp.pipe(islice(cycle(texts), args.docs), batch_size=batch_size):
        n_docs += 1
        n_tokens += len(doc)
        del doc
        if interactive and n_docs % 500 == 0:
            elapsed = time.perf_counter() - t0
            print(f"\r  {n_docs:,}/{args.docs:,} docs, {elapsed:.0f} s, "
                  f"{n_docs / elapsed:.0f} docs/s", end="", flush=True)
        if n_docs % args.every == 0 or n_docs == args.docs:
            gc.collect()
            elapsed = time.perf_counter() - t0
            point = {
                "docs": n_docs,
                "seconds": round(elapsed, 1),
                "docs_per_s": round(n_docs / elapsed, 1),
                "rss_mb": mb(rss_kb(pid)),
                "strings": len(nlp.vocab.strings),
            }
            checkpoints.append(point)
            print(("\r" if interactive else "") + f"{n_docs:>9,} docs {elapsed:8.1f} s "
                  f"{point['docs_per_s']:7.1f} docs/s  RSS {point['rss_mb']:8.1f} MB  "
                  f"strings {point['strings']:,}", flush=True)
    elapsed = time.perf_counter() - t0

    warm, end = checkpoints[0], checkpoints[-1]
    growth = round(100 * (end["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"], 2)
    passed = growth < args.max_growth
    result = {
        "command": command_line("memory_run.py", argv if argv is not None else sys.argv[1:]),
        "model": args.model,
        "texts": source,
        "docs": n_docs,
        "tokens": n_tokens,
        "every": args.every,
        "batch_size": batch_size,
        "warmup_docs": warm["docs"],
        "seconds": round(elapsed, 1),
        "docs_per_s": round(n_docs / elapsed, 1),
        "rss_loaded_mb": mb(rss_loaded),
        "rss_after_warmup_mb": warm["rss_mb"],
        "rss_end_mb": end["rss_mb"],
        "peak_rss_mb": mb(rss_kb(pid, "VmHWM")),
        "growth_percent": growth,
        "slope_mb_per_every_after_warmup": slope_mb_per(checkpoints, args.every),
        "max_growth_percent": args.max_growth,
        "passed": passed,
        "checkpoints": checkpoints,
        "machine": machine_info(),
    }
    write_result(out, "memory", result, markdown(result))
    print(f"wrote {out / 'memory.json'} and {out / 'memory.md'}")
    if not passed:
        print(f"FAILED: RSS grew {growth} % after the warm-up (limit {args.max_growth} %).")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
