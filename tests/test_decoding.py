"""Label ids -> entities (spacy_tokclf/decoding.py, with the label rules of
spacy_tokclf/labels.py): scheme labels,
transition masks, constrained decoding and spans. The repair policy under
test: an invalid per-token argmax is replaced by the most probable valid
sequence, so no entity is silently dropped.
"""
import itertools
from typing import List, Sequence

import numpy
import pytest

from spacy_tokclf import decoding
from spacy_tokclf.decoding import (
    constrained_decode,
    constrained_decode_docs,
    is_valid,
    label_spans,
    transition_masks,
)
from spacy_tokclf.labels import biluo_to_scheme, scheme_labels, split_label

TYPES = ["PER", "WORK-OF-ART"]


def ids_of(labels: Sequence[str], names: Sequence[str]) -> numpy.ndarray:
    return numpy.asarray([labels.index(n) for n in names], dtype="int64")


def names_of(labels: Sequence[str], ids: Sequence[int]) -> List[str]:
    return [labels[i] for i in ids]


def log_probs_from(labels: Sequence[str], rows: List[dict]) -> numpy.ndarray:
    """Per token, {label: probability}; the rest of the mass spread evenly."""
    out = numpy.zeros((len(rows), len(labels)))
    for i, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (len(labels) - len(row))
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
