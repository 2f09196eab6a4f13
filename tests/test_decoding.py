"""Label ids -> entities (spacy_tokclf/decoding.py, with the label rules of
spacy_tokclf/labels.py): scheme labels, transition masks, constrained
decoding, spans and their scores.

What decoding promises, each asserted here: every doc's labels are a valid
sequence; a valid argmax is kept unchanged; otherwise the output is a valid
sequence with the highest sum of log-probabilities (checked against brute
force), each doc on its own. It does not promise to keep entities: a repair
can move a boundary, change a type or leave no entity at all
(test_repair_can_drop_the_entity_of_an_invalid_argmax).

An entity's score is the mean over its tokens of its type's probability mass
(B-X + I-X (+ L-X + U-X)), so an entity whose labels were repaired is scored
by what the model thinks of its type, not by the label it did not prefer.
"""
import itertools
from typing import List, Sequence

import numpy
import pytest

from spacy_tokclf import decoding
from spacy_tokclf.decoding import (
    ENTITY_TOKENS,
    constrained_decode,
    constrained_decode_docs,
    decode,
    entity_spans,
    is_valid,
    label_spans,
    per_doc_predictions,
    transition_masks,
)
from spacy_tokclf.labels import LabelLayout, biluo_to_scheme, scheme_labels, split_label

from .util import make_examples, make_nlp

TYPES = ["PER", "WORK-OF-ART"]


def ids_of(labels: Sequence[str], names: Sequence[str]) -> numpy.ndarray:
    return numpy.asarray([labels.index(n) for n in names], dtype="int64")


def names_of(labels: Sequence[str], ids: Sequence[int]) -> List[str]:
    return [labels[i] for i in ids]


def log_probs_from(labels: Sequence[str], rows: List[dict]) -> numpy.ndarray:
    """Per token, {label: probability}; the rest of the mass spread evenly."""
    out = numpy.zeros((len(rows), len(labels)))
    for i, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / max(1, len(labels) - len(row))
        out[i] = [row.get(label, rest) for label in labels]
    return numpy.log(out)


def brute_force_best(log_probs: numpy.ndarray, masks) -> float:
    best = -numpy.inf
    n, n_labels = log_probs.shape
    for seq in itertools.product(range(n_labels), repeat=n):
        ids = numpy.asarray(seq)
        if is_valid(ids, *masks):
            best = max(best, float(log_probs[numpy.arange(n), ids].sum()))
    return best


def valid_by_definition(names: Sequence[str], scheme: str) -> bool:
    """Validity written out from the scheme definitions, independently of
    transition_masks."""
    prev_p, prev_t = "O", ""
    for name in names:
        p, _, t = name.partition("-")
        if scheme == "BIO":
            if p == "I" and not (prev_p in ("B", "I") and prev_t == t):
                return False
        else:
            if prev_p in ("B", "I"):
                if p not in ("I", "L") or t != prev_t:
                    return False
            elif p in ("I", "L"):
                return False
        prev_p, prev_t = p, t
    return scheme == "BIO" or prev_p not in ("B", "I")


# Labels ---------------------------------------------------------------------------


def test_scheme_labels():
    assert scheme_labels(["PER", "LOC"], "BIO") == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert scheme_labels(["PER"], "BILUO") == ["O", "B-PER", "I-PER", "L-PER", "U-PER"]
    assert scheme_labels([], "BIO") == ["O"]


@pytest.mark.parametrize(
    "label,expected",
    [
        ("O", ("O", "")),
        ("B-PER", ("B", "PER")),
        ("I-WORK-OF-ART", ("I", "WORK-OF-ART")),
        ("B-WORK-OF-ART", ("B", "WORK-OF-ART")),
        ("U-A-B-C", ("U", "A-B-C")),
    ],
)
def test_split_label(label, expected):
    assert split_label(label) == expected


def test_scheme_labels_round_trip_hyphenated_types():
    for scheme in ("BIO", "BILUO"):
        labels = scheme_labels(TYPES, scheme)
        assert {split_label(label)[1] for label in labels[1:]} == set(TYPES)


