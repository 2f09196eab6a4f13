"""Load test of the served pipeline: concurrent requests must give exactly the
answers of sequential nlp() calls, and bad requests must get a 4xx answer.

    python scripts/loadtest/loadtest.py --model training/ner/model-best [--requests 2000]
        [--clients 16] [--threads 4] [--torch-threads N] [--out results/loadtest] [--timeout 1200]

1. Starts the server (`python -m spacy_tokclf.serve MODEL`) as a subprocess on
   127.0.0.1 and a free port, and waits for GET /health.
2. Meanwhile, in this process, loads the same pipeline and annotates each
   distinct text once with nlp(), one after another: the reference answers.
3. Sends --requests POST /annotate requests from --clients concurrent clients
   (httpx, asyncio). Texts are drawn at random (--seed) from --distinct texts:
   sentences and whole documents of --corpus (CoNLL-2003 dev) if it exists,
   else generated texts, plus a few edge cases (empty, whitespace, emoji, CJK).
   Mixed in at random positions are --bad-each requests of each bad kind
   (missing text, non-string text, a 1 MB text, invalid JSON, invalid UTF-8,
   JSON nested 100,000 deep).
4. Compares every good answer with the reference: the same entities (offsets,
   labels, scores within 1e-5), tags and token count.

Reports requests/s, latency percentiles of the good requests, errors (answers
other than 200), mismatches, unanswered requests (no answer before --timeout,
or a broken connection), the status codes of the bad requests and the server's
resident memory (VmRSS) before and after the load, and its peak (VmHWM).
Writes loadtest.json and loadtest.md to --out. Exits 1 on any mismatch, error,
unanswered request or bad request not answered with 4xx; 2 if the server or
the pipeline cannot be started.

The texts are made in scripts/loadtest/texts.py, the requests sent and
checked in scripts/loadtest/client.py.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import project_path
from loadtest.client import (
    SCORE_TOLERANCE,
    check,
    failures_of,
    make_plan,
    reference_answers,
    send_all,
)
from loadtest.texts import pick_texts
from run_info import command_line, fmt, machine_info, mb, rss_kb, run_footer, write_result

DEFAULT_MODEL = "training/ner/model-best"
DEFAULT_CORPUS = "corpus/conll_dev.spacy"


# Server ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    model: str,
    port: int,
    threads: int,
    log_path: Path,
    max_chars: Optional[int] = None,
    extra: Sequence[str] = (),
    launcher: Sequence[str] = ("-m", "spacy_tokclf.serve"),
) -> subprocess.Popen:
    """`python -m spacy_tokclf.serve MODEL` on 127.0.0.1:port, output to
    log_path. `extra`: more options of the server; `launcher`: what follows
    `python` in place of `-m spacy_tokclf.serve` (a test's `-c CODE` that
    imports its own components first)."""
    cmd = [
        sys.executable, *launcher, str(model), "--host", "127.0.0.1",
        "--port", str(port), "--threads", str(threads), "--log-level", "warning", *extra,
    ]
    if max_chars is not None:
        cmd += ["--max-chars", str(max_chars)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()


def wait_healthy(url: str, proc: subprocess.Popen, deadline: float) -> Dict[str, Any]:
    """GET /health until it answers 200; raise if the server exits or the
    deadline passes first."""
    import httpx

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering")
        try:
            response = httpx.get(f"{url}/health", timeout=2.0)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError("the server did not answer GET /health before the deadline")


def health_after(url: str) -> Optional[Dict[str, Any]]:
    """GET /health once; None if it does not answer 200."""
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=10.0)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# Report ----------------------------------------------------------------------


def markdown(result: Dict[str, Any]) -> str:
    s, rss = result["summary"], result["server_rss_mb"]
    lat = s["latency_ms"]
    lines = [
        "| requests | clients | server threads (most nlp() calls at once) | torch threads | requests/s | tokens/s | p50 ms | p95 ms | p99 ms "
        "| errors | mismatches | unanswered | bad requests 4xx | server RSS start MB "
        "| server RSS end MB | server peak RSS MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
        f"| {fmt(result['requests_sent'])} | {result['clients']} "
        f"| {result['server_threads']} ({fmt(result['server_most_concurrent_nlp_calls'])} at once) "
        f"| {result.get('server_torch_threads') or 'torch default'} "
        f"| {fmt(result['requests_per_s'])} | {fmt(result['tokens_per_s'], 0)} | {fmt(lat['p50'])} "
        f"| {fmt(lat['p95'])} | {fmt(lat['p99'])} | {s['errors']} | {s['mismatches']} "
        f"| {s['unanswered']} "
        f"| {sum(k['sent'] for k in s['bad_requests'].values()) - s['bad_not_4xx']}"
        f"/{sum(k['sent'] for k in s['bad_requests'].values())} "
        f"| {fmt(rss['start'])} | {fmt(rss['end'])} | {fmt(rss['peak'])} |",
        "",
        "| bad request | sent | expected | answered |",
        "| --- | ---: | ---: | --- |",
    ]
    for kind, k in s["bad_requests"].items():
        answered = ", ".join(f"{code} x{n}" for code, n in sorted(k["statuses"].items()))
        lines.append(f"| {kind} | {k['sent']} | {k['expected_status']} | {answered} |")
    lines += [
        "",
        f"Model: `{result['model']}`; texts: {result['texts']}; {result['distinct_texts']} distinct "
        f"texts, {s['good_sent']:,} good requests compared with sequential nlp() (scores within "
        f"{SCORE_TOLERANCE:g}). {'PASSED' if result['passed'] else 'FAILED: ' + '; '.join(result['failures'])}.",
        "",
        run_footer(result),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="pipeline directory (spacy.load)")
    parser.add_argument("--requests", type=int, default=2000, help="good requests to send")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=4, help="server: nlp() calls at once")
    parser.add_argument(
        "--torch-threads", type=int, default=None, help="server: torch threads (default: torch's)"
    )
    parser.add_argument("--out", default="results/loadtest", help="folder for loadtest.json/.md")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help=".spacy file of texts, if it exists")
    parser.add_argument("--distinct", type=int, default=400, help="distinct texts to draw from")
    parser.add_argument("--bad-each", type=int, default=4, help="bad requests of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    start = time.monotonic()
    deadline = start + args.timeout
    model = project_path(args.model)
    corpus = project_path(args.corpus)
    out = project_path(args.out)
    if not model.exists():
        print(f"No pipeline at {model}: train one first (spacy project run train) or pass --model.")
        return 2

    texts, source = pick_texts(corpus, args.distinct, args.seed)
    plan = make_plan(texts, args.requests, args.bad_each, args.seed)
    used = sorted({r.text for r in plan if r.text is not None}, key=texts.index)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkstemp(prefix="loadtest_server_", suffix=".log")[1])
    extra = [] if args.torch_threads is None else ["--torch-threads", str(args.torch_threads)]
    proc = start_server(str(model), port, args.threads, log_path, extra=extra)
    print(f"server pid {proc.pid} on {url}, log {log_path}")
    try:
        # The reference is computed while the server loads, and before the load.
        t0 = time.perf_counter()
        references = reference_answers(str(model), used)
        reference_s = time.perf_counter() - t0
        print(f"reference: {len(used)} distinct texts through nlp() one by one in {reference_s:.1f} s")
        health = wait_healthy(url, proc, deadline)
    except Exception as err:
        stop_server(proc)
        print(f"Cannot start the load test: {err}\n--- server log ---\n{log_tail(log_path)}")
        return 2
    rss_start = rss_kb(proc.pid)
    print(f"server up: {health}; RSS {mb(rss_start)} MB; sending {len(plan):,} requests "
          f"({args.requests:,} good) from {args.clients} clients")
    t0 = time.perf_counter()
    max_in_flight = send_all(url, plan, args.clients, deadline)
    load_s = time.perf_counter() - t0
    rss_end, rss_peak = rss_kb(proc.pid), rss_kb(proc.pid, "VmHWM")
    health_end = health_after(url)
    alive = proc.poll() is None
    stop_server(proc)

    summary = check(plan, references)
    failures = failures_of(summary)
    if not alive:
        failures.append(f"the server exited during the load (code {proc.returncode})")
    most_running = (health_end or {}).get("nlp_calls", {}).get("most_running")
    if health_end is None:
        failures.append("the server did not answer GET /health after the load")
    elif args.clients > 1 and args.threads > 1 and args.requests > 1 and (most_running or 0) < 2:
        failures.append(
            f"the server never ran two nlp() calls at once (most: {most_running}): "
            f"concurrency was not tested"
        )
    answered = sum(1 for r in plan if r.status is not None)
    result = {
        "command": command_line("loadtest/loadtest.py", argv if argv is not None else sys.argv[1:]),
        "model": args.model,
        "texts": source,
        "distinct_texts": len(used),
        "requests_planned": len(plan),
        "requests_sent": sum(1 for r in plan if not (r.error or "").startswith("not sent")),
        "requests_answered": answered,
        "clients": args.clients,
        "server_threads": args.threads,
        "server_torch_threads": args.torch_threads,
        "max_in_flight": max_in_flight,
        "server_most_concurrent_nlp_calls": most_running,
        "server_nlp_calls": (health_end or {}).get("nlp_calls"),
        "load_s": round(load_s, 2),
        "reference_s": round(reference_s, 2),
        "requests_per_s": round(answered / load_s, 2) if load_s else None,
        "tokens_per_s": round(summary["tokens_answered"] / load_s, 1) if load_s else None,
        "server_rss_mb": {"start": mb(rss_start), "end": mb(rss_end), "peak": mb(rss_peak)},
        "server_alive_at_end": alive,
        "summary": summary,
        "passed": not failures,
        "failures": failures,
        "machine": machine_info(),
    }
    write_result(out, "loadtest", result, markdown(result), ensure_ascii=False)
    for example in summary["mismatch_examples"] + summary["error_examples"] + summary["unanswered_examples"]:
        print("  ", example)
    if failures:
        print(f"FAILED: {'; '.join(failures)}\n--- server log (end) ---\n{log_tail(log_path)}")
    else:
        log_path.unlink(missing_ok=True)
    print(f"wrote {out / 'loadtest.json'} and {out / 'loadtest.md'} ({time.monotonic() - start:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
