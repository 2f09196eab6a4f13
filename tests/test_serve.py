"""The HTTP server (spacy_tokclf.serve), in process: the answer format, and
bad requests get a 4xx with a message. The real server under concurrent load
is tested with the load test's checks in tests/scripts/test_loadtest.py."""
import json

import pytest
from starlette.testclient import TestClient

from spacy_tokclf.errors import ServeErrors
from spacy_tokclf.serve import DEFAULT_MAX_CHARS, annotation, make_app

from .util import make_examples, make_nlp

NAME = "token_classifier"


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
