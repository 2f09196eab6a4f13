"""Bad training data and damaged saved pipelines: a clear error that says what
to change, or spaCy's usual warning, never a crash deep inside torch, thinc,
numpy or msgpack.

Covered in test_pipeline.py and not repeated here: gold offsets that miss
token boundaries warn W030 and train on the rest
(test_misaligned_gold_warns_and_trains); missing annotation adds no gradient
(test_missing_annotation_has_no_gradient, test_no_annotation_at_all_gives_zero_loss);
a batch of empty docs is a no-op (test_update_returns_losses); `labels` that
lack labels of the data (test_error_labels_do_not_match_data); a task with no
gold annotation at all (test_error_tag_task_without_tags); NaN (test_nan_*).
"""
import shutil
import warnings
from io import BytesIO
from typing import Callable, Dict, List

import numpy
import pytest
import spacy
import srsly
import torch
from spacy.tokens import Doc, DocBin
from spacy.training import Corpus, Example
from spacy.util import make_tempdir

from .util import TRAIN_DATA, make_examples, make_nlp

NAME = "token_classifier"
TAGS = sorted({tag for _, annots in TRAIN_DATA for tag in annots["tags"]})
LABELS = {"ents": ["LOC", "ORG", "PER"], "tag": TAGS}



@pytest.fixture
def initialized(wordpiece):
    """An initialized wordpiece pipeline with both tasks, and an optimizer."""
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    optimizer = nlp.initialize(lambda: make_examples(nlp))
    return nlp, optimizer


def gradient_rows(pipe, example: Example, task: str) -> List[int]:
    """The tokens of `example` that get a gradient for `task` (from all-zero
    scores, every token with gold gets one)."""
    n_out = sum(len(pipe.layout.output_labels(t)) for t in pipe.tasks)
    scores = [numpy.zeros((len(example.predicted), n_out), dtype="float32")]
    _, (d_scores,) = pipe.get_loss([example], scores)
    start = 0
    for t in pipe.tasks:
        n = len(pipe.layout.output_labels(t))
        if t == task:
            d = numpy.asarray(d_scores)[:, start : start + n]
            return [i for i, row in enumerate(d) if numpy.abs(row).any()]
        start += n
    raise KeyError(task)


def check_predicts(nlp) -> None:
    """The pipeline still predicts a known tag for every token."""
    labels = nlp.get_pipe(NAME).label_data
    doc = nlp("Angela Merkel visited Paris.")
    assert len(doc) == 5 and all(token.tag_ in labels["tag"] for token in doc)
    assert {e.label_ for e in doc.ents} <= set(labels["ents"])


# Empty docs -----------------------------------------------------------------------


def test_empty_and_whitespace_docs_train_with_the_rest(wordpiece):
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    blank = [
        Example(nlp.make_doc(""), nlp.make_doc("")),
        Example.from_dict(nlp.make_doc(" \n\t "), {"entities": ["O"], "tags": ["_SP"]}),
        Example(nlp.make_doc("\u200b"), nlp.make_doc("\u200b")),
    ]
    examples = blank + make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(2):
        losses = nlp.update(examples, sgd=optimizer)
        assert numpy.isfinite(losses[NAME]) and losses[NAME] > 0
    assert nlp.update(blank[:1], sgd=optimizer) == {NAME: 0.0}
    check_predicts(nlp)


def test_corpus_of_empty_docs_says_what_to_change(wordpiece):
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    examples = [Example(nlp.make_doc(text), nlp.make_doc(text)) for text in ("", "", "  ")]
    with pytest.raises(ValueError, match=r"no training example has gold.*`\[components"):
        nlp.initialize(lambda: examples)


# No annotation ------------------------------------------------------------------


def test_corpus_without_annotation_says_what_to_change(wordpiece):
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    examples = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t, _ in TRAIN_DATA]
    with pytest.raises(ValueError, match=r"Task 'ents'.*no training example has gold"):
        nlp.initialize(lambda: examples)
    # spaCy's own default when no examples are given: one unannotated doc.
    with pytest.raises(ValueError, match="no training example has gold"):
        nlp.initialize()


