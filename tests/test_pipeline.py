"""The token_classifier component end to end, on tiny random local encoders:
overfitting, confidence scores, batching, edge-case docs, `overwrite`,
missing annotation, errors, labels and the spacy-transformers listener.

Trained pipelines are cached per (family, tasks, scheme) for the module and
only read by the tests that share them; tests that update a model build
their own.
"""
import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import make_tempdir
from thinc.api import Adam, Model

from .util import (
    BUILDERS, LISTENER_TOK2VEC, TEXTS, TRAIN_DATA, make_examples, make_nlp, needs_listener, train,
)

NAME = "token_classifier"
FAMILIES = sorted(BUILDERS)
TASK_SETS = {"ents": ["ents"], "tag": ["tag"], "ents+tag": ["ents", "tag"]}
N_ITER = 60
ENT_TYPES = sorted({label for _, annots in TRAIN_DATA for *_, label in annots["entities"]})
TAGS = sorted({tag for _, annots in TRAIN_DATA for tag in annots["tags"]})

_TRAINED: Dict[Tuple[str, str, str], Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _drop_trained():
    """Cached pipelines are dropped with the module."""
    yield
    _TRAINED.clear()


def trained(encoders, family: str, tasks: List[str], scheme: str = "BIO"):
    """An overfit pipeline and its examples; trained once per module."""
    key = (family, ",".join(tasks), scheme)
    if key not in _TRAINED:
        nlp = make_nlp(encoders[family], tasks=tasks, scheme=scheme)
        examples = make_examples(nlp)
        losses = train(nlp, examples, N_ITER)
        _TRAINED[key] = (nlp, examples, losses)
    return _TRAINED[key]


@pytest.fixture(
    scope="module",
    params=[(f, t) for f in FAMILIES for t in TASK_SETS],
    ids=[f"{f}-{t}" for f in FAMILIES for t in TASK_SETS],
)
def overfit(request, encoders):
    family, task_set = request.param
    nlp, examples, _ = trained(encoders, family, TASK_SETS[task_set])
    return nlp, examples


@pytest.fixture(scope="module", params=FAMILIES)
def both(request, encoders):
    """Overfit with tasks ["ents", "tag"], each tokenizer family."""
    nlp, examples, _ = trained(encoders, request.param, ["ents", "tag"])
    return nlp, examples


@pytest.fixture(scope="module")
def wp_both(encoders):
    """Overfit wordpiece pipeline with tasks ["ents", "tag"]."""
    nlp, examples, _ = trained(encoders, "wordpiece", ["ents", "tag"])
    return nlp, examples


@pytest.fixture
def fresh(wordpiece):
    """An initialized, untrained wordpiece pipeline that tests may update."""
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    return nlp, examples, optimizer


# Helpers ------------------------------------------------------------------


def gold_ents(text: str, annots: dict) -> List[Tuple[str, str]]:
    return [(text[start:end], label) for start, end, label in annots["entities"]]


def predictions(doc, name: str = NAME) -> Dict[str, Any]:
    """Everything the component writes, in comparable form."""
    group = doc.spans[name] if name in doc.spans else None
    return {
        "ents": [(e.start, e.end, e.label_) for e in doc.ents],
        "tags": [t.tag_ for t in doc],
        "spans": [(s.start, s.end, s.label_) for s in group] if group is not None else None,
        "scores": list(group.attrs["scores"]) if group is not None else None,
        "probs": (doc._.tokclf_probs or {}).get(name),
    }


def assert_same_predictions(a: Dict[str, Any], b: Dict[str, Any], tol: float = 1e-5):
    assert a["ents"] == b["ents"]
    assert a["tags"] == b["tags"]
    assert a["spans"] == b["spans"]
    if a["scores"] is not None:
        numpy.testing.assert_allclose(a["scores"], b["scores"], atol=tol)
    assert (a["probs"] is None) == (b["probs"] is None)
    if a["probs"] is not None:
        assert sorted(a["probs"]) == sorted(b["probs"])
        for task in a["probs"]:
            numpy.testing.assert_allclose(a["probs"][task], b["probs"][task], atol=tol)


def all_texts() -> List[str]:
    return [text for text, _ in TRAIN_DATA] + TEXTS


def n_outputs(pipe) -> int:
    return sum(len(pipe.layout.output_labels(task)) for task in pipe.tasks)


def task_columns(pipe, task: str) -> slice:
    start = 0
    for t in pipe.tasks:
        n = len(pipe.layout.output_labels(t))
        if t == task:
            return slice(start, start + n)
        start += n
    raise KeyError(task)


def random_scores(docs, n_out: int, seed: int = 0) -> List[numpy.ndarray]:
    rng = numpy.random.RandomState(seed)
    return [rng.normal(size=(len(doc), n_out)).astype("float32") for doc in docs]


# Overfitting ----------------------------------------------------------------


def test_overfit_reproduces_gold(overfit):
    nlp, _ = overfit
    tasks = nlp.get_pipe(NAME).tasks
    for text, annots in TRAIN_DATA:
        doc = nlp(text)
        if "ents" in tasks:
            assert [(e.text, e.label_) for e in doc.ents] == gold_ents(text, annots)
        else:
            assert doc.ents == ()
        if "tag" in tasks:
            assert [t.tag_ for t in doc] == annots["tags"]
        else:
            assert all(t.tag_ == "" for t in doc)


def test_overfit_evaluate(overfit):
    nlp, examples = overfit
    tasks = nlp.get_pipe(NAME).tasks
    scores = nlp.evaluate(examples)
    if "ents" in tasks:
        assert scores["ents_f"] == 1.0
        assert scores["ents_p"] == 1.0
        assert scores["ents_r"] == 1.0
        assert sorted(scores["ents_per_type"]) == ENT_TYPES
        assert all(prf["f"] == 1.0 for prf in scores["ents_per_type"].values())
    else:
        assert "ents_f" not in scores and "ents_per_type" not in scores
    if "tag" in tasks:
        assert scores["tag_acc"] == 1.0
    else:
        assert "tag_acc" not in scores


def test_overfit_labels(overfit):
    nlp, _ = overfit
    pipe = nlp.get_pipe(NAME)
    expected = {"ents": ENT_TYPES, "tag": TAGS}
    assert pipe.label_data == {task: expected[task] for task in pipe.tasks}


@pytest.mark.parametrize("scheme", ["BIO", "BILUO", "IO"])
def test_schemes_learn(encoders, scheme):
    nlp, examples, _ = trained(encoders, "wordpiece", ["ents"], scheme)
    pipe = nlp.get_pipe(NAME)
    labels = pipe.layout.output_labels("ents")
    assert ("U-PER" in labels and "L-PER" in labels) == (scheme == "BILUO")
    assert (labels == ["O"] + [f"I-{t}" for t in ENT_TYPES]) == (scheme == "IO")
    for text, annots in TRAIN_DATA:
        doc = nlp(text)
        assert [(e.text, e.label_) for e in doc.ents] == gold_ents(text, annots)
    assert nlp.evaluate(examples)["ents_f"] == 1.0


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_hyphenated_labels_learn(wordpiece, scheme):
    """Entity types with hyphens (as in OntoNotes' WORK_OF_ART written with
    hyphens) survive the B-/I- prefixes end to end."""
    nlp = make_nlp(wordpiece, scheme=scheme)
    data = [
        ("I read Brave New World today.", [(7, 22, "WORK-OF-ART")]),
        ("She met John-Paul Smith there.", [(8, 23, "PER-NAME")]),
    ]
    examples = [
        Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in data
    ]
    train(nlp, examples, N_ITER)
    assert nlp.get_pipe(NAME).labels == ("PER-NAME", "WORK-OF-ART")
    for text, ents in data:
        doc = nlp(text)
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == ents


# Confidence -------------------------------------------------------------------


def check_confidence(doc, name: str, spans_key: str, tasks: List[str]) -> None:
    group = doc.spans[spans_key]
    spans = [(s.start, s.end, s.label_) for s in group]
    for ent in doc.ents:
        assert (ent.start, ent.end, ent.label_) in spans
    scores = group.attrs["scores"]
    assert len(scores) == len(group)
    assert all(0.0 <= score <= 1.0 for score in scores)
    probs = doc._.tokclf_probs[name]
    assert sorted(probs) == sorted(tasks)
    for task in tasks:
        assert len(probs[task]) == len(doc)
        assert all(0.0 <= p <= 1.0 for p in probs[task])


def test_confidence(both):
    nlp, _ = both
    n_ents = 0
    for text in all_texts():
        doc = nlp(text)
        check_confidence(doc, NAME, NAME, ["ents", "tag"])
        n_ents += len(doc.ents)
    assert n_ents >= 6  # the gold entities of TRAIN_DATA at least


def test_confidence_custom_spans_key(wordpiece, wp_both, monkeypatch):
    # The setting reaches the component ...
    assert make_nlp(wordpiece, spans_key="scored").get_pipe(NAME).cfg["spans_key"] == "scored"
    # ... and the component writes there.
    nlp, _ = wp_both
    monkeypatch.setitem(nlp.get_pipe(NAME).cfg, "spans_key", "scored")
    doc = nlp(TRAIN_DATA[0][0])
    assert "scored" in doc.spans and NAME not in doc.spans
    assert len(doc.spans["scored"]) == 2
    check_confidence(doc, NAME, "scored", ["ents", "tag"])


def test_default_spans_key_is_component_name(wordpiece):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "token_classifier", name="my_tc", config={"model": {"tok2vec": {"name": str(wordpiece)}}}
    )
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    doc = nlp(TRAIN_DATA[0][0])
    assert "my_tc" in doc.spans and NAME not in doc.spans
    check_confidence(doc, "my_tc", "my_tc", ["ents"])


