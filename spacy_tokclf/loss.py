"""The training loss: gold label ids from Examples, and softmax cross-entropy
per task over the head's columns of that task, on the model's device.

Tokens with missing annotation (unknown entity status, empty tag, misaligned
gold) have id -1: they add no loss and no gradient.

Teaching a trained component new labels (spacy-tokclf.extend_labels.v1): its
head grows (labels.grow_head) and its loss becomes distill_cross_entropy, with
a frozen copy of the old model as the teacher of the old labels (Distillation).
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Model, Ops
from thinc.types import Floats2d

from .decoding import log_softmax
from .errors import Errors, error
from .labels import GROWN_GAP, LabelLayout, biluo_to_scheme, grown_columns, labels_in_examples
from .labels import old_columns, split_label

# An added label's column starts this far under its reference in training.
TRAIN_GAP = 7.0


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


# Learning new labels without forgetting the old ones ----------------------------------


def distill_cross_entropy(
    ops: Ops,
    layout: LabelLayout,
    scores: Sequence[Floats2d],
    gold: Callable[[str], numpy.ndarray],
    old: LabelLayout,
    teacher_scores: Sequence[Floats2d],
    weight: float,
) -> Tuple[float, List[Floats2d]]:
    """The loss of a component taught new labels (extend_labels), per task,
    averaged over all tokens, summed over tasks:

    - a token whose gold is a label (not "O" for entities): the usual
      cross-entropy;
    - a token whose gold is "O" or missing: `weight` times the cross-entropy
      toward the frozen teacher's distribution over the old labels (soft
      targets), of the student's log-probabilities of those labels' columns.
      The student's probabilities are over all its columns, so this is the KL
      to the teacher over the old labels renormalized (ExtendNER, Monaikul et
      al. 2021), plus -log of the student's mass on the old labels: where the
      new data says "O" or nothing, the new labels are pushed down and the old
      ones keep the teacher's odds.

    scores: the student's, per doc [len(doc), layout.n_outputs]; teacher_scores:
    the teacher's, per doc [len(doc), old.n_outputs]; gold(task) as for
    token_cross_entropy. RETURNS: the loss and the gradient of the scores.
    """
    xp: Any = ops.xp
    lengths = [len(s) for s in scores]
    X, T = xp.concatenate(scores), xp.concatenate(teacher_scores)
    d_X = xp.zeros_like(X)
    total = 0.0
    old_slices = old.slices
    for task, cols in layout.slices.items():
        ids = gold(task)
        hard = (ids > 0) if task == "ents" else (ids >= 0)  # entities: column 0 is "O"
        n_rows = len(ids)
        if n_rows == 0:
            continue
        log_probs = log_softmax(X[:, cols], xp)
        target = xp.zeros_like(log_probs)
        teacher = xp.exp(log_softmax(T[:, old_slices[task]], xp))
        target[:, xp.asarray(old_columns(old, layout, task))] = weight * teacher
        rows = numpy.flatnonzero(hard)
        if len(rows):
            rows_d = xp.asarray(rows)
            target[rows_d] = 0.0
            target[rows_d, xp.asarray(ids[rows])] = 1.0
        total += float(-(target * log_probs).sum()) / n_rows
        # d/dscores of -sum(t * log_softmax(scores)) = sum(t) * p - t.
        d_X[:, cols] = (target.sum(axis=1, keepdims=True) * xp.exp(log_probs) - target) / n_rows
    return total, list(xp.split(d_X, numpy.cumsum(lengths)[:-1].tolist()))


@dataclass
class Distillation:
    """What spacy-tokclf.extend_labels.v1 sets on a component (its
    `distillation`, never saved): the frozen teacher and its labels.

    teacher: a copy of the component's model made before labels were added.
        It only predicts (eval mode, no dropout, no gradient): one extra
        forward per batch; the optimizer never sees it.
    old: the teacher's labels.
    weight: the distillation term's weight (distill_cross_entropy).
    """

    teacher: Model
    old: LabelLayout
    weight: float

    def loss(
        self,
        ops: Ops,
        layout: LabelLayout,
        scores: Sequence[Floats2d],
        gold: Callable[[str], numpy.ndarray],
        docs: List[Doc],
    ) -> Tuple[float, List[Floats2d]]:
        """The teacher's forward on the docs, then distill_cross_entropy."""
        teacher_scores = self.teacher.predict(docs)
        return distill_cross_entropy(ops, layout, scores, gold, self.old, teacher_scores, self.weight)