@pytest.mark.parametrize(
    "tag,scheme,expected",
    [
        ("U-PER", "BIO", "B-PER"),
        ("L-WORK-OF-ART", "BIO", "I-WORK-OF-ART"),
        ("B-PER", "BIO", "B-PER"),
        ("I-PER", "BIO", "I-PER"),
        ("O", "BIO", "O"),
        ("L-PER", "BILUO", "L-PER"),
        ("-", "BIO", None),
        ("", "BILUO", None),
        (None, "BIO", None),
    ],
)
def test_biluo_to_scheme(tag, scheme, expected):
    assert biluo_to_scheme(tag, scheme) == expected


# Transition masks ----------------------------------------------------------------


def test_transition_masks_bio():
    labels = scheme_labels(["X", "Y"], "BIO")
    start, trans, end = transition_masks(labels, "BIO")
    t = lambda a, b: bool(trans[labels.index(a), labels.index(b)])
    assert not start[labels.index("I-X")]
    assert start[labels.index("O")] and start[labels.index("B-X")]
    assert end.all()
    assert not t("O", "I-X")
    assert not t("B-X", "I-Y")
    assert not t("I-X", "I-Y")
    assert t("B-X", "I-X") and t("I-X", "I-X")
    assert t("B-X", "B-X") and t("I-X", "B-Y") and t("O", "B-Y") and t("I-X", "O")


def test_transition_masks_biluo():
    labels = scheme_labels(["X", "Y"], "BILUO")
    start, trans, end = transition_masks(labels, "BILUO")
    t = lambda a, b: bool(trans[labels.index(a), labels.index(b)])
    allowed = lambda a: {b for b in labels if t(a, b)}
    assert allowed("B-X") == {"I-X", "L-X"}
    assert allowed("I-X") == {"I-X", "L-X"}
    outside = {"O", "B-X", "U-X", "B-Y", "U-Y"}
    assert allowed("O") == allowed("L-X") == allowed("U-Y") == outside
    assert {labels[i] for i in numpy.flatnonzero(start)} == outside
    assert {labels[i] for i in numpy.flatnonzero(end)} == {"O", "L-X", "U-X", "L-Y", "U-Y"}


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_is_valid_agrees_with_scheme_definition(scheme):
    labels = scheme_labels(["X", "Y-Z"], scheme)
    masks = transition_masks(labels, scheme)
    for n in range(0, 4):
        for seq in itertools.product(range(len(labels)), repeat=n):
            names = names_of(labels, seq)
            assert is_valid(numpy.asarray(seq, dtype="int64"), *masks) == valid_by_definition(
                names, scheme
            ), names


# Constrained decoding --------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_valid_argmax_is_returned_unchanged(scheme):
    labels = scheme_labels(["PER", "LOC"], scheme)
    masks = transition_masks(labels, scheme)
    names = (
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]
        if scheme == "BIO"
        else ["B-PER", "L-PER", "O", "U-LOC", "U-LOC"]
    )
    rows = [{name: 0.6} for name in names]
    log_probs = log_probs_from(labels, rows)
    assert names_of(labels, constrained_decode(log_probs, *masks)) == names


def test_invalid_argmax_bio_o_then_i_is_repaired():
    labels = scheme_labels(["PER", "LOC"], "BIO")
    masks = transition_masks(labels, "BIO")
    # argmax: O I-PER I-PER, invalid.
    log_probs = log_probs_from(
        labels,
        [{"O": 0.9}, {"I-PER": 0.5, "B-PER": 0.4, "O": 0.05}, {"I-PER": 0.9}],
    )
    assert not is_valid(log_probs.argmax(axis=1), *masks)
    ids = constrained_decode(log_probs, *masks)
    assert names_of(labels, ids) == ["O", "B-PER", "I-PER"]


