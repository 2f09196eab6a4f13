"""Label scores -> label ids, probabilities and entity spans.

The decode half of the prediction path (the writing half is annotation.py):
the head's scores are split into the columns of each task (labels.LabelLayout),
turned into log-probabilities, and decoded. Tags take the argmax.

Entities are predicted as per-token BIO, BILUO or IO labels, and decoding is
constrained to valid label sequences (tests/test_decoding.py):
- each doc's labels form a valid sequence of its scheme;
- when the per-token argmax is valid, it is the output unchanged;
- otherwise the output is, among all valid sequences of the doc, one with the
  highest sum of per-token log-probabilities (Viterbi search over the allowed
  transitions, each doc on its own).
Nothing more is promised about entities: the best valid sequence can move a
boundary, change a type, or hold no entity at all where the argmax had one
(an `I-PER` after `O` with `O` likelier than `B-PER` becomes `O`).
In IO every sequence is valid: an entity is a maximal run of one type's `I-`
labels, so two adjacent entities of the same type cannot be told apart.

An entity's score is the mean, over its tokens, of the probability of its
type: the sum of the probabilities of all labels of that type (see
`type_mass`). Entities some of whose labels the repair changed are
"repaired" (doc.spans[spans_key].attrs["repaired"]).
"""
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy

from .calibrated import map_entity_scores, row_sums, scale_log_probs, temperature_of
from .labels import OUTSIDE, LabelLayout, split_label

# (start token, end token exclusive, entity type, score)
EntitySpan = Tuple[int, int, str, float]
# An EntitySpan and whether decoding repaired it (see `span_flags`).
Entity = Tuple[int, int, str, float, bool]
# Per doc: task -> (label ids [n_tokens], probability of each id [n_tokens]);
# with "ents", also ENTITY_TOKENS -> (type_mass [n_tokens], repaired [n_tokens]).
DocPrediction = Dict[str, Tuple[numpy.ndarray, numpy.ndarray]]
# Per task, over the tokens of a batch of docs one after another:
# (log-probabilities [n_tokens, n_labels], decoded label ids [n_tokens]); with
# "ents", also ENTITY_TOKENS -> (label_types(labels) [n_labels], repaired
# [n_tokens]: the decoded label is not the argmax).
BatchDecoding = Dict[str, Tuple[numpy.ndarray, numpy.ndarray]]
# The key of the entity-only arrays beside the tasks' (not a task).
ENTITY_TOKENS = "ents:entity_tokens"


