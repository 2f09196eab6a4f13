"""Sentence context (HFEncoder.v2 `context`): docs with sentence boundaries
are read sentence by sentence, each with up to `context` pieces of its
neighbours, in training and prediction alike."""
import itertools

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab

from spacy_tokclf.architectures import build_hf_encoder, build_hf_encoder_v2
from spacy_tokclf.layers.windows import sentence_windows

from .util import TRAIN_DATA

NAME = "token_classifier"


def check_windows(n, starts, context, window, stride):
    spans, owners = sentence_windows(n, starts, context=context, window=window, stride=stride)
    assert len(owners) == n
    assert all(0 <= s < e <= n and e - s <= window for s, e in spans)
    assert list(owners) == sorted(owners) and set(owners.tolist()) == set(range(len(spans)))
    for i in range(n):
        s, e = spans[owners[i]]
        assert s <= i < e
    bounds = list(zip(list(starts), list(starts[1:]) + [n]))
    for a, b in bounds:
        if b - a > window:
            continue
        # A sentence that fits is read whole, in one window...
        assert len(set(owners[a:b].tolist())) == 1
        s, e = spans[owners[a]]
        assert s <= a and b <= e
        if context == 0:
            assert (s, e) == (a, b)
            continue
        # ...with `context` pieces on each side, where the doc and window allow.
        want_left, want_right = min(context, a), min(context, n - b)
        if (b - a) + want_left + want_right <= window:
            assert a - s >= want_left and e - b >= want_right
        else:
            assert e - s == window
    return spans


@pytest.mark.parametrize("context", [0, 1, 3, 8, 15])
def test_sentence_windows_cover_every_sentence_with_its_context(context):
    rng = numpy.random.default_rng(0)
    for _ in range(300):
        n_sents = int(rng.integers(1, 12))
        lengths = rng.integers(1, 30, size=n_sents)
        starts = [0] + list(numpy.cumsum(lengths)[:-1])
        check_windows(int(lengths.sum()), starts, context, window=16, stride=12)


def test_sentences_share_windows_when_context_allows():
    # Ten 4-piece sentences, context 2, windows of 16: cores of 3 sentences
    # (12 pieces) plus 2 pieces each side; far fewer windows than sentences.
    spans = check_windows(40, list(range(0, 40, 4)), 2, window=16, stride=12)
    assert len(spans) < 10
    spans = check_windows(40, list(range(0, 40, 4)), 0, window=16, stride=12)
    assert len(spans) == 10


def words_doc(vocab, sentences):
    words = list(itertools.chain.from_iterable(sentences))
    sent_starts = []
    for sent in sentences:
        sent_starts += [True] + [False] * (len(sent) - 1)
    return Doc(vocab, words=words, sent_starts=sent_starts)


SENTENCES = [
    ["Angela", "Merkel", "visited", "New", "York", "City", "in", "2019", "."],
    ["I", "like", "London", "and", "Paris", "."],
    ["Apple", "Inc.", "is", "based", "in", "Cupertino", "."],
]


def test_context_zero_reads_each_sentence_alone(wordpiece):
    model = build_hf_encoder_v2(name=str(wordpiece), context=0)
    model.initialize()
    vocab = Vocab()
    (whole,) = model.predict([words_doc(vocab, SENTENCES)])
    alone = model.predict([Doc(vocab, words=sent) for sent in SENTENCES])
    numpy.testing.assert_allclose(whole, numpy.concatenate(alone), atol=1e-5)


def test_context_reads_the_neighbours(wordpiece):
    vocab = Vocab()
    doc = words_doc(vocab, SENTENCES)
    with_context = build_hf_encoder_v2(name=str(wordpiece), context=8)
    with_context.initialize()
    (vectors,) = with_context.predict([doc])
    alone = numpy.concatenate(with_context.predict([Doc(vocab, words=s) for s in SENTENCES]))
    # The middle sentence's vectors change with its neighbours in view.
    middle = slice(len(SENTENCES[0]), len(SENTENCES[0]) + len(SENTENCES[1]))
    assert not numpy.allclose(vectors[middle], alone[middle], atol=1e-4)
    # With room for all three sentences, context 8 reads the doc as one window,
    # as v1 (no sentences) does.
    v1 = build_hf_encoder(name=str(wordpiece))
    v1.shims[0].set_encoder(with_context.shims[0].piece_encoder, with_context.shims[0].tokenizer)
    v1.set_dim("nO", with_context.get_dim("nO"))
    (whole,) = v1.predict([doc])
    numpy.testing.assert_allclose(vectors, whole, atol=1e-5)


def test_without_sentence_boundaries_the_doc_is_read_whole(wordpiece):
    vocab = Vocab()
    words = list(itertools.chain.from_iterable(SENTENCES))
    model = build_hf_encoder_v2(name=str(wordpiece), context=0)
    model.initialize()
    (no_sents,) = model.predict([Doc(vocab, words=words)])
    (with_sents,) = model.predict([words_doc(vocab, SENTENCES)])
    assert not numpy.allclose(no_sents, with_sents, atol=1e-4)
    v1 = build_hf_encoder(name=str(wordpiece))
    v1.shims[0].set_encoder(model.shims[0].piece_encoder, model.shims[0].tokenizer)
    v1.set_dim("nO", model.get_dim("nO"))
    (whole,) = v1.predict([words_doc(vocab, SENTENCES)])
    numpy.testing.assert_allclose(no_sents, whole, atol=1e-5)


def test_context_setting_is_checked():
    with pytest.raises(ValueError, match="model.tok2vec.context"):
        build_hf_encoder_v2(name="x", window=16, stride=8, context=16)
    with pytest.raises(ValueError, match="model.tok2vec.context"):
        build_hf_encoder_v2(name="x", context=-1)


def test_pipeline_with_sentencizer_trains_and_predicts_with_context(wordpiece):
    """The sentencizer runs in training too (annotating component), so the
    model is trained on the windows it predicts with."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe(
        NAME,
        config={
            "tasks": ["ents"],
            "model": {
                "tok2vec": {
                    "@architectures": "spacy-tokclf.HFEncoder.v2",
                    "name": str(wordpiece),
                    "window": 24,
                    "stride": 16,
                    "context": 4,
                }
            },
        },
    )
    # One training doc of several sentences: the sentences read each other.
    text = " ".join(t for t, _ in TRAIN_DATA)
    offsets = itertools.accumulate([0] + [len(t) + 1 for t, _ in TRAIN_DATA])
    entities = [
        (offset + s, offset + e, label)
        for offset, (_, annots) in zip(offsets, TRAIN_DATA)
        for s, e, label in annots["entities"]
    ]
    examples = [Example.from_dict(nlp.make_doc(text), {"entities": entities})]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(60):
        nlp.update(examples, sgd=optimizer, annotates=["sentencizer"])
    doc = nlp(text)
    assert len(list(doc.sents)) >= len(TRAIN_DATA)
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == entities
    # nlp.pipe equals nlp() in any batch size.
    piped = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe([text] * 3, batch_size=2)]
    assert piped == [[(e.start, e.end, e.label_) for e in doc.ents]] * 3