# Batching ---------------------------------------------------------------------


def test_pipe_equals_call(both):
    nlp, _ = both
    texts = all_texts()
    singles = [predictions(nlp(text)) for text in texts]
    piped = [predictions(doc) for doc in nlp.pipe(texts)]
    assert len(piped) == len(singles)
    for a, b in zip(singles, piped):
        assert_same_predictions(a, b)


def test_pipe_batch_size_and_order(both):
    nlp, _ = both
    texts = all_texts()
    by_one = [predictions(doc) for doc in nlp.pipe(texts, batch_size=1)]
    by_64 = [predictions(doc) for doc in nlp.pipe(texts, batch_size=64)]
    reverse = [predictions(doc) for doc in nlp.pipe(texts[::-1], batch_size=64)][::-1]
    for a, b, c in zip(by_one, by_64, reverse):
        assert_same_predictions(a, b)
        assert_same_predictions(a, c)


def test_batch_pieces_does_not_change_results(both, monkeypatch):
    nlp, _ = both
    texts = all_texts() * 2
    attrs = nlp.get_pipe(NAME).model.get_ref("tok2vec").attrs
    results = {}
    default = attrs["settings"]
    for batch_pieces in (16, 4096):
        monkeypatch.setitem(attrs, "settings", dataclasses.replace(default, batch_pieces=batch_pieces))
        results[batch_pieces] = [predictions(doc) for doc in nlp.pipe(texts, batch_size=64)]
    for a, b in zip(results[16], results[4096]):
        assert_same_predictions(a, b)


