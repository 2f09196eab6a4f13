"""The HTTP server (spacy_tokclf.serve) and the load test's checks
(scripts/loadtest.py): concurrent requests on one served pipeline must give
the answers of sequential nlp() calls, and bad requests a 4xx with a message."""
import json
import sys
import time
from pathlib import Path

import pytest
import spacy
from starlette.testclient import TestClient

from spacy_tokclf.errors import ServeErrors
from spacy_tokclf.serve import DEFAULT_MAX_CHARS, Annotator, annotation, make_app

from .util import TEXTS, TRAIN_DATA, make_examples, make_nlp, train

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import loadtest  # noqa: E402

NAME = "token_classifier"


def request_texts(n: int = 60):
    """Sentences, pairs and long runs of the test texts (the long ones are read
    in several windows), and the load test's edge cases."""
    import random

    base = [text for text, _ in TRAIN_DATA] + TEXTS
    rng = random.Random(0)
    texts = [" ".join(rng.choice(base) for _ in range(1 if i % 3 else rng.randint(2, 12))) for i in range(n)]
    return list(dict.fromkeys(texts + loadtest.EDGE_TEXTS))


@pytest.fixture(scope="module")
def tagging_nlp(encoders):
    """Trained ents + tag pipeline; the tiny encoder has dropout 0.1, so a
    prediction that ran in train mode would change the answers."""
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), 30)
    return nlp


@pytest.fixture(scope="module")
def served(tagging_nlp, tmp_path_factory):
    """The real server (uvicorn, a subprocess) on 127.0.0.1 and a free port,
    serving the saved tagging_nlp with 4 threads."""
    root = tmp_path_factory.mktemp("served")
    model = root / "pipeline"
    tagging_nlp.to_disk(model)
    port = loadtest.free_port()
    log = root / "server.log"
    proc = loadtest.start_server(str(model), port, threads=4, log_path=log)
    url = f"http://127.0.0.1:{port}"
    try:
        loadtest.wait_healthy(url, proc, time.monotonic() + 90)
    except RuntimeError as err:
        loadtest.stop_server(proc)
        pytest.fail(f"{err}\n{loadtest.log_tail(log)}")
    yield url, proc, spacy.load(model), log
    loadtest.stop_server(proc)


# The real server, under load -----------------------------------------------------------


def test_concurrent_requests_equal_sequential_nlp(served):
    url, proc, nlp, log = served
    texts = request_texts()
    references = {text: Annotator(nlp)(text) for text in texts}
    assert any(r["entities"] for r in references.values())
    assert all("tags" in r for r in references.values())
    plan = loadtest.make_plan(texts, n_good=200, bad_each=3, seed=0)
    most_in_flight = loadtest.send_all(url, plan, clients=8, deadline=time.monotonic() + 60)
    summary = loadtest.check(plan, references)
    health = loadtest.health_after(url)
    details = json.dumps(
        {k: summary[k] for k in ("mismatch_examples", "error_examples", "unanswered_examples")}
    )
    assert summary["good_sent"] == 200
    assert summary["unanswered"] == 0, details + loadtest.log_tail(log)
    assert summary["errors"] == 0, details + loadtest.log_tail(log)
    assert summary["mismatches"] == 0, details
    assert summary["good_ok"] == 200
    # Each bad kind got exactly its 4xx, with a message, and the good requests
    # around it were answered as above.
    for kind, (_, status) in loadtest.BAD_REQUESTS.items():
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
    plan = loadtest.make_plan(texts, n_good=10, bad_each=6, seed=1)
    loadtest.send_all(url, plan, clients=8, deadline=time.monotonic() + 60)
    summary = loadtest.check(plan, references)
    assert summary["good_ok"] == 10, summary
    assert summary["bad_not_4xx"] == 0, summary["bad_requests"]
    assert summary["unanswered"] == 0
    assert proc.poll() is None


# The app in process: answer format and bad requests -----------------------------------


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
        (b'{"txt": "Angela Merkel"}', 422, ServeErrors.ANSWER_NO_TEXT),
        (b'["Angela Merkel"]', 422, ServeErrors.ANSWER_NO_TEXT),
        (b'{"text": 42}', 422, ServeErrors.ANSWER_TEXT_NOT_STR),
        (b'{"text": null}', 422, ServeErrors.ANSWER_TEXT_NOT_STR),
        (b'{"text": "\\ud800 lone surrogate"}', 422, ServeErrors.ANSWER_SURROGATE),
        (json.dumps({"text": "a" * 101}).encode(), 413, ServeErrors.ANSWER_TOO_LONG),
        # Longer than any body of a valid text: not even kept in memory.
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


def test_pipeline_error_is_a_500_with_a_message_and_the_app_goes_on(tagging_nlp, monkeypatch):
    app = make_app(tagging_nlp)
    annotator = app.state.annotator
    real_nlp = annotator.nlp
    monkeypatch.setattr(annotator, "nlp", lambda text: 1 / 0 if text == "boom" else real_nlp(text))
    client = TestClient(app)
    response = client.post("/annotate", json={"text": "boom"})
    assert response.status_code == 500
    assert response.json()["error"] == ServeErrors.ANSWER_PIPELINE_FAILED.format(
        type="ZeroDivisionError", error="division by zero"
    )
    assert client.post("/annotate", json={"text": "Paris."}).status_code == 200
    assert annotator.running == 0


# The load test's own checks can fail ---------------------------------------------------


def test_compare_answers_finds_each_kind_of_difference():
    want = {
        "entities": [{"start_char": 0, "end_char": 6, "label": "PER", "score": 0.5}],
        "tags": [{"start_char": 0, "end_char": 6, "tag": "NNP"}],
        "tokens": 1,
    }
    same = json.loads(json.dumps(want))
    assert loadtest.compare_answers(want, same) is None
    near = json.loads(json.dumps(want))
    near["entities"][0]["score"] = 0.5 + 4e-6
    assert loadtest.compare_answers(want, near) is None
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
        assert loadtest.compare_answers(want, got), got
    assert loadtest.compare_answers(want, "Internal Server Error")


def test_check_counts_errors_mismatches_unanswered_and_bad_requests():
    texts = ["a", "b"]
    refs = {"a": {"entities": [], "tokens": 1}, "b": {"entities": [], "tokens": 1}}
    plan = loadtest.make_plan(texts, n_good=4, bad_each=1, seed=0)
    good = [r for r in plan if r.kind == "good"]
    bad = [r for r in plan if r.kind != "good"]
    for r, (status, answer) in zip(
        good, [(200, {"entities": [], "tokens": 1}), (200, {"entities": [], "tokens": 2}), (500, {}), (None, None)]
    ):
        r.status, r.answer, r.latency_s = status, answer, 0.01
    for r in bad:
        r.status, r.answer = 422, {"error": "no"}
    bad[0].status = 200  # a bad request that was served
    summary = loadtest.check(plan, refs)
    assert (summary["good_ok"], summary["mismatches"], summary["errors"], summary["unanswered"]) == (1, 1, 1, 1)
    assert summary["bad_not_4xx"] == 1
    assert len(loadtest.failures_of(summary)) == 4
    assert loadtest.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert loadtest.percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
