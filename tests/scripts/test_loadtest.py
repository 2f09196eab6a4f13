"""The load test (scripts/loadtest/loadtest.py, client.py, texts.py):
concurrent requests on one served pipeline (the real server, spacy_tokclf.serve)
must give the answers of sequential nlp() calls, bad requests a 4xx with a
message, and the load test's own checks must find each kind of difference."""
import json
import time

import pytest
import spacy
from loadtest.client import (
    BAD_REQUESTS,
    check,
    compare_answers,
    failures_of,
    make_plan,
    percentile,
    send_all,
)
from loadtest.loadtest import free_port, health_after, log_tail, start_server, stop_server, wait_healthy
from loadtest.texts import EDGE_TEXTS

from spacy_tokclf.serve import Annotator

from ..util import TEXTS, TRAIN_DATA


def request_texts(n: int = 60):
    """Sentences, pairs and long runs of the test texts (the long ones are read
    in several windows), and the load test's edge cases."""
    import random

    base = [text for text, _ in TRAIN_DATA] + TEXTS
    rng = random.Random(0)
    texts = [" ".join(rng.choice(base) for _ in range(1 if i % 3 else rng.randint(2, 12))) for i in range(n)]
    return list(dict.fromkeys(texts + EDGE_TEXTS))


@pytest.fixture(scope="module")
def served(tagging_nlp, tmp_path_factory):
    """The real server (uvicorn, a subprocess) on 127.0.0.1 and a free port,
    serving the saved tagging_nlp with 4 threads."""
    root = tmp_path_factory.mktemp("served")
    model = root / "pipeline"
    tagging_nlp.to_disk(model)
    port = free_port()
    log = root / "server.log"
    proc = start_server(str(model), port, threads=4, log_path=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, time.monotonic() + 90)
    except RuntimeError as err:
        stop_server(proc)
        pytest.fail(f"{err}\n{log_tail(log)}")
    yield url, proc, spacy.load(model), log
    stop_server(proc)


# The real server, under load -----------------------------------------------------------


def test_concurrent_requests_equal_sequential_nlp(served):
    url, proc, nlp, log = served
    texts = request_texts()
    references = {text: Annotator(nlp)(text) for text in texts}
    assert any(r["entities"] for r in references.values())
    assert all("tags" in r for r in references.values())
    plan = make_plan(texts, n_good=200, bad_each=3, seed=0)
    most_in_flight = send_all(url, plan, clients=8, deadline=time.monotonic() + 60)
    summary = check(plan, references)
    health = health_after(url)
    details = json.dumps(
        {k: summary[k] for k in ("mismatch_examples", "error_examples", "unanswered_examples")}
    )
    assert summary["good_sent"] == 200
    assert summary["unanswered"] == 0, details + log_tail(log)
    assert summary["errors"] == 0, details + log_tail(log)
    assert summary["mismatches"] == 0, details
    assert summary["good_ok"] == 200
    # Each bad kind got exactly its 4xx, with a message, and the good requests
    # around it were answered as above.
    for kind, (_, status) in BAD_REQUESTS.items():
        got = summary["bad_requests"][kind]
        assert got["statuses"] == {str(status): 3}, (kind, got)
        assert got["with_error_message"] == 3, (kind, got)
    assert summary["bad_not_4xx"] == 0
    # The requests overlapped, on the client and in the server's threads.
    assert most_in_flight > 1
    assert health is not None and health["nlp_calls"]["most_running"] >= 2
    assert proc.poll() is None


def test_bad_requests_do_not_disturb_good_ones_sent_beside_them(served):
    """Only bad requests in flight beside a few good ones: all answered."""
    url, proc, nlp, _ = served
    texts = [text for text, _ in TRAIN_DATA]
    references = {text: Annotator(nlp)(text) for text in texts}
    plan = make_plan(texts, n_good=10, bad_each=6, seed=1)
    send_all(url, plan, clients=8, deadline=time.monotonic() + 60)
    summary = check(plan, references)
    assert summary["good_ok"] == 10, summary
    assert summary["bad_not_4xx"] == 0, summary["bad_requests"]
    assert summary["unanswered"] == 0
    assert proc.poll() is None


# The load test's own checks can fail ---------------------------------------------------


def test_compare_answers_finds_each_kind_of_difference():
    want = {
        "entities": [{"start_char": 0, "end_char": 6, "label": "PER", "score": 0.5}],
        "tags": [{"start_char": 0, "end_char": 6, "tag": "NNP"}],
        "tokens": 1,
    }
    same = json.loads(json.dumps(want))
    assert compare_answers(want, same) is None
    near = json.loads(json.dumps(want))
    near["entities"][0]["score"] = 0.5 + 4e-6
    assert compare_answers(want, near) is None
    for change in (
        lambda a: a["entities"][0].update(score=0.5 + 2e-5),
        lambda a: a["entities"][0].update(label="LOC"),
        lambda a: a["entities"][0].update(end_char=5),
        lambda a: a["entities"].append(dict(a["entities"][0])),
        lambda a: a["tags"][0].update(tag="NN"),
        lambda a: a.pop("tags"),
        lambda a: a.update(tokens=2),
        lambda a: a["entities"][0].update(score=None),
    ):
        got = json.loads(json.dumps(want))
        change(got)
        assert compare_answers(want, got), got
    assert compare_answers(want, "Internal Server Error")


def test_check_counts_errors_mismatches_unanswered_and_bad_requests():
    texts = ["a", "b"]
    refs = {"a": {"entities": [], "tokens": 1}, "b": {"entities": [], "tokens": 1}}
    plan = make_plan(texts, n_good=4, bad_each=1, seed=0)
    good = [r for r in plan if r.kind == "good"]
    bad = [r for r in plan if r.kind != "good"]
    for r, (status, answer) in zip(
        good, [(200, {"entities": [], "tokens": 1}), (200, {"entities": [], "tokens": 2}), (500, {}), (None, None)]
    ):
        r.status, r.answer, r.latency_s = status, answer, 0.01
    for r in bad:
        r.status, r.answer = 422, {"error": "no"}
    bad[0].status = 200  # a bad request that was served
    summary = check(plan, refs)
    assert (summary["good_ok"], summary["mismatches"], summary["errors"], summary["unanswered"]) == (1, 1, 1, 1)
    assert summary["bad_not_4xx"] == 1
    assert len(failures_of(summary)) == 4
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
