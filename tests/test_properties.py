"""Property-based tests: no generated text breaks the component.

Text is drawn from all of unicode plus the characters that break tokenizers
and aligners: control, zero-width and combining characters, emoji, CJK, very
long tokens and runs of whitespace. For every input the component must not
raise, must give every token a prediction for each task, and must write
entities that lie inside the doc, do not overlap and carry a score; results
must not depend on batching.
"""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .util import make_examples, make_nlp, train

NAME = "token_classifier"
SPECIAL_CHARS = [
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte order mark
    "\u0301",  # combining acute accent
    "\u0000",
    "\u0007",
    "\x85",
    "\u2028",  # line separator
    "\t",
    "\n",
    "\r",
    " ",
    "\u00a0",
    "😀",
    "👍🏽",
    "👩‍👩‍👧",
    "東",
    "京",
    "서",
    "é",
    "ß",
    "İ",
    "-",
    ".",
    "'",
]
pieces = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(SPECIAL_CHARS),
    st.sampled_from(["Angela", "Merkel", "New", "York", "London", "Apple", "Inc."]),
    st.text(alphabet="abcdefghij", min_size=60, max_size=300),  # very long tokens
    st.text(alphabet=" \t\n", min_size=1, max_size=8),  # whitespace runs
)
texts = st.lists(pieces, min_size=0, max_size=40).map(" ".join)
SETTINGS = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def nlp(encoders):
    """A trained pipeline with both tasks and a small window, so that
    generated texts of a few hundred pieces are cut into several windows."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    nlp = make_nlp(
        encoders["wordpiece"], tasks=["ents", "tag"], tok2vec={"window": 24, "stride": 16}
    )
    train(nlp, make_examples(nlp), 30)
    yield nlp
    torch.set_num_threads(n_threads)


def check_doc(doc) -> None:
    """Every token tagged, entities inside the doc, disjoint and scored."""
    probs = doc._.tokclf_probs[NAME]
    assert len(probs["tag"]) == len(probs["ents"]) == len(doc)
    assert all(0.0 <= p <= 1.0 for task in probs.values() for p in task)
    assert all(token.tag_ for token in doc)
    assert all(token.ent_iob_ in ("B", "I", "O") for token in doc)
    group = doc.spans[NAME]
    scores = group.attrs["scores"]
    assert len(scores) == len(group)
    assert all(0.0 <= s <= 1.0 for s in scores)
    covered = set()
    for span in group:
        assert 0 <= span.start < span.end <= len(doc)
        tokens = set(range(span.start, span.end))
        assert not tokens & covered, "overlapping entities"
        covered |= tokens
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [
        (s.start, s.end, s.label_) for s in group
    ]


def assert_same(docs, expected_docs) -> None:
    """Entities and tags exactly; scores to 1e-4 (padding changes the float
    summation order, not the result)."""
    docs, expected_docs = list(docs), list(expected_docs)
    assert len(docs) == len(expected_docs)
    for doc, expected in zip(docs, expected_docs):
        assert doc.text == expected.text
        assert [(e.start, e.end, e.label_) for e in doc.ents] == [
            (e.start, e.end, e.label_) for e in expected.ents
        ]
        assert [t.tag_ for t in doc] == [t.tag_ for t in expected]
        assert doc.spans[NAME].attrs["scores"] == pytest.approx(
            expected.spans[NAME].attrs["scores"], abs=1e-4
        )


@SETTINGS
@given(text=texts)
def test_any_text_gets_full_valid_predictions(nlp, text):
    check_doc(nlp(text))


@SETTINGS
@given(batch=st.lists(texts, min_size=1, max_size=6), batch_size=st.integers(1, 4))
def test_pipe_equals_call_in_any_batching_and_order(nlp, batch, batch_size):
    one_by_one = [nlp(text) for text in batch]
    assert_same(nlp.pipe(batch, batch_size=batch_size), one_by_one)
    reversed_piped = list(nlp.pipe(list(reversed(batch))))
    assert_same(reversed(reversed_piped), one_by_one)


def test_multiprocessing_gives_the_same_results(nlp):
    texts = [
        "Angela Merkel visited New York City in 2019.",
        "",
        "東京 \u200b 😀 " + "x" * 200,
        "I like London and Paris.",
    ] * 3
    assert_same(nlp.pipe(texts, n_process=2, batch_size=2), [nlp(text) for text in texts])