def test_invalid_argmax_bio_type_change_is_repaired():
    labels = scheme_labels(["PER", "LOC"], "BIO")
    masks = transition_masks(labels, "BIO")
    # argmax: B-PER I-LOC, invalid; I-PER is a close second for token 1.
    log_probs = log_probs_from(
        labels, [{"B-PER": 0.9}, {"I-LOC": 0.45, "I-PER": 0.4, "O": 0.05, "B-LOC": 0.05}]
    )
    ids = constrained_decode(log_probs, *masks)
    assert is_valid(ids, *masks)
    assert names_of(labels, ids) == ["B-PER", "I-PER"]


def test_invalid_argmax_biluo_unfinished_entity_is_repaired():
    labels = scheme_labels(["PER"], "BILUO")
    masks = transition_masks(labels, "BILUO")
    # argmax: B-PER I-PER, which cannot end a sequence.
    log_probs = log_probs_from(
        labels, [{"B-PER": 0.7, "U-PER": 0.2}, {"I-PER": 0.5, "L-PER": 0.4, "O": 0.05}]
    )
    ids = constrained_decode(log_probs, *masks)
    assert names_of(labels, ids) == ["B-PER", "L-PER"]


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_constrained_decode_is_the_best_valid_sequence(scheme):
    labels = scheme_labels(["X", "Y"], scheme)
    masks = transition_masks(labels, scheme)
    rng = numpy.random.default_rng(0)
    n_repaired = 0
    for case in range(40):
        n = 1 + case % 4
        scores = rng.normal(scale=3.0, size=(n, len(labels)))
        log_probs = scores - numpy.log(numpy.exp(scores).sum(axis=1, keepdims=True))
        argmax = log_probs.argmax(axis=1)
        ids = constrained_decode(log_probs, *masks)
        assert ids.shape == (n,)
        assert is_valid(ids, *masks)
        total = float(log_probs[numpy.arange(n), ids].sum())
        assert total == pytest.approx(brute_force_best(log_probs, masks), abs=1e-9)
        if is_valid(argmax, *masks):
            assert ids.tolist() == argmax.tolist()
        else:
            n_repaired += 1
    assert n_repaired >= 10


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_constrained_decode_docs_is_each_docs_best_valid_sequence(scheme, monkeypatch):
    """Docs of different lengths decoded together (in several groups) get
    what each gets alone: the argmax when valid, else the best valid path."""
    monkeypatch.setattr(decoding, "VITERBI_BATCH", 12)
    labels = scheme_labels(["X", "Y"], scheme)
    masks = transition_masks(labels, scheme)
    rng = numpy.random.default_rng(3)
    # Empty docs first, between and last.
    lengths = [0, 0] + [int(n) for n in rng.integers(0, 6, size=60)] + [0, 0]
    scores = rng.normal(scale=3.0, size=(sum(lengths), len(labels)))
    log_probs = scores - numpy.log(numpy.exp(scores).sum(axis=1, keepdims=True))
    ids = constrained_decode_docs(log_probs, lengths, *masks)
    assert ids.shape == (sum(lengths),)
    offset, n_repaired = 0, 0
    for n in lengths:
        doc_lp, doc_ids = log_probs[offset : offset + n], ids[offset : offset + n]
        offset += n
        if n == 0:
            continue
        assert is_valid(doc_ids, *masks)
        total = float(doc_lp[numpy.arange(n), doc_ids].sum())
        assert total == pytest.approx(brute_force_best(doc_lp, masks), abs=1e-9)
        if is_valid(doc_lp.argmax(axis=1), *masks):
            assert doc_ids.tolist() == doc_lp.argmax(axis=1).tolist()
        else:
            n_repaired += 1
    assert n_repaired >= 10


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_constrained_decode_float32_and_empty(scheme):
    labels = scheme_labels(["X"], scheme)
    masks = transition_masks(labels, scheme)
    assert constrained_decode(numpy.zeros((0, len(labels)), dtype="float32"), *masks).shape == (0,)
    rng = numpy.random.default_rng(1)
    for _ in range(20):
        scores = rng.normal(scale=4.0, size=(3, len(labels))).astype("float32")
        log_probs = scores - numpy.log(numpy.exp(scores).sum(axis=1, keepdims=True))
        ids = constrained_decode(log_probs, *masks)
        assert is_valid(ids, *masks)
        total = float(log_probs[numpy.arange(3), ids].sum())
        assert total == pytest.approx(brute_force_best(log_probs, masks), abs=1e-4)