def log_softmax(scores: Any, xp: Any = numpy) -> Any:
    """Row-wise log-softmax (numpy/cupy), summed column by column (row_sums)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - xp.log(row_sums(xp.exp(shifted)))


def decode(layout: LabelLayout, scores: numpy.ndarray, lengths: Sequence[int]) -> BatchDecoding:
    """Per task, the log-probabilities and decoded label ids of the tokens of
    a batch of docs, all at once (no loop over docs or tokens here).

    scores [sum(lengths), layout.n_outputs]: the head's output, the docs'
        rows one after another, on the host.
    lengths: the docs' lengths.
    """
    per_task = {}
    for task, cols in layout.slices.items():
        log_probs = log_softmax(scores[:, cols])
        if task == "ents":
            labels = tuple(layout.output_labels(task))
            masks = transition_masks(labels, layout.scheme)
            ids = constrained_decode_docs(log_probs, lengths, *masks)
            per_task[ENTITY_TOKENS] = (label_types(labels), ids != log_probs.argmax(axis=1))
        else:
            ids = log_probs.argmax(axis=1)
        per_task[task] = (log_probs, ids)
    return per_task


def empty_decoding(layout: LabelLayout) -> BatchDecoding:
    """The decoding of a batch without tokens."""
    decoded = {
        task: (
            numpy.zeros((0, len(layout.output_labels(task))), dtype="float32"),
            numpy.zeros((0,), dtype="int64"),
        )
        for task in layout.tasks
    }
    if "ents" in layout.tasks:
        labels = tuple(layout.output_labels("ents"))
        decoded[ENTITY_TOKENS] = (label_types(labels), numpy.zeros((0,), dtype=bool))
    return decoded


def per_doc_predictions(
    decoded: BatchDecoding, lengths: Sequence[int], calibration: Optional[Dict]
) -> List[DocPrediction]:
    """Split a batch's decoding per doc: task -> (ids, probability of each id),
    and for entities ENTITY_TOKENS -> (type mass, repaired) per token.
    Calibration changes the probabilities reported for the chosen labels (and
    the type mass, from the same temperature-scaled probabilities), never the
    choice."""
    per_task = {}
    for task, (log_probs, ids) in decoded.items():
        if task == ENTITY_TOKENS:
            continue
        scaled = scale_log_probs(log_probs, temperature_of(calibration, task))
        probs = numpy.exp(scaled[numpy.arange(len(ids)), ids]).astype("float32")
        per_task[task] = (ids, probs)
        if task == "ents" and ENTITY_TOKENS in decoded:
            types, repaired = decoded[ENTITY_TOKENS]
            mass = type_mass(numpy.exp(scaled), ids, types).astype("float32")
            per_task[ENTITY_TOKENS] = (mass, repaired)
    bounds = numpy.cumsum(lengths)[:-1]
    split = {
        task: list(zip(numpy.split(a, bounds), numpy.split(b, bounds)))
        for task, (a, b) in per_task.items()
    }
    return [{task: split[task][i] for task in per_task} for i in range(len(lengths))]


@lru_cache(maxsize=64)
def label_types(labels: Tuple[str, ...]) -> numpy.ndarray:
    """Per label, the index of its entity type among the labels' types; "O"
    gets an index of its own (one past the types'). [n_labels], read-only."""
    _, type_index, types = _label_codes(tuple(labels))
    out = numpy.where(type_index < 0, len(types), type_index)
    out.flags.writeable = False
    return out


def type_mass(probs: numpy.ndarray, ids: numpy.ndarray, types: numpy.ndarray) -> numpy.ndarray:
    """Per token, the probability of the type of its decoded label: the sum of
    the probabilities of all labels of that type (B-X + I-X in BIO, B-X + I-X
    + L-X + U-X in BILUO, I-X in IO; p(O) for "O").

    probs [n_tokens, n_labels] (rows sum to 1), ids [n_tokens], types
    [n_labels] (label_types) -> [n_tokens] in [0, 1].

    Why this and not the decoded label's own probability: when decoding
    repairs `O I-PER` to `O B-PER`, the model put its mass on I-PER, and
    p(B-PER) alone is far below the odds that the token is a PER at all;
    entities scored so were under 0.1 while two thirds of them were right.
    The sum over the prefixes is the probability that the token lies in an
    entity of this type, whatever its position in it, and it is the same
    quantity for every entity, repaired or not (in IO it is the label's own
    probability). Taken after the temperature, it is as calibrated as the
    token probabilities it sums; the entity score is its mean over the entity's
    tokens (in [0, 1], the expected share of the entity's tokens that are of
    its type), and the fitted entity map turns that into the probability that
    the entity is right. The mean, not the product: the tokens of one entity
    are far from independent, and a product would score long entities down
    for their length alone. What the type mass does not see is the boundary
    (B-X against I-X), which the entity map is left to learn on average.
    """
    same = types[None, :] == types[ids][:, None]  # [n_tokens, n_labels]
    return numpy.clip(row_sums(probs * same)[:, 0], 0.0, 1.0)


def entity_spans(
    ids: numpy.ndarray,
    scores: numpy.ndarray,
    labels: Sequence[str],
    *,
    repaired: Optional[numpy.ndarray] = None,
    calibration: Optional[Dict] = None,
    threshold: Optional[float] = None,
) -> List[Entity]:
    """The entities of one doc's decoded labels, each scored by the mean of
    its tokens' `scores` (the type mass), through the calibration's entity map
    (when the component is calibrated), less those scored under `threshold`,
    and whether decoding repaired it (some of its labels are not the argmax:
    `repaired` per token; None: none were).
    """
    spans = label_spans(ids, scores, labels)
    if not spans:
        return []
    flags = [False] * len(spans)
    if repaired is not None:
        bounds = numpy.asarray([span[:2] for span in spans], dtype="int64")
        flags = span_flags(bounds[:, 0], bounds[:, 1], repaired).tolist()
    mapped = [span[3] for span in spans]
    if (calibration or {}).get("entity_map"):
        mapped = map_entity_scores(calibration, mapped).tolist()
    return [
        (start, end, label, score, flag)
        for (start, end, label, _), score, flag in zip(spans, mapped, flags)
        if threshold is None or score >= threshold
    ]


def span_flags(starts: numpy.ndarray, ends: numpy.ndarray, flags: numpy.ndarray) -> numpy.ndarray:
    """Per span [start, end), whether any of its tokens' `flags` is set
    (vectorized: one cumulative sum)."""
    counts = numpy.zeros((len(flags) + 1,), dtype="int64")
    numpy.cumsum(numpy.asarray(flags, dtype="int64"), out=counts[1:])
    return (counts[ends] - counts[starts]) > 0


def transition_masks(
    labels: Sequence[str], scheme: str
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Which labels may start a sequence, follow each other, and end it.

    RETURNS: start [L] bool, transitions [L_prev, L_next] bool, end [L] bool
        (read-only arrays, shared between calls).
    """
    return _transition_masks(tuple(labels), scheme)


@lru_cache(maxsize=64)
def _transition_masks(
    labels: Tuple[str, ...], scheme: str
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    # Cached: a component's label set is fixed once it is initialized.
    parts = [split_label(label) for label in labels]
    n = len(labels)
    start = numpy.zeros((n,), dtype=bool)
    end = numpy.zeros((n,), dtype=bool)
    trans = numpy.zeros((n, n), dtype=bool)
    inside = ("I",) if scheme == "BIO" else ("I", "L")
    open_prefixes = ("B", "I")  # after these, the entity must go on (BILUO)
    for j, (p, t) in enumerate(parts):
        start[j] = p not in inside
        end[j] = scheme == "BIO" or p not in open_prefixes
    for i, (pp, pt) in enumerate(parts):
        for j, (p, t) in enumerate(parts):
            continues = pp in ("B", "I") and pt == t
            if scheme == "BIO":
                trans[i, j] = p != "I" or continues
            elif pp in open_prefixes:
                trans[i, j] = p in ("I", "L") and continues
            else:
                trans[i, j] = p not in ("I", "L")
    if scheme == "IO":
        # Any label may start, follow any other and end: runs are entities.
        start[:], trans[:], end[:] = True, True, True
    for mask in (start, trans, end):
        mask.flags.writeable = False  # shared by every caller of the cache
    return start, trans, end


def is_valid(ids: numpy.ndarray, start, trans, end) -> bool:
    if len(ids) == 0:
        return True
    return bool(start[ids[0]] and end[ids[-1]] and trans[ids[:-1], ids[1:]].all())


def constrained_decode(log_probs: numpy.ndarray, start, trans, end) -> numpy.ndarray:
    """The most probable label sequence that the transition masks allow.

    log_probs [n_tokens, n_labels] -> label ids [n_tokens].
    """
    return constrained_decode_docs(log_probs, [len(log_probs)], start, trans, end)


# Padded positions (docs x longest doc) per batched Viterbi pass, at most.
VITERBI_BATCH = 1 << 16


def constrained_decode_docs(
    log_probs: numpy.ndarray, doc_lengths: Sequence[int], start, trans, end
) -> numpy.ndarray:
    """constrained_decode for many docs at once, with no loop over tokens.

    log_probs [sum(lengths), n_labels]: the docs' rows one after another.
    RETURNS [sum(lengths)]: label ids. Docs whose argmax is valid keep it;
    the others are searched together, one step per token position.
    """
    ids = log_probs.argmax(axis=1)
    lengths = numpy.asarray(doc_lengths, dtype="int64")
    offsets = numpy.zeros((len(lengths) + 1,), dtype="int64")
    numpy.cumsum(lengths, out=offsets[1:])
    nonempty = numpy.flatnonzero(lengths)
    if len(ids) == 0:
        return ids
    # Which docs break a mask: first label, last label, or a transition
    # inside the doc (pairs across a doc boundary do not count).
    invalid = numpy.zeros((len(lengths),), dtype=bool)
    invalid[nonempty] |= ~start[ids[offsets[nonempty]]]
    invalid[nonempty] |= ~end[ids[offsets[nonempty + 1] - 1]]
    bad = ~trans[ids[:-1], ids[1:]]
    boundaries = offsets[1:-1]
    bad[boundaries[(boundaries > 0) & (boundaries < len(ids))] - 1] = False
    bad_pairs = numpy.flatnonzero(bad)
    invalid[numpy.searchsorted(offsets, bad_pairs, side="right") - 1] = True
    todo = numpy.flatnonzero(invalid)
    if len(todo) == 0:
        return ids
    # Shortest first, in groups of at most VITERBI_BATCH padded positions.
    todo = todo[numpy.argsort(lengths[todo], kind="stable")]
    i = 0
    while i < len(todo):
        j = i + 1
        while j < len(todo) and (j + 1 - i) * lengths[todo[j]] <= VITERBI_BATCH:
            j += 1
        group = todo[i:j]
        paths = _viterbi(log_probs, offsets[group], lengths[group], start, trans, end)
        for k, d in enumerate(group):
            ids[offsets[d] : offsets[d + 1]] = paths[k, : lengths[d]]
        i = j
    return ids


def _viterbi(log_probs, firsts, lengths, start, trans, end) -> numpy.ndarray:
    """Best allowed paths of docs (first row, length) of log_probs, padded
    to the longest: [n_docs, max(lengths)]."""
    n_docs, width = len(lengths), int(lengths.max())
    n_labels = log_probs.shape[1]
    # Masks as additive scores; -inf would turn 0 * inf into nan below.
    blocked = numpy.float32(-1e9)
    trans_score = numpy.where(trans, numpy.float32(0.0), blocked)
    end_score = numpy.where(end, numpy.float32(0.0), blocked)
    labels = numpy.arange(n_labels)
    # rows[d, t]: the row of doc d's token t (its last token past its end).
    rows = firsts[:, None] + numpy.minimum(numpy.arange(width)[None, :], lengths[:, None] - 1)
    score = log_probs[rows[:, 0]] + numpy.where(start, 0.0, blocked)
    back = numpy.zeros((n_docs, width, n_labels), dtype="int64")
    back[:, :] = labels
    for t in range(1, width):
        active = t < lengths
        cand = score[active][:, :, None] + trans_score  # [docs, L_prev, L_next]
        best = cand.argmax(axis=1)
        back[active, t] = best
        score[active] = (
            numpy.take_along_axis(cand, best[:, None, :], axis=1)[:, 0] + log_probs[rows[active, t]]
        )
    path = numpy.zeros((n_docs, width), dtype="int64")
    path[:, -1] = (score + end_score).argmax(axis=1)
    # Past a doc's end the pointers stay on the same label, so its own last
    # position gets the label chosen at the end.
    docs = numpy.arange(n_docs)
    for t in range(width - 1, 0, -1):
        path[:, t - 1] = back[docs, t, path[:, t]]
    return path


# Prefix codes of label_spans.
_O, _B, _I, _L, _U = range(5)
_PREFIX_CODE = {OUTSIDE: _O, "B": _B, "I": _I, "L": _L, "U": _U}


@lru_cache(maxsize=64)
def _label_codes(labels: Tuple[str, ...]) -> Tuple[numpy.ndarray, numpy.ndarray, List[str]]:
    """Per label: prefix code, entity type index (-1 for "O"); the types."""
    types: List[str] = []
    prefix = numpy.zeros((len(labels),), dtype="int8")
    type_index = numpy.full((len(labels),), -1, dtype="int64")
    for i, label in enumerate(labels):
        p, t = split_label(label)
        prefix[i] = _PREFIX_CODE[p]
        if p != OUTSIDE:
            if t not in types:
                types.append(t)
            type_index[i] = types.index(t)
    prefix.flags.writeable = False
    type_index.flags.writeable = False
    return prefix, type_index, types


def label_spans(
    label_ids: Union[Sequence[int], numpy.ndarray],
    probs: Union[Sequence[float], numpy.ndarray],
    labels: Sequence[str],
) -> List[EntitySpan]:
    """Entity spans of a valid BIO/BILUO/IO label sequence, each scored by the
    mean of its tokens' `probs` (clipped to [0, 1]; the component gives the
    type mass, see `type_mass`). A run of `I-` labels of one type is one
    entity (as IO reads it).

    Any sequence is read without error: an `I-`/`L-` that does not continue
    an open entity of its type starts one, and `L-`/`U-` close theirs.
    Vectorized: no Python loop over tokens.
    """
    ids = numpy.asarray(label_ids, dtype="int64")
    if len(ids) == 0:
        return []
    prefix_of, type_of, types = _label_codes(tuple(labels))
    prefix = prefix_of[ids]
    etype = type_of[ids]
    inside = prefix != _O
    # Token i continues the entity open at i-1: it is I-/L- of the same type,
    # and i-1 left its entity open (B- or I-).
    continues = numpy.zeros((len(ids),), dtype=bool)
    continues[1:] = (
        ((prefix[1:] == _I) | (prefix[1:] == _L))
        & ((prefix[:-1] == _B) | (prefix[:-1] == _I))
        & (etype[1:] == etype[:-1])
    )
    starts = numpy.flatnonzero(inside & ~continues)
    # An entity ends after token i unless token i+1 continues it.
    ends_after = inside.copy()
    ends_after[:-1] &= ~continues[1:]
    ends = numpy.flatnonzero(ends_after) + 1
    sums = numpy.zeros((len(ids) + 1,), dtype="float64")
    numpy.cumsum(numpy.asarray(probs, dtype="float64"), out=sums[1:])
    means = numpy.clip((sums[ends] - sums[starts]) / (ends - starts), 0.0, 1.0)
    return [
        (start, end, types[t], score)
        for start, end, t, score in zip(
            starts.tolist(), ends.tolist(), etype[starts].tolist(), means.tolist()
        )
    ]