def test_docs_without_annotation_train_as_missing(wordpiece):
    """With labels given, unannotated docs initialize the model and add no
    loss; mixed with annotated docs they do not disturb the update."""
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    unannotated = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t, _ in TRAIN_DATA]
    nlp.get_pipe(NAME).initialize(lambda: unannotated, nlp=nlp, labels=LABELS)
    optimizer = nlp.create_optimizer()
    assert nlp.update(unannotated, sgd=optimizer) == {NAME: 0.0}
    losses = nlp.update(unannotated + make_examples(nlp), sgd=optimizer)
    assert numpy.isfinite(losses[NAME]) and losses[NAME] > 0
    check_predicts(nlp)


# Overlapping gold spans -------------------------------------------------------------


def test_overlapping_gold_offsets_are_refused_by_spacy(wordpiece):
    """Overlapping entities cannot be gold for doc.ents: spaCy refuses them
    with E103 when the Example is made, before the component sees them."""
    nlp = make_nlp(wordpiece)
    doc = nlp.make_doc("Angela Merkel visited New York City.")
    with pytest.raises(ValueError, match=r"E103.*overlap"):
        Example.from_dict(doc, {"entities": [(0, 13, "PER"), (7, 13, "LOC")]})


def test_gold_entities_merged_by_alignment_are_missing(initialized):
    """Two gold entities that fall into one predicted token ("NewYork" for
    gold "New" LOC + "York" ORG) cannot both be its label: the token is
    missing annotation, its tag and the other tokens still train."""
    nlp, optimizer = initialized
    pipe = nlp.get_pipe(NAME)
    predicted = Doc(nlp.vocab, words=["NewYork", "is", "big"])
    reference = Doc(
        nlp.vocab,
        words=["New", "York", "is", "big"],
        spaces=[False, True, True, False],
        ents=["B-LOC", "B-ORG", "O", "O"],
        tags=["NNP", "NNP", "VBZ", "JJ"],
    )
    example = Example(predicted, reference)
    assert example.get_aligned_ner() == [None, "O", "O"]
    with pytest.warns(UserWarning, match="'JJ'"):  # unseen: see below
        losses = nlp.update([example], sgd=optimizer)
    assert numpy.isfinite(losses[NAME]) and losses[NAME] > 0
    assert gradient_rows(pipe, example, "ents") == [1, 2]
    # Both gold tokens are NNP, so the merged token has a tag; "JJ" is unseen.
    assert gradient_rows(pipe, example, "tag") == [0, 1]


# Misaligned gold spans --------------------------------------------------------------


def test_gold_boundary_inside_a_predicted_token_is_missing(initialized):
    """Gold tokenized differently from the prediction, so that an entity
    ends inside a predicted token ("Merkel-visited"): spaCy aligns the
    tokens (W030 is for offsets, see test_pipeline.py); the cut token is
    missing annotation and the rest trains."""
    nlp, optimizer = initialized
    pipe = nlp.get_pipe(NAME)
    predicted = Doc(nlp.vocab, words=["Angela", "Merkel-visited", "Paris"])
    reference = Doc(
        nlp.vocab,
        words=["Angela", "Merkel", "-", "visited", "Paris"],
        spaces=[True, False, False, True, False],
        ents=["B-PER", "I-PER", "O", "O", "B-LOC"],
    )
    example = Example(predicted, reference)
    assert example.get_aligned_ner()[1] is None
    assert example.get_aligned_ner()[2] == "U-LOC"
    assert 1 not in gradient_rows(pipe, example, "ents")
    assert 2 in gradient_rows(pipe, example, "ents")
    losses = nlp.update([example], sgd=optimizer)
    assert numpy.isfinite(losses[NAME]) and losses[NAME] > 0
    check_predicts(nlp)