# Spans ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme,names,expected",
    [
        ("BIO", ["B-X", "I-X", "O", "B-Y"], [(0, 2, "X"), (3, 4, "Y")]),
        ("BIO", ["B-X", "B-X", "I-X", "B-X"], [(0, 1, "X"), (1, 3, "X"), (3, 4, "X")]),
        ("BIO", ["O", "B-X", "I-X", "I-X"], [(1, 4, "X")]),
        ("BIO", ["B-X", "B-WORK-OF-ART", "I-WORK-OF-ART", "B-X"],
         [(0, 1, "X"), (1, 3, "WORK-OF-ART"), (3, 4, "X")]),
        ("BIO", ["O", "O"], []),
        ("BIO", [], []),
        ("BILUO", ["U-X", "U-X", "B-X", "L-X"], [(0, 1, "X"), (1, 2, "X"), (2, 4, "X")]),
        ("BILUO", ["B-WORK-OF-ART", "I-WORK-OF-ART", "L-WORK-OF-ART", "O", "U-X"],
         [(0, 3, "WORK-OF-ART"), (4, 5, "X")]),
        ("BILUO", ["O", "B-X", "L-X", "B-X", "L-X"], [(1, 3, "X"), (3, 5, "X")]),
    ],
)
def test_label_spans(scheme, names, expected):
    labels = scheme_labels(["X", "WORK-OF-ART", "Y"], scheme)
    rng = numpy.random.default_rng(len(names))
    probs = rng.uniform(0.3, 1.0, size=len(names)).astype("float32")
    spans = label_spans(ids_of(labels, names), probs, labels)
    assert [s[:3] for s in spans] == expected
    for start, end, _, score in spans:
        assert score == pytest.approx(float(numpy.mean(probs[start:end])), abs=1e-6)
        assert 0.0 <= score <= 1.0


def test_label_spans_scores_are_token_means():
    labels = scheme_labels(["PER"], "BIO")
    ids = ids_of(labels, ["B-PER", "I-PER", "O", "B-PER"])
    spans = label_spans(ids, [0.9, 0.5, 0.99, 0.8], labels)
    assert spans[0][:3] == (0, 2, "PER") and spans[0][3] == pytest.approx(0.7)
    assert spans[1][:3] == (3, 4, "PER") and spans[1][3] == pytest.approx(0.8)


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_i_run_after_o_keeps_its_entity(scheme):
    """An invalid I- run after O that the probabilities favour becomes an
    entity over those tokens, not nothing."""
    labels = scheme_labels(["PER", "LOC"], scheme)
    masks = transition_masks(labels, scheme)
    inside = "I-PER"
    rows = [
        {"O": 0.9},
        {inside: 0.6, "O": 0.2, "B-PER": 0.1},
        {inside: 0.7, "O": 0.1} if scheme == "BIO" else {inside: 0.5, "L-PER": 0.4, "O": 0.05},
        {"O": 0.9},
    ]
    log_probs = log_probs_from(labels, rows)
    argmax = log_probs.argmax(axis=1)
    assert names_of(labels, argmax)[1:3] == [inside, inside]
    assert not is_valid(argmax, *masks)
    ids = constrained_decode(log_probs, *masks)
    assert is_valid(ids, *masks)
    probs = numpy.exp(log_probs[numpy.arange(len(ids)), ids])
    spans = label_spans(ids, probs, labels)
    assert [s[:3] for s in spans] == [(1, 3, "PER")]


# IO ----------------------------------------------------------------------------------