def test_tok2vec_settings_reach_encoder(wordpiece):
    nlp = make_nlp(wordpiece, tok2vec={"window": 32, "stride": 24, "batch_pieces": 16})
    attrs = nlp.get_pipe(NAME).model.get_ref("tok2vec").attrs
    assert (attrs["settings"].window, attrs["settings"].stride, attrs["settings"].batch_pieces) == (32, 24, 16)


# Edge-case docs -------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_and_whitespace_docs(both, text):
    nlp, _ = both
    doc = nlp(text)
    assert doc.text == text
    probs = doc._.tokclf_probs[NAME]
    assert sorted(probs) == ["ents", "tag"]
    assert all(len(probs[task]) == len(doc) for task in probs)
    assert all(t.tag_ in TAGS for t in doc)
    assert len(doc.spans[NAME]) == len(doc.spans[NAME].attrs["scores"])


def test_batch_mixing_empty_and_nonempty(both):
    nlp, _ = both
    text, annots = TRAIN_DATA[0]
    texts = ["", text, "   ", "", TRAIN_DATA[1][0], ""]
    docs = list(nlp.pipe(texts, batch_size=64))
    assert [d.text for d in docs] == texts
    assert [(e.text, e.label_) for e in docs[1].ents] == gold_ents(text, annots)
    assert [t.tag_ for t in docs[1]] == annots["tags"]
    assert_same_predictions(predictions(docs[1]), predictions(nlp(text)))
    assert_same_predictions(predictions(docs[4]), predictions(nlp(TRAIN_DATA[1][0])))
    for i in (0, 3, 5):
        assert len(docs[i]) == 0 and docs[i].ents == ()
        assert docs[i]._.tokclf_probs[NAME] == {"ents": [], "tag": []}
    # A batch of empty docs only
    empty = list(nlp.pipe(["", ""]))
    assert all(d._.tokclf_probs[NAME] == {"ents": [], "tag": []} for d in empty)