# Labels unseen at initialize ---------------------------------------------------------


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_labels_unseen_at_initialize_warn_once_and_are_missing(wordpiece, scheme):
    """Labels first met in `update` cannot get a column of the sized head:
    one warning per label that names it and the setting to add it to; its
    tokens are missing annotation; the head keeps its size."""
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"], scheme=scheme)
    optimizer = nlp.initialize(lambda: make_examples(nlp))
    pipe = nlp.get_pipe(NAME)
    n_out = pipe.model.get_ref("output_layer").get_dim("nO")
    example = Example.from_dict(
        nlp.make_doc("Angela likes Berlin and Bonn am Rhein"),
        {
            "entities": [(0, 6, "PER"), (13, 19, "CITY"), (24, 37, "CITY")],
            "tags": ["NNP", "XX", "NNP", "CC", "NNP", "XX", "NNP"],
        },
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            losses = nlp.update([example], sgd=optimizer)
            assert numpy.isfinite(losses[NAME])
    messages = sorted(str(w.message) for w in caught if "not seen at initialize" in str(w.message))
    assert len(messages) == 2, messages  # CITY once (not per B-/I-/L-/U- label), XX once
    assert "label 'CITY' (task 'ents')" in messages[0]
    assert "label 'XX' (task 'tag')" in messages[1]
    assert all(f"[initialize.components.{NAME}.labels]" in m for m in messages)
    assert gradient_rows(pipe, example, "ents") == [0, 1, 3]  # not Berlin, Bonn am Rhein
    assert gradient_rows(pipe, example, "tag") == [0, 2, 3, 4, 6]
    assert pipe.model.get_ref("output_layer").get_dim("nO") == n_out
    assert "CITY" not in pipe.labels
    check_predicts(nlp)


# Empty corpus ------------------------------------------------------------------------


def _empty_docbin_corpus(nlp, tmp_path) -> Callable:
    """As `spacy train` reads [paths.train]: a Corpus over an empty .spacy file."""
    DocBin().to_disk(tmp_path / "train.spacy")
    corpus = Corpus(tmp_path / "train.spacy")
    return lambda: corpus(nlp)


EMPTY_CORPORA: Dict[str, Callable] = {
    "list": lambda nlp, tmp_path: (lambda: []),
    "generator": lambda nlp, tmp_path: (lambda: iter([])),
    "empty .spacy file": _empty_docbin_corpus,
}


@pytest.mark.parametrize("with_labels", [False, True], ids=["inferred", "given labels"])
@pytest.mark.parametrize("corpus", sorted(EMPTY_CORPORA))
def test_empty_corpus_says_what_to_change(wordpiece, tmp_path, corpus, with_labels):
    """An empty corpus is named as such, with the setting to fix. Regression:
    with labels given (from `spacy init labels`), initialize went through on
    no sample at all, and the first prediction crashed in blis ("Shape
    mismatch for blis.gemm")."""
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    if with_labels:
        nlp.config["initialize"]["components"][NAME] = {"labels": LABELS}
    get_examples = EMPTY_CORPORA[corpus](nlp, tmp_path)
    with pytest.raises(ValueError, match=r"corpus is empty.*\[paths\.train\]"):
        nlp.initialize(get_examples)
    with pytest.raises(ValueError, match=r"corpus is empty"):
        nlp.get_pipe(NAME).initialize(get_examples, nlp=nlp, labels=LABELS if with_labels else None)


# Damaged saved pipelines --------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(encoders):
    """An initialized pipeline saved to disk, and its predictions."""
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    nlp.initialize(lambda: make_examples(nlp))
    texts = [text for text, _ in TRAIN_DATA]
    expected = [[t.tag_ for t in doc] for doc in nlp.pipe(texts)]
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "saved")
        yield tmp / "saved", texts, expected


@pytest.fixture
def copy(saved, tmp_path):
    """A copy of the saved pipeline that a test may damage."""
    path = tmp_path / "pipeline"
    shutil.copytree(saved[0], path)
    return path


def test_intact_copy_loads(saved, copy):
    _, texts, expected = saved
    nlp = spacy.load(copy)
    assert [[t.tag_ for t in doc] for doc in nlp.pipe(texts)] == expected


DAMAGE: Dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"\x00\xffnot a saved file\x93" * 20,
    "one byte cut": lambda data: data[:-1],
}


@pytest.mark.parametrize("filename", ["cfg", "model"])
def test_missing_file_is_named(copy, filename):
    path = copy / NAME / filename
    path.unlink()
    with pytest.raises(FileNotFoundError) as excinfo:
        spacy.load(copy)
    assert str(path) in str(excinfo.value)
    assert "copy the whole pipeline directory again" in str(excinfo.value)


def test_missing_component_directory_is_named(copy):
    shutil.rmtree(copy / NAME)
    with pytest.raises(FileNotFoundError) as excinfo:
        spacy.load(copy)
    assert str(copy / NAME) in str(excinfo.value)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("filename", ["cfg", "model"])
def test_corrupted_file_is_named(copy, filename, damage):
    path = copy / NAME / filename
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.raises(ValueError) as excinfo:
        spacy.load(copy)
    message = str(excinfo.value)
    assert message.startswith(f"[{NAME}]")
    assert str(path) in message
    assert "save the pipeline again" in message