def test_io_scheme_labels_and_gold():
    assert scheme_labels(["PER", "WORK-OF-ART"], "IO") == ["O", "I-PER", "I-WORK-OF-ART"]
    # Every spaCy BILUO tag of an entity becomes I-; missing stays missing.
    for tag in ("B-PER", "I-PER", "L-PER", "U-PER"):
        assert biluo_to_scheme(tag, "IO") == "I-PER"
    assert biluo_to_scheme("U-WORK-OF-ART", "IO") == "I-WORK-OF-ART"
    assert biluo_to_scheme("O", "IO") == "O"
    assert biluo_to_scheme("-", "IO") is None and biluo_to_scheme(None, "IO") is None


def test_io_every_sequence_is_valid_and_argmax_is_kept():
    labels = scheme_labels(["X", "Y"], "IO")
    masks = transition_masks(labels, "IO")
    assert all(mask.all() for mask in masks)
    rng = numpy.random.default_rng(2)
    for n in range(0, 6):
        scores = rng.normal(scale=3.0, size=(n, len(labels)))
        log_probs = scores - numpy.log(numpy.exp(scores).sum(axis=1, keepdims=True))
        assert constrained_decode(log_probs, *masks).tolist() == log_probs.argmax(axis=1).tolist()


@pytest.mark.parametrize(
    "names,expected",
    [
        (["I-X", "I-X", "O", "I-Y"], [(0, 2, "X"), (3, 4, "Y")]),
        # A change of type ends one entity and starts the next.
        (["I-X", "I-WORK-OF-ART", "I-WORK-OF-ART", "I-X"],
         [(0, 1, "X"), (1, 3, "WORK-OF-ART"), (3, 4, "X")]),
        (["O", "I-X", "I-X", "I-X"], [(1, 4, "X")]),
        (["O", "O"], []),
    ],
)
def test_io_label_spans_are_runs_of_one_type(names, expected):
    labels = scheme_labels(["X", "WORK-OF-ART", "Y"], "IO")
    spans = label_spans(ids_of(labels, names), [0.5] * len(names), labels)
    assert [s[:3] for s in spans] == expected


def loop_label_spans(ids, probs, labels):
    """label_spans as a plain loop over tokens: the reading it must match."""
    spans = []
    begin, ent_type = None, ""
    for i, label_id in enumerate(ids):
        prefix, t = split_label(labels[label_id])
        if begin is not None and (prefix in ("O", "B", "U") or t != ent_type):
            spans.append((begin, i, ent_type))
            begin = None
        if prefix in ("B", "U") or (prefix in ("I", "L") and begin is None):
            begin, ent_type = i, t
        if prefix in ("L", "U"):
            spans.append((begin, i + 1, ent_type))
            begin = None
    if begin is not None:
        spans.append((begin, len(ids), ent_type))
    return spans


@pytest.mark.parametrize("scheme", ["BIO", "BILUO", "IO"])
def test_label_spans_match_a_token_loop_on_any_sequence(scheme):
    """Valid or not, every label sequence is read as the token loop reads it."""
    labels = scheme_labels(["X", "WORK-OF-ART", "Y"], scheme)
    rng = numpy.random.default_rng(7)
    for n in list(range(0, 7)) * 50 + [200] * 20:
        ids = rng.integers(0, len(labels), size=n)
        probs = rng.uniform(0.0, 1.0, size=n).astype("float32")
        spans = label_spans(ids, probs, labels)
        assert [s[:3] for s in spans] == loop_label_spans(ids, probs, labels)
        for start, end, _, score in spans:
            assert score == pytest.approx(float(numpy.mean(probs[start:end])), abs=1e-6)
            assert 0.0 <= score <= 1.0


# What a repair does not promise -------------------------------------------------------


