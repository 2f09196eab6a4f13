"""The HTTP server (spacy_tokclf.serve).

The real server: uvicorn in a subprocess on 127.0.0.1 and a free port, spoken
to over HTTP with httpx, serving the trained tiny pipeline with one probe
component in front (written by the `served` fixture, imported by the server
before it starts): it logs each text it sees to a file, holds texts that
start with "HOLD" while a file exists (a slow model, on demand) and raises on
"BOOM". In process (Starlette's TestClient or make_app itself): the answer
format, each bad request's status, warm-up and eval mode, and the memory zone.
The load test's checks on the real server are in tests/scripts/test_loadtest.py.
"""
import importlib.util
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import httpx
import pytest
import spacy
from starlette.testclient import TestClient

from spacy_tokclf.errors import ServeErrors
from spacy_tokclf.serve import DEFAULT_MAX_CHARS, annotation, make_app

from .util import make_examples, make_nlp

NAME = "token_classifier"
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
MAX_CHARS = 1000
SECRET = "secret detail at /very/private/path"

PROBE = '''"""The test server's probe component (tests/test_serve.py)."""
import os
import time

from spacy.language import Language

HOLD = {hold!r}
CALLS = {calls!r}


@Language.component("serve_test_probe")
def serve_test_probe(doc):
    with open(CALLS, "a", encoding="utf8") as f:
        f.write(doc.text.replace("\\n", " ") + "\\n")
    if doc.text.startswith("HOLD"):
        deadline = time.monotonic() + 60
        while os.path.exists(HOLD) and time.monotonic() < deadline:
            time.sleep(0.02)
    if doc.text == "BOOM":
        raise RuntimeError({secret!r})
    return doc
'''


def novel_texts(n: int, seed: int) -> List[str]:
    """Texts of made-up words that no vocab holds."""
    import random

    rng = random.Random(seed)
    letters = "bcdfghjklmnpqrstvwxz"

    def word() -> str:
        return "".join(rng.choice(letters) + rng.choice("aeiou") for _ in range(rng.randint(3, 5)))

    return [f"{word().title()} {word().title()} visited {word().title()} with {word()} {word()}." for _ in range(n)]


