"""The requests of scripts/loadtest/loadtest.py and their check: the plan of good and
bad requests, sending it from concurrent clients, the reference answers of
sequential nlp() calls and the comparison of every answer with them."""
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    # Deeper than json.loads can go (RecursionError), well within the body limit.
    "nested_json": (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
}


# The plan and the load -------------------------------------------------------


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
        if r.status == 200 and r.text is not None:
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
            {"request": r.index, "text": (r.text or "")[:120], "difference": r.mismatch}
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