def test_repair_can_drop_the_entity_of_an_invalid_argmax():
    """README: decoding can choose all-O. The argmax `O I-PER O` is invalid;
    `O O O` (0.9 * 0.35 * 0.9) beats `O B-PER O` (0.9 * 0.05 * 0.9), so the
    entity the argmax had is gone."""
    labels = scheme_labels(["PER", "LOC"], "BIO")
    masks = transition_masks(labels, "BIO")
    log_probs = log_probs_from(
        labels, [{"O": 0.9}, {"I-PER": 0.4, "O": 0.35, "B-PER": 0.05}, {"O": 0.9}]
    )
    argmax = log_probs.argmax(axis=1)
    assert names_of(labels, argmax) == ["O", "I-PER", "O"]
    assert [s[:3] for s in label_spans(argmax, [1.0] * 3, labels)] == [(1, 2, "PER")]
    ids = constrained_decode(log_probs, *masks)
    assert names_of(labels, ids) == ["O", "O", "O"]
    assert label_spans(ids, [1.0] * 3, labels) == []


def test_repair_can_move_boundaries_and_change_types():
    """The argmax `B-PER I-LOC` reads as PER [0, 1) and LOC [1, 2); its best
    valid repair `B-LOC I-LOC` (0.4 * 0.6) is one LOC [0, 2)."""
    labels = scheme_labels(["PER", "LOC"], "BIO")
    masks = transition_masks(labels, "BIO")
    log_probs = log_probs_from(
        labels,
        [{"B-PER": 0.45, "B-LOC": 0.4, "O": 0.05}, {"I-LOC": 0.6, "I-PER": 0.1, "B-LOC": 0.2}],
    )
    argmax = log_probs.argmax(axis=1)
    assert [s[:3] for s in label_spans(argmax, [1.0] * 2, labels)] == [(0, 1, "PER"), (1, 2, "LOC")]
    ids = constrained_decode(log_probs, *masks)
    assert names_of(labels, ids) == ["B-LOC", "I-LOC"]
    assert [s[:3] for s in label_spans(ids, [1.0] * 2, labels)] == [(0, 2, "LOC")]


# Entity scores: the type's probability mass -------------------------------------------


def layout_of(scheme: str, types=("PER", "LOC")) -> LabelLayout:
    return LabelLayout(("ents",), scheme, {"ents": tuple(types)})


def predict_entities(layout: LabelLayout, log_probs, lengths=None, **kwargs):
    """The component's path from log-probabilities to each doc's entities:
    decode, per_doc_predictions (temperature), entity_spans (map, threshold)."""
    lengths = [len(log_probs)] if lengths is None else lengths
    decoded = decode(layout, numpy.asarray(log_probs, dtype="float32"), lengths)
    out = []
    for prediction in per_doc_predictions(decoded, lengths, kwargs.get("calibration")):
        ids, _ = prediction["ents"]
        mass, repaired = prediction[ENTITY_TOKENS]
        out.append(
            entity_spans(ids, mass, layout.output_labels("ents"), repaired=repaired, **kwargs)
        )
    return out


REPAIRED_ROWS = {
    # The argmax `O I-PER O` is invalid; Viterbi picks `O B-PER O`, whose
    # B-PER the model gave 0.06: the old score (the mean probability of the
    # decoded labels) was 0.06. The type mass is I-PER + B-PER = 0.96.
    "BIO": [{"O": 0.9}, {"I-PER": 0.9, "B-PER": 0.06, "O": 0.02}, {"O": 0.9}],
    # The argmax `O I-PER O` is invalid (I- after O); `O U-PER O` wins, and
    # U-PER had 0.05: type mass I-PER + U-PER + B-PER + L-PER = 0.9 + 0.05 +
    # 0.01 + 0.01 = 0.97.
    "BILUO": [
        {"O": 0.9},
        {"I-PER": 0.9, "U-PER": 0.05, "B-PER": 0.01, "L-PER": 0.01, "O": 0.02},
        {"O": 0.9},
    ],
}