# The real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tagging_nlp, tmp_path_factory):
    """uvicorn in a subprocess serving tagging_nlp behind the probe, with one
    thread, --max-queue 1, --max-chars 1000 and --body-timeout 3."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    from loadtest.loadtest import free_port, log_tail, start_server, stop_server, wait_healthy

    root = tmp_path_factory.mktemp("served")
    hold, calls = root / "hold", root / "calls.txt"
    code = root / "code"
    code.mkdir()
    (code / "serve_test_probe.py").write_text(
        PROBE.format(hold=str(hold), calls=str(calls), secret=SECRET), encoding="utf8"
    )
    spec = importlib.util.spec_from_file_location("serve_test_probe", code / "serve_test_probe.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    model = root / "served_model_dir"
    tagging_nlp.to_disk(model)
    nlp = spacy.load(model)
    nlp.add_pipe("serve_test_probe", first=True)
    nlp.to_disk(model)
    launcher = (
        "-c",
        f"import sys; sys.path.insert(0, {str(code)!r}); import serve_test_probe; "
        "from spacy_tokclf.serve import main; main()",
    )
    port = free_port()
    log = root / "server.log"
    options = ["--max-queue", "1", "--body-timeout", "3"]
    proc = start_server(str(model), port, 1, log, max_chars=MAX_CHARS, extra=options, launcher=launcher)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, time.monotonic() + 120)
    except RuntimeError as err:
        stop_server(proc)
        pytest.fail(f"{err}\n{log_tail(log)}")
    yield {"url": url, "proc": proc, "log": log, "hold": hold, "calls": calls, "root": root}
    stop_server(proc)


def health(server: Dict[str, Any]) -> Dict[str, Any]:
    response = httpx.get(server["url"] + "/health", timeout=10)
    assert response.status_code == 200
    return response.json()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def post_in_thread(server: Dict[str, Any], text: str, results: Dict[str, Any], timeout: float = 60) -> threading.Thread:
    def send() -> None:
        try:
            results[text] = httpx.post(server["url"] + "/annotate", json={"text": text}, timeout=timeout)
        except httpx.HTTPError as err:
            results[text] = err

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def test_health_shows_no_path_and_the_app_is_warm(served):
    answer = httpx.get(served["url"] + "/health", timeout=10)
    assert str(served["root"]) not in answer.text and "served_model_dir" not in answer.text
    got = answer.json()
    assert got["warmed_up"] is True and got["memory_zones"] is True
    assert got["max_queue"] == 1 and got["threads"] == 1
    # The warm-up call went through the pipeline before any request.
    assert served["calls"].read_text(encoding="utf8").strip()


@pytest.mark.parametrize(
    "body,status",
    [
        (b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),  # RecursionError in json.loads
        (b"[" * 6000 + b"]" * 6000, 400),
        (b'{"text": 1' + b"0" * 5000 + b"}", 400),  # an integer json.loads refuses
        (b'{"text": "Angela \xff Merkel"}', 400),
        (b'{"text": "Angela', 400),
        (b'{"text": ["Angela"]}', 422),
        (b'{"text": {"a": 1}}', 422),
        (b'"Angela Merkel"', 422),
    ],
)
def test_malformed_bodies_get_a_json_4xx(served, body, status):
    response = httpx.post(served["url"] + "/annotate", content=body, timeout=30)
    assert response.status_code == status, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]
    assert httpx.post(served["url"] + "/annotate", json={"text": "Paris."}, timeout=30).status_code == 200


def test_a_500_says_only_internal_error_and_the_log_has_the_details(served):
    response = httpx.post(served["url"] + "/annotate", json={"text": "BOOM"}, timeout=30)
    assert response.status_code == 500
    answer = response.json()
    assert set(answer) == {"error", "request_id"}
    assert answer["error"] == ServeErrors.ANSWER_INTERNAL
    assert SECRET not in response.text and "RuntimeError" not in response.text
    log = served["log"].read_text(encoding="utf8", errors="replace")
    assert SECRET in log and answer["request_id"] in log
    assert httpx.post(served["url"] + "/annotate", json={"text": "Paris."}, timeout=30).status_code == 200


def test_a_chunked_body_over_the_limit_is_not_read_to_its_end(served):
    """A chunked body (no Content-Length) that would be 256 MB: the server
    answers 413 and closes the connection after well under 16 MB."""
    sent = [0]

    def body():
        yield b'{"text": "'
        while sent[0] < 256 * 2**20:
            sent[0] += 2**16
            yield b"a" * 2**16

    start = time.monotonic()
    response = httpx.post(served["url"] + "/annotate", content=body(), timeout=60)
    assert response.status_code == 413
    assert sent[0] < 16 * 2**20, f"the client sent {sent[0]:,} bytes before the answer"
    assert response.headers.get("connection") == "close"
    assert response.json()["error"].startswith(ServeErrors.ANSWER_TOO_LONG.split("{")[0])
    assert time.monotonic() - start < 30
    # By its Content-Length, without reading it.
    big = httpx.post(served["url"] + "/annotate", content=b"a" * (2 * 2**20), timeout=60)
    assert big.status_code == 413 and big.json()["error"]


def test_a_body_that_does_not_arrive_gets_408(served):
    host, port = served["url"].rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(b"POST /annotate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"text\": ")
        start = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b'"error"' in answer
    assert time.monotonic() - start < 15


def test_beyond_max_queue_a_request_gets_503_with_retry_after(served):
    served["hold"].write_text("")
    results: Dict[str, Any] = {}
    threads = []
    try:
        threads.append(post_in_thread(served, "HOLD running", results))
        wait_for(lambda: health(served)["nlp_calls"]["running"] == 1, "the first call to run")
        threads.append(post_in_thread(served, "HOLD waiting", results))
        wait_for(lambda: health(served)["requests"]["waiting"] == 1, "the second request to wait")
        busy = httpx.post(served["url"] + "/annotate", json={"text": "Paris."}, timeout=30)
        assert busy.status_code == 503
        assert int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"].startswith(ServeErrors.ANSWER_QUEUE_FULL.split("{")[0])
        assert health(served)["requests"]["busy_503"] >= 1
    finally:
        served["hold"].unlink(missing_ok=True)
        for thread in threads:
            thread.join(60)
    assert results["HOLD running"].status_code == 200
    assert results["HOLD waiting"].status_code == 200
    assert httpx.post(served["url"] + "/annotate", json={"text": "Paris."}, timeout=30).status_code == 200


def test_a_request_whose_client_left_is_not_run(served):
    served["hold"].write_text("")
    results: Dict[str, Any] = {}
    threads = []
    left_before = health(served)["requests"]["left"]
    try:
        threads.append(post_in_thread(served, "HOLD running", results))
        wait_for(lambda: health(served)["nlp_calls"]["running"] == 1, "the first call to run")
        # This client gives up after 1 s, while its request waits for the thread.
        threads.append(post_in_thread(served, "Left behind by its client.", results, timeout=1.0))
        threads[-1].join(30)
        assert isinstance(results["Left behind by its client."], httpx.TimeoutException)
    finally:
        served["hold"].unlink(missing_ok=True)
        threads[0].join(60)
    assert results["HOLD running"].status_code == 200
    wait_for(lambda: health(served)["requests"]["left"] == left_before + 1, "the server to skip it")
    assert health(served)["nlp_calls"]["running"] == 0
    assert "Left behind by its client." not in served["calls"].read_text(encoding="utf8")


def test_the_vocab_does_not_grow_with_new_words(served):
    before = health(served)["vocab_strings"]
    for text in novel_texts(40, seed=1):
        assert httpx.post(served["url"] + "/annotate", json={"text": text}, timeout=30).status_code == 200
    assert health(served)["vocab_strings"] == before


# In process ------------------------------------------------------------------------------


def test_answer_format_matches_the_doc(tagging_nlp):
    client = TestClient(make_app(tagging_nlp))
    text = "Angela Merkel visited New York City in 2019. I like London and Paris."
    response = client.post("/annotate", json={"text": text})
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"entities", "tags", "tokens"}
    doc = tagging_nlp(text)
    group = doc.spans[NAME]
    scores = {(s.start_char, s.end_char, s.label_): sc for s, sc in zip(group, group.attrs["scores"])}
    assert [(e["start_char"], e["end_char"], e["label"]) for e in answer["entities"]] == [
        (e.start_char, e.end_char, e.label_) for e in doc.ents
    ]
    assert answer["entities"], "the trained pipeline finds entities here"
    for ent in answer["entities"]:
        assert ent["score"] == pytest.approx(scores[(ent["start_char"], ent["end_char"], ent["label"])], abs=1e-6)
        assert 0.0 <= ent["score"] <= 1.0
        assert text[ent["start_char"] : ent["end_char"]].strip()
    assert answer["tags"] == [
        {"start_char": t.idx, "end_char": t.idx + len(t.text), "tag": t.tag_} for t in doc
    ]
    assert answer["tokens"] == len(doc)
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["token_classifiers"] == {NAME: NAME}
    assert health["tags"] is True and health["max_chars"] == DEFAULT_MAX_CHARS


@pytest.mark.filterwarnings("ignore:.*W036")  # the ruler has no patterns at initialize
def test_answer_without_tags_and_entities_of_other_components(encoders):
    """No "tags" when nothing tags; an entity that no token_classifier
    predicted (an entity_ruler's) has score null; spans_key is followed."""
    nlp = make_nlp(encoders["wordpiece"], spans_key="scored")
    ruler = nlp.add_pipe("entity_ruler", first=True)
    nlp.initialize(lambda: make_examples(nlp))
    ruler.add_patterns([{"label": "PRODUCT", "pattern": "Zyxw"}])  # initialize clears them
    client = TestClient(make_app(nlp))
    answer = client.post("/annotate", json={"text": "Zyxw met Angela Merkel in Paris."}).json()
    assert "tags" not in answer
    assert answer["entities"][0] == {"start_char": 0, "end_char": 4, "label": "PRODUCT", "score": None}
    doc = nlp("Zyxw met Angela Merkel in Paris.")
    expected = annotation(doc, ["scored"], with_tags=False)
    assert answer == json.loads(json.dumps(expected))
    assert client.get("/health").json()["token_classifiers"] == {NAME: "scored"}


@pytest.mark.parametrize(
    "body,status,answer",
    [
        (b'{"text": "Angela', 400, ServeErrors.ANSWER_NOT_JSON),
        (b'{"text": "Angela \xff Merkel"}', 400, ServeErrors.ANSWER_NOT_UTF8),
        (b'{"text": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, ServeErrors.ANSWER_TOO_DEEP),
        (b'{"text": 1' + b"0" * 5000 + b"}", 400, ServeErrors.ANSWER_BAD_NUMBER),
        (b'{"txt": "Angela Merkel"}', 422, ServeErrors.ANSWER_NO_TEXT),
        (b'["Angela Merkel"]', 422, ServeErrors.ANSWER_NO_TEXT),
        (b'{"text": 42}', 422, ServeErrors.ANSWER_TEXT_NOT_STR),
        (b'{"text": null}', 422, ServeErrors.ANSWER_TEXT_NOT_STR),
        (b'{"text": "\\ud800 lone surrogate"}', 422, ServeErrors.ANSWER_SURROGATE),
        (json.dumps({"text": "a" * 101}).encode(), 413, ServeErrors.ANSWER_TOO_LONG),
        # Longer than any body of a valid text: given up on while it is read.
        (json.dumps({"text": "a" * 6000}).encode(), 413, ServeErrors.ANSWER_TOO_LONG),
    ],
)
def test_bad_request_gets_its_status_and_a_message(tagging_nlp, body, status, answer):
    client = TestClient(make_app(tagging_nlp, max_chars=100))
    response = client.post("/annotate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    # The answer's text up to its first field.
    assert response.json()["error"].startswith(answer.split("{")[0])
    # The app still answers good requests after it.
    good = client.post("/annotate", json={"text": "a" * 100})
    assert good.status_code == 200 and good.json()["tokens"] == 1


def test_empty_text_and_method(tagging_nlp):
    client = TestClient(make_app(tagging_nlp))
    assert client.post("/annotate", json={"text": ""}).json() == {"entities": [], "tags": [], "tokens": 0}
    assert client.get("/annotate").status_code == 405


@pytest.mark.parametrize(
    "setting", [{"max_chars": 0}, {"threads": 0}, {"max_queue": -1}, {"body_timeout": 0}, {"zone_calls": 0}]
)
def test_bad_settings_are_refused_by_name(tagging_nlp, setting):
    with pytest.raises(ValueError, match=f"`{next(iter(setting))}`"):
        make_app(tagging_nlp, **setting)


def test_make_app_returns_a_warm_app_in_eval_mode(encoders):
    """One call through the pipeline and the encoder in eval mode before
    make_app returns, so that no two threads race on a first call."""
    from spacy.language import Language

    calls: List[str] = []

    @Language.component("serve_test_counter")
    def counter(doc):
        calls.append(doc.text)
        return doc

    nlp = make_nlp(encoders["wordpiece"])
    nlp.initialize(lambda: make_examples(nlp))
    nlp.add_pipe("serve_test_counter")
    module = nlp.get_pipe(NAME).model.get_ref("tok2vec").shims[0].piece_encoder
    module.train()  # as after an update, or a pipeline built from its config
    make_app(nlp)
    assert len(calls) == 1
    assert not module.training


def test_the_vocab_does_not_grow_with_new_words_in_process(tagging_nlp):
    client = TestClient(make_app(tagging_nlp))
    before = len(tagging_nlp.vocab.strings)
    for text in novel_texts(30, seed=2):
        assert client.post("/annotate", json={"text": text}).status_code == 200
    assert len(tagging_nlp.vocab.strings) == before


def test_threads_share_memory_zones_and_get_the_sequential_answers(tagging_nlp):
    """nlp() calls in 6 threads at once, each inside the shared memory zone:
    the answers equal the sequential ones (no thread's strings are freed under
    another, nor by the rebuilds of the string store between zones), no string
    stays in the vocab, the zones do close under load (at most zone_calls
    calls in one) and the string store is rebuilt every compact_calls calls."""
    from concurrent.futures import ThreadPoolExecutor

    from spacy_tokclf.serve import Annotator

    texts = novel_texts(120, seed=3)
    annotator = Annotator(tagging_nlp, zone_calls=5, compact_calls=20)
    expected = [annotator(text) for text in texts]
    before = len(tagging_nlp.vocab.strings)
    assert annotator.zone is not None
    closed, compactions = annotator.zone.closed, annotator.zone.compactions
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(annotator, texts))
    assert got == expected
    assert annotator.most_running >= 2
    assert len(tagging_nlp.vocab.strings) == before
    assert annotator.zone.closed - closed >= len(texts) // 5
    assert annotator.zone.compactions - compactions >= len(texts) // 20 - 1
    assert [annotator(text) for text in texts[:10]] == expected[:10]
