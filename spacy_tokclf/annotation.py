"""Label ids -> Doc.ents / token.tag_.

Entities are predicted as per-token BIO, BILUO or IO labels. Decoding is
constrained to valid label sequences: when the per-token argmax is valid it is
kept as is (it is then also the best valid sequence); otherwise the most
probable valid sequence is found by Viterbi search over the allowed
transitions. So an invalid argmax (an `I-` after `O`, a `B-PER I-LOC`) never
drops or corrupts an entity: it is repaired to the nearest valid reading.
In IO every sequence is valid: an entity is a maximal run of one type's `I-`
labels, so two adjacent entities of the same type cannot be told apart.
"""
from functools import lru_cache
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy

SCHEMES = ("BIO", "BILUO", "IO")
SCHEME_PREFIXES = {"BIO": "BI", "BILUO": "BILU", "IO": "I"}
OUTSIDE = "O"

# (start token, end token exclusive, entity type, score)
EntitySpan = Tuple[int, int, str, float]


def split_label(label: str) -> Tuple[str, str]:
    """"B-WORK-OF-ART" -> ("B", "WORK-OF-ART"); "O" -> ("O", "")."""
    if label == OUTSIDE:
        return OUTSIDE, ""
    prefix, _, ent_type = label.partition("-")
    return prefix, ent_type


def scheme_labels(entity_types: Iterable[str], scheme: str) -> List[str]:
    """The per-token labels of a scheme: "O" first, then each type's prefixes."""
    prefixes = SCHEME_PREFIXES[scheme]
    return [OUTSIDE] + [f"{p}-{t}" for t in entity_types for p in prefixes]


def biluo_to_scheme(tag: Optional[str], scheme: str) -> Optional[str]:
    """Convert a spaCy BILUO tag to the component's scheme; None if missing."""
    if tag is None or tag == "" or tag == "-":
        return None
    if scheme == "BILUO" or tag == OUTSIDE:
        return tag
    prefix, ent_type = split_label(tag)
    if scheme == "IO":
        return "I-" + ent_type
    return ("B-" if prefix in ("B", "U") else "I-") + ent_type


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
    ids = log_probs.argmax(axis=1)
    if is_valid(ids, start, trans, end):
        return ids
    n, L = log_probs.shape
    # Masks as additive scores; -inf would turn 0 * inf into nan below.
    blocked = numpy.float32(-1e9)
    trans_score = numpy.where(trans, numpy.float32(0.0), blocked)
    score = log_probs[0] + numpy.where(start, 0.0, blocked)
    back = numpy.zeros((n, L), dtype="int64")
    for i in range(1, n):
        cand = score[:, None] + trans_score  # [L_prev, L_next]
        back[i] = cand.argmax(axis=0)
        score = cand[back[i], numpy.arange(L)] + log_probs[i]
    score = score + numpy.where(end, 0.0, blocked)
    path = numpy.zeros((n,), dtype="int64")
    path[-1] = score.argmax()
    for i in range(n - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def label_spans(
    ids: Sequence[int], probs: Sequence[float], labels: Sequence[str]
) -> List[EntitySpan]:
    """Entity spans of a valid BIO/BILUO/IO label sequence, each scored by the
    mean probability of its tokens' labels (in [0, 1]). A run of `I-` labels
    of one type is one entity (as IO reads it)."""
    spans: List[EntitySpan] = []
    begin: Optional[int] = None
    ent_type = ""
    for i, label_id in enumerate(ids):
        prefix, t = split_label(labels[label_id])
        if begin is not None and (prefix in ("O", "B", "U") or t != ent_type):
            spans.append((begin, i, ent_type, float(numpy.mean(probs[begin:i]))))
            begin = None
        if prefix in ("B", "U") or (prefix in ("I", "L") and begin is None):
            begin, ent_type = i, t
        if prefix in ("L", "U"):
            spans.append((begin, i + 1, ent_type, float(numpy.mean(probs[begin : i + 1]))))
            begin = None
    if begin is not None:
        spans.append((begin, len(ids), ent_type, float(numpy.mean(probs[begin:]))))
    return spans
