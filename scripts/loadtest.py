"""Load test of the served pipeline: concurrent requests must give exactly the
answers of sequential nlp() calls, and bad requests must get a 4xx answer.

    python scripts/loadtest.py --model training/ner/model-best [--requests 2000]
        [--clients 16] [--threads 4] [--out results/loadtest] [--timeout 1200]

1. Starts the server (`python -m spacy_tokclf.serve MODEL`) as a subprocess on
   127.0.0.1 and a free port, and waits for GET /health.
2. Meanwhile, in this process, loads the same pipeline and annotates each
   distinct text once with nlp(), one after another: the reference answers.
3. Sends --requests POST /annotate requests from --clients concurrent clients
   (httpx, asyncio). Texts are drawn at random (--seed) from --distinct texts:
   sentences and whole documents of --corpus (CoNLL-2003 dev) if it exists,
   else generated texts, plus a few edge cases (empty, whitespace, emoji, CJK).
   Mixed in at random positions are --bad-each requests of each bad kind
   (missing text, non-string text, a 1 MB text, invalid JSON, invalid UTF-8).
4. Compares every good answer with the reference: the same entities (offsets,
   labels, scores within 1e-5), tags and token count.

Reports requests/s, latency percentiles of the good requests, errors (answers
other than 200), mismatches, unanswered requests (no answer before --timeout,
or a broken connection), the status codes of the bad requests and the server's
resident memory (VmRSS) before and after the load, and its peak (VmHWM).
Writes loadtest.json and loadtest.md to --out. Exits 1 on any mismatch, error,
unanswered request or bad request not answered with 4xx; 2 if the server or
the pipeline cannot be started.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "training/ner/model-best"
DEFAULT_CORPUS = "corpus/conll_dev.spacy"
SCORE_TOLERANCE = 1e-5
ONE_MB = 1_000_000

# Bad request kind -> (body, status the server answers with). The load test
# requires a 4xx; the exact code is reported beside the expected one.
BAD_REQUESTS: Dict[str, Tuple[bytes, int]] = {
    "missing_text": (b'{"txt": "Angela Merkel visited Paris."}', 422),
    "non_string_text": (b'{"text": ["Angela", "Merkel", "visited", "Paris"]}', 422),
    "text_1mb": (
        json.dumps({"text": ("Angela Merkel visited Paris. " * (ONE_MB // 29 + 1))[:ONE_MB]}).encode(),
        413,
    ),
    "invalid_json": (b'{"text": "Angela Merkel visited Paris."', 400),
    "invalid_utf8": (b'{"text": "Angela Merkel visited \xff\xfe Paris."}', 400),
}

# Texts real traffic holds now and then, sent as good requests.
EDGE_TEXTS = [
    "",
    "   ",
    "\n\n",
    "Hello 😀 world 👍🏽 from Angela Merkel",
    "東京 北京 서울 in Asia",
    "Café naïve résumé über façade",
    "a\tb\nc  d",
    "U.S.A. vs. U.K.: 3-2 (a.e.t.)",
]


# Machine, memory, texts ------------------------------------------------------


def rss_kb(pid: int, field: str = "VmRSS") -> Optional[int]:
    """A memory figure of a process from /proc/<pid>/status, in kB (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def mb(kb: Optional[int]) -> Optional[float]:
    return None if kb is None else round(kb / 1024, 1)


def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or "cpu"
    mem_kb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except (OSError, ValueError):
        pass
    versions = {}
    for name in ("spacy", "torch", "transformers", "tokenizers", "starlette", "uvicorn", "httpx"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True,
            text=True, timeout=10,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": None if mem_kb is None else round(mem_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
        "git_commit": commit,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def machine_line(info: Dict[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB; python {info['python']}, "
        f"torch {info['torch']}, transformers {info['transformers']}, spacy {info['spacy']}; "
        f"commit {info['git_commit']}; {info['date']}"
    )


def corpus_texts(path: Path) -> Optional[Tuple[List[str], List[str]]]:
    """(sentence texts, whole document texts) of a .spacy file; None if it
    does not exist. Sentences come from the docs' sentence boundaries."""
    if not path.exists():
        return None
    import spacy
    from spacy.tokens import DocBin

    docs = list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))
    sentences = [
        sent.text for doc in docs if doc.has_annotation("SENT_START") for sent in doc.sents
    ]
    documents = [doc.text for doc in docs]
    return [t for t in sentences if t.strip()], [t for t in documents if t.strip()]


_FIRST = ["Angela", "Barack", "Marie", "Kofi", "Ada", "Lionel", "Jacinda", "Olaf", "Yuki"]
_LAST = ["Merkel", "Obama", "Curie", "Annan", "Lovelace", "Messi", "Ardern", "Scholz", "Tanaka"]
_PLACES = ["Paris", "New York City", "Berlin", "Tokyo", "Nairobi", "Lima", "Oslo", "Sydney"]
_ORGS = ["Apple Inc.", "the United Nations", "Reuters", "FC Barcelona", "Siemens", "NASA"]
_MISC = ["German", "Olympic", "French", "Nobel", "World Cup", "Japanese"]
_TEMPLATES = [
    "{per} visited {loc} on Monday to meet officials of {org}.",
    "{org} said on Tuesday that {per} would lead the {misc} delegation in {loc}.",
    "Shares of {org} rose 3.5 percent in {loc} after {per} spoke.",
    "{per} ( {loc} ) beat {per2} 6-4 6-3 in the {misc} Open.",
    "In {loc}, {per} and {per2} signed the agreement with {org} .",
    "The {misc} team lost 2-1 to {org} in front of 40,000 fans in {loc}.",
]


def generated_texts(n_sentences: int, n_documents: int, seed: int) -> Tuple[List[str], List[str]]:
    """News-like sentences and documents of 10-60 of them, for when no corpus
    is there."""
    rng = random.Random(seed)

    def sentence() -> str:
        return rng.choice(_TEMPLATES).format(
            per=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            per2=rng.choice(_LAST),
            loc=rng.choice(_PLACES),
            org=rng.choice(_ORGS),
            misc=rng.choice(_MISC),
        )

    sentences = [sentence() for _ in range(n_sentences)]
    documents = [
        " ".join(sentence() for _ in range(rng.randint(10, 60))) for _ in range(n_documents)
    ]
    return sentences, documents


def pick_texts(corpus: Path, distinct: int, seed: int) -> Tuple[List[str], str]:
    """`distinct` texts: about 10 % whole documents, the edge cases, the rest
    sentences; and where they come from."""
    found = corpus_texts(corpus)
    n_docs = max(1, distinct // 10)
    if found is not None and found[0] and found[1]:
        sentences, documents = found
        source = f"{corpus} ({len(sentences):,} sentences, {len(documents):,} documents)"
    else:
        sentences, documents = generated_texts(2 * distinct, n_docs, seed)
        source = f"generated ({corpus} not found)"
    rng = random.Random(seed)
    n_docs = min(n_docs, len(documents))
    n_sents = min(max(0, distinct - n_docs - len(EDGE_TEXTS)), len(sentences))
    texts = rng.sample(documents, n_docs) + rng.sample(sentences, n_sents) + EDGE_TEXTS
    return list(dict.fromkeys(texts)), source


# Reference and comparison ----------------------------------------------------


def reference_answers(model: str, texts: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """The answer to each text from nlp(), one text after another."""
    import spacy

    from spacy_tokclf.serve import Annotator

    annotator = Annotator(spacy.load(model))
    return {text: annotator(text) for text in texts}


def compare_answers(expected: Dict[str, Any], got: Any) -> Optional[str]:
    """None if `got` is the expected answer (scores within SCORE_TOLERANCE);
    otherwise what differs first."""
    if not isinstance(got, dict):
        return f"the answer is not a JSON object: {str(got)[:80]}"
    if got.get("tokens") != expected["tokens"]:
        return f"tokens: expected {expected['tokens']}, got {got.get('tokens')}"
    exp_ents, got_ents = expected["entities"], got.get("entities")
    if not isinstance(got_ents, list) or len(got_ents) != len(exp_ents):
        n = len(got_ents) if isinstance(got_ents, list) else got_ents
        return f"entities: expected {len(exp_ents)}, got {n}"
    for i, (e, g) in enumerate(zip(exp_ents, got_ents)):
        if not isinstance(g, dict) or any(
            g.get(k) != e[k] for k in ("start_char", "end_char", "label")
        ):
            return f"entity {i}: expected {e}, got {g}"
        if (e["score"] is None) != (g.get("score") is None) or (
            e["score"] is not None
            and not (
                isinstance(g["score"], (int, float))
                and abs(g["score"] - e["score"]) <= SCORE_TOLERANCE
            )
        ):
            return f"entity {i} score: expected {e['score']}, got {g.get('score')}"
    if expected.get("tags", []) != got.get("tags", []):
        exp_tags, got_tags = expected.get("tags", []), got.get("tags", [])
        for i, (e, g) in enumerate(zip(exp_tags, got_tags)):
            if e != g:
                return f"tag {i}: expected {e}, got {g}"
        return f"tags: expected {len(exp_tags)}, got {len(got_tags)}"
    return None


# Server ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    model: str, port: int, threads: int, log_path: Path, max_chars: Optional[int] = None
) -> subprocess.Popen:
    """`python -m spacy_tokclf.serve MODEL` on 127.0.0.1:port, output to log_path."""
    cmd = [
        sys.executable, "-m", "spacy_tokclf.serve", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--threads", str(threads), "--log-level", "warning",
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


# Load ------------------------------------------------------------------------


@dataclass
class Request:
    index: int
    kind: str  # "good" or a key of BAD_REQUESTS
    body: bytes
    text: Optional[str] = None
    status: Optional[int] = None
    answer: Any = None
    error: Optional[str] = None  # no HTTP answer: broken connection, timeout, not sent
    latency_s: Optional[float] = None
    mismatch: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def make_plan(texts: Sequence[str], n_good: int, bad_each: int, seed: int) -> List[Request]:
    """n_good requests with texts drawn at random, and bad_each requests of
    each bad kind at random positions among them."""
    rng = random.Random(seed + 1)
    kinds = ["good"] * n_good + [kind for kind in BAD_REQUESTS for _ in range(bad_each)]
    rng.shuffle(kinds)
    plan = []
    for i, kind in enumerate(kinds):
        if kind == "good":
            text = rng.choice(texts)
            body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
            plan.append(Request(i, kind, body, text=text))
        else:
            plan.append(Request(i, kind, BAD_REQUESTS[kind][0]))
    return plan


async def _send_all(
    url: str, plan: List[Request], clients: int, deadline: float, request_timeout: float
) -> int:
    """Send the plan from `clients` concurrent clients; fill in each Request.
    RETURNS (int): the most requests in flight at once."""
    import httpx

    pending = iter(plan)
    in_flight = [0, 0]  # now, most
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: "httpx.AsyncClient") -> None:
        for request in pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                request.error = "not sent: --timeout reached"
                continue
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
            start = time.perf_counter()
            try:
                response = await client.post(
                    "/annotate", content=request.body, headers=headers,
                    timeout=min(request_timeout, remaining),
                )
                request.latency_s = time.perf_counter() - start
                request.status = response.status_code
                try:
                    request.answer = response.json()
                except ValueError:
                    request.answer = response.text[:200]
            except httpx.HTTPError as err:
                request.error = f"{type(err).__name__}: {err}"
            finally:
                in_flight[0] -= 1

    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    return in_flight[1]


def send_all(
    url: str, plan: List[Request], clients: int, deadline: float, request_timeout: float = 300.0
) -> int:
    """Synchronous wrapper of _send_all: the most requests in flight at once."""
    return asyncio.run(_send_all(url, plan, clients, deadline, request_timeout))


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank percentile, q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def check(plan: List[Request], references: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Compare the answers with the references; count what went wrong."""
    good = [r for r in plan if r.kind == "good"]
    for r in good:
        if r.status == 200:
            r.mismatch = compare_answers(references[r.text], r.answer)
    bad_kinds: Dict[str, Any] = {}
    for kind, (_, expected) in BAD_REQUESTS.items():
        sent = [r for r in plan if r.kind == kind]
        if not sent:
            continue
        statuses = Counter(str(r.status) if r.status is not None else "no answer" for r in sent)
        with_message = sum(
            1 for r in sent if isinstance(r.answer, dict) and str(r.answer.get("error", "")).strip()
        )
        failed = [
            r for r in sent
            if r.status is None or not 400 <= r.status < 500
            or not (isinstance(r.answer, dict) and r.answer.get("error"))
        ]
        bad_kinds[kind] = {
            "sent": len(sent),
            "expected_status": expected,
            "statuses": dict(statuses),
            "with_error_message": with_message,
            "not_4xx_with_message": len(failed),
            "example_message": next(
                (r.answer.get("error") for r in sent if isinstance(r.answer, dict)), None
            ),
        }
    latencies = [r.latency_s for r in good if r.status == 200 and r.latency_s is not None]
    mismatches = [r for r in good if r.mismatch]
    errors = [r for r in good if r.status is not None and r.status != 200]
    unanswered = [r for r in plan if r.status is None]
    return {
        "good_sent": len(good),
        "good_ok": sum(1 for r in good if r.status == 200 and not r.mismatch),
        "mismatches": len(mismatches),
        "errors": len(errors),
        "error_statuses": dict(Counter(str(r.status) for r in errors)),
        "unanswered": len(unanswered),
        "unanswered_good": sum(1 for r in unanswered if r.kind == "good"),
        "bad_requests": bad_kinds,
        "bad_not_4xx": sum(k["not_4xx_with_message"] for k in bad_kinds.values()),
        "latency_ms": {
            name: None if v is None else round(1000 * v, 1)
            for name, v in (
                ("p50", percentile(latencies, 50)),
                ("p95", percentile(latencies, 95)),
                ("p99", percentile(latencies, 99)),
                ("max", max(latencies) if latencies else None),
            )
        },
        "tokens_answered": sum(
            r.answer.get("tokens", 0) for r in good if r.status == 200 and isinstance(r.answer, dict)
        ),
        "mismatch_examples": [
            {"request": r.index, "text": r.text[:120], "difference": r.mismatch}
            for r in mismatches[:5]
        ],
        "error_examples": [
            {"request": r.index, "status": r.status, "answer": str(r.answer)[:200]}
            for r in errors[:5]
        ],
        "unanswered_examples": [
            {"request": r.index, "kind": r.kind, "error": r.error} for r in unanswered[:5]
        ],
    }


def failures_of(summary: Dict[str, Any]) -> List[str]:
    failures = []
    if summary["mismatches"]:
        failures.append(f"{summary['mismatches']} answers differ from sequential nlp()")
    if summary["errors"]:
        failures.append(f"{summary['errors']} good requests answered {summary['error_statuses']}")
    if summary["unanswered"]:
        failures.append(f"{summary['unanswered']} requests got no answer")
    if summary["bad_not_4xx"]:
        failures.append(f"{summary['bad_not_4xx']} bad requests not answered 4xx with a message")
    return failures


# Report ----------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(result: Dict[str, Any]) -> str:
    s, rss = result["summary"], result["server_rss_mb"]
    lat = s["latency_ms"]
    lines = [
        "| requests | clients | server threads (most nlp() calls at once) | requests/s | tokens/s | p50 ms | p95 ms | p99 ms "
        "| errors | mismatches | unanswered | bad requests 4xx | server RSS start MB "
        "| server RSS end MB | server peak RSS MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
        f"| {fmt(result['requests_sent'])} | {result['clients']} "
        f"| {result['server_threads']} ({fmt(result['server_most_concurrent_nlp_calls'])} at once) "
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
        f"Machine: {machine_line(result['machine'])}. Command: `{result['command']}`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="pipeline directory (spacy.load)")
    parser.add_argument("--requests", type=int, default=2000, help="good requests to send")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=4, help="server: nlp() calls at once")
    parser.add_argument("--out", default="results/loadtest", help="folder for loadtest.json/.md")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help=".spacy file of texts, if it exists")
    parser.add_argument("--distinct", type=int, default=400, help="distinct texts to draw from")
    parser.add_argument("--bad-each", type=int, default=4, help="bad requests of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    start = time.monotonic()
    deadline = start + args.timeout
    model = Path(args.model) if Path(args.model).is_absolute() else PROJECT / args.model
    corpus = Path(args.corpus) if Path(args.corpus).is_absolute() else PROJECT / args.corpus
    out = Path(args.out) if Path(args.out).is_absolute() else PROJECT / args.out
    if not model.exists():
        print(f"No pipeline at {model}: train one first (spacy project run train) or pass --model.")
        return 2

    texts, source = pick_texts(corpus, args.distinct, args.seed)
    plan = make_plan(texts, args.requests, args.bad_each, args.seed)
    used = sorted({r.text for r in plan if r.kind == "good"}, key=texts.index)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkstemp(prefix="loadtest_server_", suffix=".log")[1])
    proc = start_server(str(model), port, args.threads, log_path)
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
        "command": " ".join(["python", "scripts/loadtest.py"] + (argv if argv is not None else sys.argv[1:])),
        "model": args.model,
        "texts": source,
        "distinct_texts": len(used),
        "requests_planned": len(plan),
        "requests_sent": sum(1 for r in plan if not (r.error or "").startswith("not sent")),
        "requests_answered": answered,
        "clients": args.clients,
        "server_threads": args.threads,
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
    out.mkdir(parents=True, exist_ok=True)
    (out / "loadtest.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    (out / "loadtest.md").write_text(markdown(result), encoding="utf8")
    print(markdown(result))
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
