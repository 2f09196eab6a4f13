"""What a calibration is fitted on: one pass of a token_classifier over gold
examples, with each token's log-probabilities, decoded and gold label ids,
and each decoded entity, right or wrong, and whether decoding repaired it.

Entity scores are computed as the component computes them (decoding.py): the
mean over the entity's tokens of the type mass (`entity_token_probs`), after
the temperature.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy

from ..calibrated import scale_log_probs
from ..decoding import label_spans, label_types, span_flags, type_mass
from ..errors import CalibrationErrors, error
from ..pipeline import TokenClassifier


@dataclass
class TaskData:
    """One task's predictions on all tokens, the docs' rows one after another."""

    log_probs: numpy.ndarray  # [n_tokens, n_labels], uncalibrated
    ids: numpy.ndarray  # [n_tokens] decoded label ids
    gold: numpy.ndarray  # [n_tokens] gold label ids, -1 where missing
    doc: numpy.ndarray  # [n_tokens] the doc of each token


@dataclass
class EntityData:
    """The decoded entities; start/end index the rows of the "ents" TaskData."""

    start: numpy.ndarray
    end: numpy.ndarray
    label: List[str]
    correct: numpy.ndarray  # span and type of a gold entity
    doc: numpy.ndarray
    n_gold: int
    # Per entity: some of its labels are not the argmax (decoding repaired
    # them). None: not known.
    repaired: Optional[numpy.ndarray] = None
    # Per label column of "ents": its entity type's index (decoding.label_types),
    # which the type mass of a token sums over. None: not known.
    label_types: Optional[numpy.ndarray] = None


def examples_from_docs(nlp, gold_docs: Iterable) -> List:
    """Examples that predict on the gold docs' own tokens."""
    from spacy.tokens import Doc
    from spacy.training import Example

    return [
        Example(
            Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold]),
            gold,
        )
        for gold in gold_docs
    ]


def find_component(nlp, component: Optional[str] = None):
    """The named token_classifier, or the only one in the pipeline."""
    found = [(name, p) for name, p in nlp.pipeline if isinstance(p, TokenClassifier)]
    if component is not None:
        for name, p in found:
            if name == component:
                return p
        raise ValueError(
            error(
                CalibrationErrors.NO_COMPONENT_NAMED,
                component=component,
                found=[n for n, _ in found],
            )
        )
    if len(found) != 1:
        raise ValueError(
            error(
                CalibrationErrors.NAME_THE_COMPONENT,
                n=len(found),
                found=[n for n, _ in found],
                example=found[0][0] if found else "token_classifier",
            )
        )
    return found[0][1]


def collect(nlp, examples: Iterable, component: Optional[str] = None, batch_size: int = 256):
    """Run the component over the examples' predicted docs (after the
    components before it) and gather what calibration is fitted on.

    RETURNS (Tuple[pipe, Dict[str, TaskData], Optional[EntityData]])
    """
    pipe = find_component(nlp, component)
    examples = list(examples)
    upstream = []
    for name, proc in nlp.pipeline:
        if name == pipe.name:
            break
        upstream.append(proc)
    parts: Dict[str, List[Tuple[numpy.ndarray, numpy.ndarray]]] = {t: [] for t in pipe.tasks}
    lengths: List[int] = []
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        docs = [eg.predicted for eg in batch]
        for proc in upstream:
            docs = list(proc.pipe(docs))
        per_task, batch_lengths = pipe.predict_log_probs(docs)
        lengths.extend(batch_lengths)
        for task in pipe.tasks:
            parts[task].append(per_task[task])
    doc_index = numpy.repeat(numpy.arange(len(lengths)), lengths)
    data: Dict[str, TaskData] = {}
    for task in pipe.tasks:
        n_labels = len(pipe.layout.output_labels(task))
        log_probs = [lp for lp, _ in parts[task]]
        ids = [i for _, i in parts[task]]
        gold = [pipe.gold_ids(eg, task) for eg in examples]
        data[task] = TaskData(
            log_probs=numpy.concatenate(log_probs) if log_probs else numpy.zeros((0, n_labels)),
            ids=numpy.concatenate(ids) if ids else numpy.zeros((0,), dtype="int64"),
            gold=numpy.concatenate(gold) if gold else numpy.zeros((0,), dtype="int64"),
            doc=doc_index,
        )
    entities = None
    if "ents" in data:
        entities = _entities(pipe, examples, data["ents"], lengths)
    return pipe, data, entities


def _entities(pipe, examples: List, ents: TaskData, lengths: List[int]) -> EntityData:
    labels = pipe.layout.output_labels("ents")
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)]).astype("int64")
    starts, ends, types, correct, docs = [], [], [], [], []
    n_gold = 0
    for d, eg in enumerate(examples):
        lo, hi = int(offsets[d]), int(offsets[d + 1])
        # label_spans reads arrays (numpy.asarray); its hints say Sequence.
        spans = label_spans(ents.ids[lo:hi], numpy.zeros(hi - lo), labels)
        gold = {(s.start, s.end, s.label_) for s in eg.get_aligned_spans_y2x(eg.reference.ents)}
        n_gold += len(eg.reference.ents)
        for start, end, label, _ in spans:
            starts.append(lo + start)
            ends.append(lo + end)
            types.append(label)
            correct.append((start, end, label) in gold)
            docs.append(d)
    first, last = numpy.asarray(starts, dtype="int64"), numpy.asarray(ends, dtype="int64")
    # As decoding marks them: a token is repaired where its label is not the argmax.
    changed = ents.ids != ents.log_probs.argmax(axis=1)
    return EntityData(
        start=first,
        end=last,
        label=types,
        correct=numpy.asarray(correct, dtype=bool),
        doc=numpy.asarray(docs, dtype="int64"),
        n_gold=n_gold,
        repaired=span_flags(first, last, changed),
        label_types=label_types(tuple(labels)),
    )


def token_probs(data: TaskData, temperature: float) -> numpy.ndarray:
    """The probability of each token's decoded label at a temperature."""
    log_probs = scale_log_probs(data.log_probs, temperature)
    return numpy.exp(log_probs[numpy.arange(len(data.ids)), data.ids])


def entity_token_probs(data: TaskData, entities: EntityData, temperature: float) -> numpy.ndarray:
    """Per token of the "ents" task, the probability of its decoded label's
    type at a temperature (decoding.type_mass): what entity scores average.

    RETURNS [n_tokens].
    """
    if entities.label_types is None:
        if len(entities.start):
            raise ValueError(error(CalibrationErrors.NO_LABEL_TYPES))
        return numpy.zeros((len(data.ids),), dtype="float64")
    probs = numpy.exp(scale_log_probs(data.log_probs, temperature))
    return type_mass(probs, data.ids, entities.label_types)


def entity_scores(entities: EntityData, probs: numpy.ndarray) -> numpy.ndarray:
    """Mean over each entity's tokens of `probs` (per token; the component's
    scores average `entity_token_probs`, as label_spans does)."""
    sums = numpy.concatenate([[0.0], numpy.cumsum(probs, dtype="float64")])
    if len(entities.start) == 0:
        return numpy.zeros((0,), dtype="float64")
    means = (sums[entities.end] - sums[entities.start]) / (entities.end - entities.start)
    return numpy.clip(means, 0.0, 1.0)