def test_long_doc_small_window(wp_both, monkeypatch):
    """A 5,000-token doc read in 32-piece windows: every token gets a tag and
    a probability, and entities are found all along the doc. The overfit
    model has only seen three short sentences at the start of a window, so
    accuracy on the repeated text is well above chance but not perfect."""
    nlp, _ = wp_both
    attrs = nlp.get_pipe(NAME).model.get_ref("tok2vec").attrs
    settings = dataclasses.replace(attrs["settings"], window=32, stride=24)
    monkeypatch.setitem(attrs, "settings", settings)
    unit = " ".join(text for text, _ in TRAIN_DATA)
    n_unit = len(nlp.make_doc(unit))
    n_repeats = 5000 // n_unit + 1
    doc = nlp(" ".join([unit] * n_repeats))
    assert len(doc) >= 5000
    assert all(t.tag_ in TAGS for t in doc)
    probs = doc._.tokclf_probs[NAME]
    assert len(probs["tag"]) == len(probs["ents"]) == len(doc)
    gold_tags = [tag for _, annots in TRAIN_DATA for tag in annots["tags"]]
    tag_acc = numpy.mean([t.tag_ == gold_tags[i % n_unit] for i, t in enumerate(doc)])
    assert tag_acc > 0.5  # "NNP" everywhere would score 0.41
    assert {e.label_ for e in doc.ents} <= set(ENT_TYPES)
    names = {"Angela Merkel": "PER", "London": "LOC", "Paris": "LOC", "Cupertino": "LOC"}
    found = [e for e in doc.ents if names.get(e.text) == e.label_]
    assert len(found) > 0.3 * len(names) * n_repeats
    # Found in every part of the doc, not only in the first windows.
    thirds = [0, 0, 0]
    for ent in found:
        thirds[3 * ent.start // len(doc)] += 1
    assert all(n > 0 for n in thirds), thirds
    check_confidence(doc, NAME, NAME, ["ents", "tag"])


# overwrite --------------------------------------------------------------------


def preset_doc(nlp):
    doc = nlp.make_doc(TRAIN_DATA[0][0])  # Angela Merkel visited New York City in 2019.
    doc.ents = [Span(doc, 0, 1, label="ORG")]  # "Angela"
    doc[2].tag_ = "XX"
    return doc


def test_overwrite_false_keeps_existing(wp_both):
    nlp, _ = wp_both
    pipe = nlp.get_pipe(NAME)
    assert pipe.cfg["overwrite"] is False
    doc = pipe(preset_doc(nlp))
    # "Angela Merkel" (PER) overlaps the preset "Angela" and is not written.
    assert [(e.text, e.label_) for e in doc.ents] == [("Angela", "ORG"), ("New York City", "LOC")]
    assert doc[2].tag_ == "XX"
    assert [t.tag_ for i, t in enumerate(doc) if i != 2] == [
        tag for i, tag in enumerate(TRAIN_DATA[0][1]["tags"]) if i != 2
    ]
    # The scored spans hold the predictions, whatever was written to doc.ents.
    assert [(s.text, s.label_) for s in doc.spans[NAME]] == gold_ents(*TRAIN_DATA[0])


def test_overwrite_true_replaces(wordpiece, wp_both, monkeypatch):
    assert make_nlp(wordpiece, overwrite=True).get_pipe(NAME).cfg["overwrite"] is True
    nlp, _ = wp_both
    pipe = nlp.get_pipe(NAME)
    monkeypatch.setitem(pipe.cfg, "overwrite", True)
    doc = pipe(preset_doc(nlp))
    assert [(e.text, e.label_) for e in doc.ents] == gold_ents(*TRAIN_DATA[0])
    assert [t.tag_ for t in doc] == TRAIN_DATA[0][1]["tags"]


# Missing annotation ------------------------------------------------------------------


def test_missing_annotation_has_no_gradient(wp_both):
    nlp, examples = wp_both
    pipe = nlp.get_pipe(NAME)
    text, annots = TRAIN_DATA[0]  # 9 tokens
    full = examples[0]
    none = Example(nlp.make_doc(text), nlp.make_doc(text))
    partial = Example.from_dict(
        nlp.make_doc(text),
        {
            "entities": ["B-PER", "L-PER", "-", "B-LOC", "I-LOC", "L-LOC", "-", "O", "O"],
            "tags": ["NNP", "", "VBD", "NNP", "NNP", "NNP", "IN", "CD", ""],
        },
    )
    batch = [full, none, partial]
    scores = random_scores([eg.predicted for eg in batch], n_outputs(pipe))
    loss, d_scores = pipe.get_loss(batch, scores)
    assert numpy.isfinite(loss) and loss > 0
    assert [d.shape for d in d_scores] == [s.shape for s in scores]
    ents, tag = task_columns(pipe, "ents"), task_columns(pipe, "tag")

    def nonzero_rows(d, cols):
        return [i for i, row in enumerate(numpy.asarray(d)[:, cols]) if numpy.abs(row).sum() > 0]

    n = len(full.predicted)
    assert nonzero_rows(d_scores[0], ents) == list(range(n))
    assert nonzero_rows(d_scores[0], tag) == list(range(n))
    assert nonzero_rows(d_scores[1], ents) == []
    assert nonzero_rows(d_scores[1], tag) == []
    assert nonzero_rows(d_scores[2], ents) == [0, 1, 3, 4, 5, 7, 8]
    assert nonzero_rows(d_scores[2], tag) == [0, 2, 3, 4, 5, 6, 7]


def test_no_annotation_at_all_gives_zero_loss(wp_both):
    nlp, _ = wp_both
    pipe = nlp.get_pipe(NAME)
    text = TRAIN_DATA[1][0]
    batch = [Example(nlp.make_doc(text), nlp.make_doc(text))]
    scores = random_scores([eg.predicted for eg in batch], n_outputs(pipe))
    loss, d_scores = pipe.get_loss(batch, scores)
    assert loss == 0.0
    assert not numpy.asarray(d_scores[0]).any()


def test_misaligned_gold_warns_and_trains(fresh):
    nlp, _, optimizer = fresh
    pipe = nlp.get_pipe(NAME)
    text = "Angela Merkel visited Paris."
    with pytest.warns(UserWarning, match="W030"):
        eg = Example.from_dict(nlp.make_doc(text), {"entities": [(0, 3, "PER"), (22, 27, "LOC")]})
    losses = nlp.update([eg], sgd=optimizer)
    assert numpy.isfinite(losses[NAME]) and losses[NAME] > 0
    scores = random_scores([eg.predicted], n_outputs(pipe))
    _, d_scores = pipe.get_loss([eg], scores)
    ents = numpy.asarray(d_scores[0])[:, task_columns(pipe, "ents")]
    assert not ents[0].any()  # "Angela": misaligned, so missing
    assert all(ents[i].any() for i in range(1, len(eg.predicted)))


def test_nan_loss_raises(wp_both):
    nlp, examples = wp_both
    pipe = nlp.get_pipe(NAME)
    scores = random_scores([eg.predicted for eg in examples], n_outputs(pipe))
    scores[1][2, 0] = numpy.nan
    with pytest.raises(ValueError, match=r"E910.*token_classifier|token_classifier.*NaN"):
        pipe.get_loss(examples, scores)


def test_nan_in_model_output_raises_in_update(fresh, monkeypatch):
    nlp, examples, optimizer = fresh
    pipe = nlp.get_pipe(NAME)

    def nan_forward(model, docs, is_train):
        scores, backprop = model.layers[0](docs, is_train)
        return [s * numpy.nan for s in scores], backprop

    monkeypatch.setattr(pipe, "model", Model("nan_scores", nan_forward, layers=[pipe.model]))
    with pytest.raises(ValueError, match="E910"):
        nlp.update(examples, sgd=optimizer)


def test_update_returns_losses(fresh):
    nlp, examples, optimizer = fresh
    losses = nlp.get_pipe(NAME).update(examples, sgd=optimizer, losses={NAME: 1.0, "x": 2.0})
    assert losses["x"] == 2.0 and losses[NAME] > 1.0
    # A batch of empty docs is a no-op
    empty = [Example(nlp.make_doc(""), nlp.make_doc(""))]
    assert nlp.get_pipe(NAME).update(empty, sgd=optimizer) == {NAME: 0.0}


def test_use_averages_reaches_the_encoder(fresh):
    """With `use_averages = true`, spaCy evaluates and saves inside
    `nlp.use_params(optimizer.averages)`: the encoder's weights must be the
    averages there, and its own weights again after the block. (thinc's
    PyTorchShim kept the averages under keys its use_params never read.)"""
    nlp, examples, _ = fresh
    optimizer = Adam(1e-3, use_averages=True)
    for _ in range(4):
        nlp.update(examples, sgd=optimizer)
    pipe = nlp.get_pipe(NAME)
    shim = next(shim for node in pipe.model.walk() for shim in node.shims)
    params = dict(shim.piece_encoder.named_parameters())
    averaged = {key[1]: value for key, value in optimizer.averages.items() if key[0] == shim.id}
    assert averaged and set(averaged) <= set(params)
    name = next(n for n in averaged if "attention" in n and "weight" in n)
    last = params[name].detach().clone().numpy()
    assert not numpy.allclose(last, averaged[name])
    docs = [nlp.make_doc(eg.reference.text) for eg in examples]
    scores_last = [numpy.asarray(s) for s in pipe.model.predict(docs)]
    with nlp.use_params(optimizer.averages):
        numpy.testing.assert_allclose(params[name].detach().numpy(), averaged[name], rtol=1e-6)
        scores_averaged = [numpy.asarray(s) for s in pipe.model.predict(docs)]
    numpy.testing.assert_array_equal(params[name].detach().numpy(), last)
    assert not all(numpy.allclose(a, b) for a, b in zip(scores_last, scores_averaged))
    for a, b in zip(scores_last, pipe.model.predict(docs)):
        numpy.testing.assert_allclose(a, numpy.asarray(b), atol=1e-6)


# Errors name the setting ----------------------------------------------------------------


def test_error_unknown_task(wordpiece):
    with pytest.raises(ValueError, match="tasks"):
        make_nlp(wordpiece, tasks=["pos"])


def test_error_unknown_scheme(wordpiece):
    with pytest.raises(ValueError, match="scheme"):
        make_nlp(wordpiece, scheme="IOB2")


def test_error_empty_model_name():
    with pytest.raises(ValueError, match=r"model\.tok2vec\.name"):
        make_nlp(Path(""), tok2vec={"name": ""})


def test_error_missing_directory(tmp_path):
    missing = tmp_path / "no" / "such" / "encoder"
    nlp = make_nlp(missing)  # cheap to construct: nothing is loaded yet
    examples = make_examples(nlp)
    with pytest.raises(OSError, match=r"model\.tok2vec\.name"):
        nlp.initialize(lambda: examples)


def test_warning_tokenizer_without_vocabulary(wordpiece, tmp_path):
    """A tokenizer whose vocabulary did not load (all pieces unknown) is
    reported at initialize, not trained on in silence."""
    import shutil
    import warnings

    from transformers import AutoTokenizer, BertConfig, BertModel

    broken = tmp_path / "specials_only"
    broken.mkdir()
    (broken / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf8")
    tokenizer = AutoTokenizer.from_pretrained(str(wordpiece))
    tokenizer = type(tokenizer).from_pretrained(str(broken), do_lower_case=False)
    tokenizer.save_pretrained(str(broken))
    config = BertConfig.from_pretrained(str(wordpiece))
    config.vocab_size = 5
    BertModel(config).save_pretrained(str(broken))
    nlp = make_nlp(broken)
    with pytest.warns(UserWarning, match="unknown piece") as record:
        nlp.initialize(lambda: make_examples(nlp))
    assert "model.tok2vec.name" in str(record[0].message)
    # The working tokenizer gives no such warning.
    nlp = make_nlp(wordpiece)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        nlp.initialize(lambda: make_examples(nlp))
    shutil.rmtree(broken)


def test_error_slow_tokenizer(wordpiece, monkeypatch):
    import transformers

    # The Python (slow) BERT tokenizer: BertTokenizer in transformers 4,
    # BertTokenizerLegacy in 5, where BertTokenizer is the fast one.
    slow_class = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer)

    def slow_tokenizer(*args, **kwargs):
        return slow_class(vocab_file=str(wordpiece / "vocab.txt"), do_lower_case=False)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", slow_tokenizer)
    nlp = make_nlp(wordpiece)
    examples = make_examples(nlp)
    with pytest.raises(ValueError, match="fast") as excinfo:
        nlp.initialize(lambda: examples)
    assert "model.tok2vec.name" in str(excinfo.value)


def test_error_labels_do_not_match_data(wordpiece):
    nlp = make_nlp(wordpiece)
    examples = make_examples(nlp)
    pipe = nlp.get_pipe(NAME)
    with pytest.raises(ValueError, match="labels"):
        pipe.initialize(lambda: examples, nlp=nlp, labels=["PER"])
    with pytest.raises(ValueError, match="labels"):
        pipe.initialize(lambda: examples, nlp=nlp, labels={"tag": ["NN"]})


def test_error_tag_task_without_tags(wordpiece):
    nlp = make_nlp(wordpiece, tasks=["tag"])
    examples = [
        Example.from_dict(nlp.make_doc(text), {"entities": annots["entities"]})
        for text, annots in TRAIN_DATA
    ]
    with pytest.raises(ValueError, match="tasks"):
        nlp.initialize(lambda: examples)


def test_window_too_large_uses_the_longest_that_fits(wordpiece, caplog):
    """A window longer than the model reads is fitted to the model, and the
    log names the setting (it was an error before)."""
    import logging

    nlp = make_nlp(wordpiece, tok2vec={"window": 100000, "stride": 100})
    examples = make_examples(nlp)
    with caplog.at_level(logging.WARNING, logger="spacy"):
        nlp.initialize(lambda: examples)
    messages = [r.getMessage() for r in caplog.records if "model.tok2vec.window" in r.getMessage()]
    assert len(messages) == 1 and "using window 510" in messages[0]
    words = ["the"] * 1200
    doc = nlp(" ".join(words))
    assert len(doc._.tokclf_probs[NAME]["ents"]) == len(words)


def test_error_predict_before_initialize(wordpiece):
    nlp = make_nlp(wordpiece)
    with pytest.raises(ValueError, match="initialize"):
        nlp("Angela Merkel")


# Labels ---------------------------------------------------------------------------


def test_label_data_round_trip(wordpiece, wp_both):
    nlp, examples = wp_both
    label_data = nlp.get_pipe(NAME).label_data
    assert label_data == {"ents": ENT_TYPES, "tag": TAGS}
    # Given labels are taken as they are (order, extra labels).
    given = {"ents": ["PER", "ORG", "LOC", "MISC"], "tag": TAGS + ["UH"]}
    nlp2 = make_nlp(wordpiece, tasks=["ents", "tag"])
    nlp2.get_pipe(NAME).initialize(lambda: make_examples(nlp2), nlp=nlp2, labels=given)
    assert nlp2.get_pipe(NAME).label_data == given
    assert nlp2.get_pipe(NAME).labels == tuple(given["ents"] + given["tag"])


def test_init_labels_file_flow(wordpiece, wp_both):
    """As after `spacy init labels`: labels read from a JSON file by the
    [initialize] block."""
    nlp, _ = wp_both
    label_data = nlp.get_pipe(NAME).label_data
    with make_tempdir() as tmp:
        path = tmp / f"{NAME}.json"
        srsly.write_json(path, label_data)
        nlp2 = make_nlp(wordpiece, tasks=["ents", "tag"])
        nlp2.config["initialize"]["components"][NAME] = {
            "labels": {"@readers": "spacy.read_labels.v1", "path": str(path)}
        }
        nlp2.initialize(lambda: make_examples(nlp2))
    assert nlp2.get_pipe(NAME).label_data == label_data
    assert nlp2.get_pipe(NAME).labels == nlp.get_pipe(NAME).labels


def test_add_label_before_and_after_initialize(wordpiece):
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    pipe = nlp.get_pipe(NAME)
    with pytest.raises(ValueError, match="task"):
        pipe.add_label("PER")  # two tasks: the task must be named
    assert pipe.add_label("PER", task="ents") == 1
    assert pipe.add_label("PER", task="ents") == 0
    assert pipe.add_label("NN", task="tag") == 1
    assert pipe.labels == ("PER", "NN")
    nlp.initialize(lambda: make_examples(nlp))
    # after initialize the head grows (tests/test_add_label.py: old predictions kept)
    assert pipe.add_label("MISC", task="ents") == 1
    assert "MISC" in pipe.labels
    assert pipe.model.get_ref("output_layer").get_dim("nO") == pipe.layout.n_outputs


def test_add_label_before_initialize_is_kept(wordpiece):
    """A label added before initialize stays a label after it, as with spaCy's
    own tagger and ner, even when the training data has no example of it."""
    nlp = make_nlp(wordpiece)
    pipe = nlp.get_pipe(NAME)
    assert pipe.add_label("MISC") == 1
    nlp.initialize(lambda: make_examples(nlp))
    assert "MISC" in pipe.labels
    assert set(ENT_TYPES) <= set(pipe.labels)


# spacy-transformers listener -----------------------------------------------------------


@needs_listener
def test_transformer_listener_trains(wordpiece):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": str(wordpiece),
                "get_spans": {
                    "@span_getters": "spacy-transformers.strided_spans.v1",
                    "window": 128,
                    "stride": 96,
                },
                "tokenizer_config": {"use_fast": True},
            }
        },
    )
    nlp.add_pipe(
        "token_classifier",
        config={"model": {"tok2vec": dict(LISTENER_TOK2VEC)}},
    )
    assert NAME in nlp.get_pipe("transformer").listening_components
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    history = []
    for _ in range(40):
        losses: Dict[str, float] = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
        history.append(losses[NAME])
    assert history[-1] < history[0] / 10
    for text, annots in TRAIN_DATA:
        doc = nlp(text)
        assert [(e.text, e.label_) for e in doc.ents] == gold_ents(text, annots)
        check_confidence(doc, NAME, NAME, ["ents"])
    assert nlp.evaluate(examples)["ents_f"] == 1.0
    # The listener pipeline saves and loads like any other.
    expected = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(all_texts())]
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "listener")
        nlp2 = spacy.load(tmp / "listener")
    loaded = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp2.pipe(all_texts())]
    assert loaded == expected