@pytest.mark.parametrize("scheme,mass", [("BIO", 0.96), ("BILUO", 0.97)])
def test_repaired_entity_scores_its_type_mass(scheme, mass):
    layout = layout_of(scheme)
    labels = layout.output_labels("ents")
    log_probs = log_probs_from(labels, REPAIRED_ROWS[scheme])
    assert not is_valid(log_probs.argmax(axis=1), *transition_masks(labels, scheme))
    ((entity,),) = predict_entities(layout, log_probs)
    start, end, label, score, repaired = entity
    assert (start, end, label, repaired) == (1, 2, "PER", True)
    assert score == pytest.approx(mass, abs=1e-5)
    # Not the probability of the decoded label (B-PER, U-PER), which scored
    # it before: under 0.1.
    decoded = "B-PER" if scheme == "BIO" else "U-PER"
    assert float(numpy.exp(log_probs[1, labels.index(decoded)])) < 0.1
    # A threshold of 0.5 keeps it.
    assert predict_entities(layout, log_probs, threshold=0.5) == [[entity]]


@pytest.mark.parametrize(
    "scheme,rows,expected",
    [
        # B-PER I-PER: (0.6 + 0.2) and (0.5 + 0.1) -> mean 0.7; LOC's mass is
        # not counted.
        ("BIO",
         [{"B-PER": 0.6, "I-PER": 0.2, "O": 0.1, "B-LOC": 0.05, "I-LOC": 0.05},
          {"I-PER": 0.5, "B-PER": 0.1, "I-LOC": 0.3, "O": 0.05, "B-LOC": 0.05},
          {"O": 0.8, "B-LOC": 0.1, "I-PER": 0.05, "B-PER": 0.03, "I-LOC": 0.02}],
         [(0, 2, "PER", 0.7, False)]),
        # B-PER L-PER: (0.5 + 0.2 + 0.1 + 0.08) and (0.6 + 0.2 + 0.05 + 0.03)
        # -> 0.88 (0.005 on each LOC label).
        ("BILUO",
         [{"B-PER": 0.5, "U-PER": 0.2, "I-PER": 0.1, "L-PER": 0.08, "O": 0.1},
          {"L-PER": 0.6, "I-PER": 0.2, "U-PER": 0.05, "B-PER": 0.03, "O": 0.1}],
         [(0, 2, "PER", 0.88, False)]),
        # IO: I-PER alone is the type: 0.7 and 0.6 -> 0.65, as the old score.
        ("IO",
         [{"I-PER": 0.7, "I-LOC": 0.2, "O": 0.1}, {"I-PER": 0.6, "O": 0.3, "I-LOC": 0.1},
          {"O": 0.5, "I-LOC": 0.45, "I-PER": 0.05}],
         [(0, 2, "PER", 0.65, False)]),
    ],
)
def test_entity_score_is_the_mean_type_mass(scheme, rows, expected):
    layout = layout_of(scheme)
    (entities,) = predict_entities(layout, log_probs_from(layout.output_labels("ents"), rows))
    assert [e[:3] + e[4:] for e in entities] == [e[:3] + e[4:] for e in expected]
    for got, want in zip(entities, expected):
        assert got[3] == pytest.approx(want[3], abs=1e-5)


@pytest.mark.parametrize("scheme", ["BIO", "BILUO", "IO"])
def test_type_mass_is_taken_after_the_temperature(scheme):
    """With a temperature T, each token's probabilities are
    softmax(log p / T) before the type's labels are summed."""
    layout = layout_of(scheme)
    labels = layout.output_labels("ents")
    rng = numpy.random.default_rng(5)
    log_probs = numpy.log(rng.dirichlet(numpy.ones(len(labels)) * 0.3, size=12))
    calibration = {"temperature": {"ents": 1.7}}
    (entities,) = predict_entities(layout, log_probs, calibration=calibration)
    (plain,) = predict_entities(layout, log_probs)
    assert [e[:3] for e in entities] == [e[:3] for e in plain]  # decoding unchanged
    scaled = numpy.exp(log_probs / 1.7)
    scaled /= scaled.sum(axis=1, keepdims=True)
    assert entities
    for start, end, label, score, _ in entities:
        columns = [i for i, name in enumerate(labels) if split_label(name)[1] == label]
        assert score == pytest.approx(scaled[start:end, columns].sum(axis=1).mean(), abs=1e-5)