@registry.callbacks("spacy-tokclf.extend_labels.v1")
def make_extend_labels(
    component: str = "token_classifier",
    labels: Optional[Union[List[str], Dict[str, List[str]]]] = None,
    corpus: Optional[Callable[[Language], Iterable[Example]]] = None,
    distill_weight: float = 1.0,
) -> Callable[[Language], Language]:
    """An `[initialize.after_init]` callback that teaches a trained (sourced)
    token_classifier new labels without forgetting the old ones. spaCy does
    not initialize a sourced component, so its labels do not grow by
    themselves; this callback, run once before training:

    1. copies the component's model as the frozen teacher (distill_weight > 0);
    2. adds the labels (`labels`, and those of `corpus` it lacks): the head
       grows, every trained weight kept (TokenClassifier.add_label), an added
       label's column starting at its reference's (the "O" column for
       entities) minus TRAIN_GAP, about 1/1000 of its probability;
    3. switches the component's loss to distill_cross_entropy: the usual loss
       on tokens of a label, distillation toward the teacher on tokens the
       new data leaves as "O" or unannotated.

        [components.token_classifier]
        source = "old_pipeline"

        [initialize.after_init]
        @callbacks = "spacy-tokclf.extend_labels.v1"
        component = "token_classifier"
        distill_weight = 1.0

        [initialize.after_init.corpus]
        @readers = "spacy.Corpus.v1"
        path = ${paths.train}

    component (str): the name of the token_classifier.
    labels (Optional[Union[List[str], Dict[str, List[str]]]]): labels to add
        (a list: of the only task; a dict: task -> labels).
    corpus (Optional[Callable[[Language], Iterable[Example]]]): a corpus whose
        gold labels the component lacks are added (sorted).
    distill_weight (float): the distillation term's weight; 0: no teacher, the
        usual loss (missing annotation masked, "O" learnt as "O").
    RETURNS (Callable[[Language], Language]): the callback.
    """
    if isinstance(distill_weight, bool) or not distill_weight >= 0:
        raise ValueError(error(Errors.EXTEND_INVALID_WEIGHT, component, weight=distill_weight))

    def extend_labels(nlp: Language) -> Language:
        pipe: Any = nlp.get_pipe(component)
        if not hasattr(pipe, "distillation"):
            raise ValueError(
                error(Errors.EXTEND_NOT_TOKEN_CLASSIFIER, component, kind=type(pipe).__name__)
            )
        if not pipe.model.get_ref("output_layer").has_param("W"):
            raise ValueError(error(Errors.EXTEND_NOT_TRAINED, component))
        if labels is None and corpus is None:
            raise ValueError(error(Errors.EXTEND_NO_LABELS, component))
        new = labels_to_add(pipe.tasks, labels, corpus(nlp) if corpus is not None else ())
        old, teacher = pipe.layout, None
        if distill_weight > 0:
            # Under `spacy train`, resume_training has just copied the sourced
            # model for rehearsal (TrainablePipe._rehearsal_model): that copy
            # is the teacher, rather than a third copy of the model.
            rehearsal = getattr(pipe, "_rehearsal_model", None)
            same = rehearsal is not None and _n_outputs(rehearsal) == old.n_outputs
            teacher = rehearsal if same else pipe.model.copy()
        # A rehearsal model of the old size cannot rehearse the grown head.
        pipe._rehearsal_model = None
        for task, label in new:
            pipe.add_label(label, task)
        # Within reach of training: the added labels start at e^-TRAIN_GAP of
        # their reference's probability, not e^-GROWN_GAP.
        head = pipe.model.get_ref("output_layer")
        added = [i for i, s in enumerate(grown_columns(old, pipe.layout)[0]) if s is None]
        b = head.ops.to_numpy(head.get_param("b")).copy()
        b[added] += GROWN_GAP - TRAIN_GAP
        head.set_param("b", head.ops.asarray1f(b))
        if teacher is not None:
            pipe.distillation = Distillation(teacher, old, float(distill_weight))
        # A config that fixed the head's size records the new one (saved.check_head_size).
        model_config = nlp.get_pipe_config(component).get("model", {})
        if model_config.get("nO") is not None:
            model_config["nO"] = pipe.layout.n_outputs
        return nlp

    return extend_labels


def _n_outputs(model: Model) -> Optional[int]:
    head = model.get_ref("output_layer") if model.has_ref("output_layer") else None
    return head.maybe_get_dim("nO") if head is not None else None


def labels_to_add(
    tasks: Sequence[str],
    given: Optional[Union[List[str], Dict[str, List[str]]]],
    examples: Iterable[Example],
) -> List[Tuple[Optional[str], str]]:
    """(task, label) pairs: those given (a list: task None, which add_label
    takes as the only task's), then the gold labels of the examples, sorted.
    add_label skips a label already there."""
    if isinstance(given, dict):
        pairs: List[Tuple[Optional[str], str]] = [(t, x) for t, xs in given.items() for x in xs]
    else:
        pairs = [(None, label) for label in given or []]
    found, _ = labels_in_examples(tasks, examples)
    return pairs + [(task, label) for task in tasks for label in sorted(found[task])]