def _edit_encoder(path, edit: Callable[[dict], None]) -> None:
    """Edit the saved encoder (config, tokenizer files, weights) inside the
    model file, keeping the file itself well-formed."""
    msg = srsly.msgpack_loads(path.read_bytes())
    n_edited = 0
    for node in msg["shims"]:
        for i, data in enumerate(node):
            shim = srsly.msgpack_loads(data)
            edit(shim)
            node[i] = srsly.msgpack_dumps(shim)
            n_edited += 1
    assert n_edited == 1
    path.write_bytes(srsly.msgpack_dumps(msg))


def _drop_a_weight(shim: dict) -> None:
    state = torch.load(BytesIO(shim["state"]), weights_only=True)
    state.pop(next(iter(state)))
    data = BytesIO()
    torch.save(state, data)
    shim["state"] = data.getvalue()


ENCODER_DAMAGE: Dict[str, tuple] = {
    "weights truncated": (lambda s: s.update(state=s["state"][: len(s["state"]) // 2]), "weights"),
    "weights garbage": (lambda s: s.update(state=b"garbage" * 100), "weights"),
    "a weight missing": (_drop_a_weight, "weights"),
    "weights for another size": (lambda s: s["config"].update(hidden_size=64), "weights"),
    "tokenizer.json missing": (lambda s: s["tokenizer"].pop("tokenizer.json"), "tokenizer"),
    "tokenizer.json garbage": (
        lambda s: s["tokenizer"].update({"tokenizer.json": b"{not json"}),
        "tokenizer",
    ),
    "tokenizer_config.json garbage": (
        lambda s: s["tokenizer"].update({"tokenizer_config.json": b"\x00\x01"}),
        "tokenizer",
    ),
    "config unknown model type": (
        lambda s: s["config"].update(model_type="nonsense"),
        "transformer config",
    ),
}


@pytest.mark.parametrize("damage", sorted(ENCODER_DAMAGE))
def test_damaged_encoder_in_model_file_is_named(copy, damage):
    """The error names the file and the part of the encoder that is bad
    (before: torch's "PytorchStreamReader failed", or transformers asking to
    install protobuf for a garbled tokenizer.json)."""
    edit, part = ENCODER_DAMAGE[damage]
    path = copy / NAME / "model"
    _edit_encoder(path, edit)
    with pytest.raises(ValueError) as excinfo:
        spacy.load(copy)
    message = str(excinfo.value)
    assert str(path) in message
    assert f"The saved encoder's {part}" in message


CFG_EDITS: Dict[str, tuple] = {
    "a label added": (
        lambda cfg: cfg["labels"]["ents"].append("MISC"),
        "does not match the saved model",
    ),
    "a label removed": (lambda cfg: cfg["labels"]["tag"].pop(), "does not match the saved model"),
    "other scheme": (lambda cfg: cfg.update(scheme="BILUO"), "does not match the saved model"),
    "unknown scheme": (lambda cfg: cfg.update(scheme="IOB2"), "does not hold valid settings"),
    "unknown task": (lambda cfg: cfg.update(tasks=["ents", "pos"]), "does not hold valid settings"),
    "labels missing": (lambda cfg: cfg.pop("labels"), "cannot load the component"),
    "labels not a dict": (lambda cfg: cfg.update(labels=["PER"]), "does not hold valid settings"),
    "not an object": (None, "cannot load the component"),
}


@pytest.mark.parametrize("edit", sorted(CFG_EDITS))
def test_edited_cfg_is_named(copy, edit):
    """A cfg that no longer describes the model was read silently: a label
    added to it shifted the columns of the head, and every prediction after
    it was wrong."""
    change, expected = CFG_EDITS[edit]
    path = copy / NAME / "cfg"
    if change is None:
        srsly.write_json(path, ["labels"])
    else:
        cfg = srsly.read_json(path)
        change(cfg)
        srsly.write_json(path, cfg)
    with pytest.raises(ValueError) as excinfo:
        spacy.load(copy)
    assert str(path) in str(excinfo.value)
    assert expected.lower() in str(excinfo.value).lower()


def test_edited_cfg_in_bytes_is_refused(saved):
    nlp = spacy.load(saved[0])
    msg = srsly.msgpack_loads(nlp.get_pipe(NAME).to_bytes())
    cfg = srsly.json_loads(msg["cfg"])
    cfg["labels"]["ents"].append("MISC")
    msg["cfg"] = srsly.json_dumps(cfg)
    with pytest.raises(ValueError, match="does not match the saved model"):
        spacy.load(saved[0]).get_pipe(NAME).from_bytes(srsly.msgpack_dumps(msg))