def loop_repaired(ids, argmax, spans):
    return [bool((ids[s:e] != argmax[s:e]).any()) for s, e, *_ in spans]


@pytest.mark.parametrize("scheme", ["BIO", "BILUO", "IO"])
def test_scores_bounded_and_at_least_the_decoded_labels_mean(scheme):
    """Random log-probabilities, many docs at once: every score is in [0, 1]
    and at least the mean probability of the entity's decoded labels (the old
    score); an entity is marked repaired exactly when one of its labels is
    not the argmax; a calibration map keeps scores in [0, 1]."""
    layout = layout_of(scheme, ("X", "WORK-OF-ART", "Y"))
    labels = layout.output_labels("ents")
    rng = numpy.random.default_rng(11)
    lengths = [int(n) for n in rng.integers(0, 9, size=150)]
    scores = rng.normal(scale=3.0, size=(sum(lengths), len(labels)))
    log_probs = scores - numpy.log(numpy.exp(scores).sum(axis=1, keepdims=True))
    per_doc = predict_entities(layout, log_probs, lengths)
    mapped = predict_entities(
        layout, log_probs, lengths,
        calibration={"temperature": {"ents": 0.3},
                     "entity_map": {"method": "platt", "a": 40.0, "b": -20.0}},
    )
    offset, n_entities, n_repaired = 0, 0, 0
    for n, entities, entities_mapped in zip(lengths, per_doc, mapped):
        lp = log_probs[offset : offset + n].astype("float32")
        offset += n
        ids = constrained_decode(lp, *transition_masks(labels, scheme))
        probs = numpy.exp(lp[numpy.arange(n), ids])
        old = label_spans(ids, probs, labels)
        assert [e[:3] for e in entities] == [s[:3] for s in old]
        assert [e[4] for e in entities] == loop_repaired(ids, lp.argmax(axis=1), old)
        for entity, (*_, old_score) in zip(entities, old):
            assert 0.0 <= entity[3] <= 1.0
            assert entity[3] >= old_score - 1e-6
        assert all(0.0 <= e[3] <= 1.0 for e in entities_mapped)
        n_entities += len(entities)
        n_repaired += sum(e[4] for e in entities)
    assert n_entities > 100
    assert (n_repaired > 20) == (scheme != "IO") and (n_repaired == 0) == (scheme == "IO")


def test_threshold_keeps_a_repaired_entity_in_the_pipeline(wordpiece, monkeypatch):
    """Through the component: `O I-PER O O` from the model is repaired to
    `O B-PER O O`; with `threshold = 0.5` the entity is kept in doc.ents and
    the span group, scored by its type mass (0.96, not B-PER's 0.06) and
    marked repaired in attrs["repaired"]."""
    nlp = make_nlp(wordpiece, threshold=0.5)
    nlp.initialize(lambda: make_examples(nlp))
    pipe = nlp.get_pipe("token_classifier")
    labels = pipe.layout.output_labels("ents")
    rows = REPAIRED_ROWS["BIO"] + [{"O": 0.9}]
    fixed = log_probs_from(labels, rows).astype("float32")
    # The head's output for every doc (thinc's Model has no instance dict).
    model_class, original = type(pipe.model), type(pipe.model).predict

    def predict(model, docs):
        return [fixed for _ in docs] if model is pipe.model else original(model, docs)

    monkeypatch.setattr(model_class, "predict", predict)
    doc = nlp("Angela Merkel visited Paris")
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(1, 2, "PER")]
    group = doc.spans["token_classifier"]
    assert [(s.start, s.end, s.label_) for s in group] == [(1, 2, "PER")]
    assert group.attrs["scores"] == [pytest.approx(0.96, abs=1e-5)]
    assert group.attrs["repaired"] == [True]
    # The token probability reported is still that of the decoded label.
    assert doc._.tokclf_probs["token_classifier"]["ents"][1] == pytest.approx(0.06, abs=1e-5)
