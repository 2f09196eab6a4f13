"""The training loss: gold label ids from Examples, and softmax cross-entropy
per task over the head's columns of that task, on the model's device.

Tokens with missing annotation (unknown entity status, empty tag, misaligned
gold) have id -1: they add no loss and no gradient.
"""
from typing import Any, Callable, List, Sequence, Tuple

import numpy
from spacy.training import Example
from thinc.api import Ops
from thinc.types import Floats2d

from .decoding import log_softmax
from .labels import LabelLayout, biluo_to_scheme, split_label


def gold_ids(
    layout: LabelLayout,
    example: Example,
    task: str,
    on_unseen: Callable[[str, str], None],
) -> numpy.ndarray:
    """Gold label id per predicted token of the example; -1 where the gold is
    missing or its label was not seen at initialize (`on_unseen(task, label)`
    is called with the entity type or tag)."""
    if task == "ents":
        gold = [biluo_to_scheme(t, layout.scheme) for t in example.get_aligned_ner()]
    else:
        gold = [t or None for t in example.get_aligned("TAG", as_string=True)]
    index = {label: i for i, label in enumerate(layout.output_labels(task))}
    ids = numpy.full((len(gold),), -1, dtype="int64")
    for i, label in enumerate(gold):
        if label is None:
            continue
        label_id = index.get(label)
        if label_id is None:
            # Name the entity type, not each of its B-/I-/L-/U- labels.
            on_unseen(task, split_label(label)[1] if task == "ents" else label)
            continue
        ids[i] = label_id
    return ids


def token_cross_entropy(
    ops: Ops,
    layout: LabelLayout,
    scores: Sequence[Floats2d],
    gold: Callable[[str], numpy.ndarray],
) -> Tuple[float, List[Floats2d]]:
    """Softmax cross-entropy per task, averaged over the tokens that have gold
    annotation, summed over tasks.

    scores: per doc, [len(doc), layout.n_outputs] on the model's device.
    gold(task): the batch's gold ids of a task [sum(len(doc))], -1 = missing.
    RETURNS: the loss (a float) and the gradient of each doc's scores.
    """
    xp: Any = ops.xp
    lengths = [len(s) for s in scores]
    # The math stays on the model's device; only the gold ids go there (once
    # per task) and only the loss comes back (one scalar).
    X = xp.concatenate(scores)
    d_X = xp.zeros_like(X)
    total = None
    for task, cols in layout.slices.items():
        ids = gold(task)
        has_gold = ids >= 0
        n_gold = int(has_gold.sum())
        if n_gold == 0:
            continue
        rows = numpy.flatnonzero(has_gold)
        rows_d, gold_d = xp.asarray(rows), xp.asarray(ids[rows])
        log_probs = log_softmax(X[:, cols], xp)
        task_loss = -log_probs[rows_d, gold_d].sum() / n_gold
        total = task_loss if total is None else total + task_loss
        d = xp.exp(log_probs)
        d[rows_d, gold_d] -= 1.0
        d[xp.asarray(~has_gold)] = 0.0
        d_X[:, cols] = d / n_gold
    loss = 0.0 if total is None else float(total)
    return loss, list(xp.split(d_X, numpy.cumsum(lengths)[:-1].tolist()))
