"""Labels in one place: the tasks, the entity scheme, each task's labels, the
per-token output labels and where each task's columns sit in the head's
output (`LabelLayout`), and the rules for label strings, including the
Hugging Face schemes (BIOES/IOBES, "_" separators) read on import.

The component, the loss, the decoder and the Hugging Face import/export all
read labels through this module. The checks of the component's settings
(tasks, scheme, threshold) and of the examples given to initialize are here
too.
"""
import re
from dataclasses import dataclass
from typing import (
    Any,
    Dict,
    Iterable,
    List,
    Mapping,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
)

from .errors import Errors, error
from .layers import grow_linear

TASKS = ("ents", "tag")
SCHEMES = ("BIO", "BILUO", "IO")
SCHEME_PREFIXES = {"BIO": "BI", "BILUO": "BILU", "IO": "I"}
OUTSIDE = "O"

# An added label's column starts this far (in logits) under its reference:
# exp(-60) is ~1e-26, under half an ulp of any softmax sum even after a
# calibration temperature up to 3, and training closes it in some steps.
GROWN_GAP = 60.0
# "B-PER", "I_WORK-OF-ART", "S-LOC": a scheme prefix, "-" or "_", the type.
PREFIXED_LABEL = re.compile(r"^([BIESLU])[-_](.+)$")
# transformers' names for labels nobody named (config.json without id2label).
PLACEHOLDER_LABEL = re.compile(r"^LABEL_\d+$")
# BIOES/IOBES prefixes as the component's BILUO names them.
TO_BILUO = {"E": "L", "S": "U"}
FROM_BILUO = {"L": "E", "U": "S"}


# Label strings -----------------------------------------------------------------


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


def biluo_to_bioes(label: str) -> str:
    """"L-PER" -> "E-PER", "U-PER" -> "S-PER": BILUO as Hugging Face names it."""
    prefix, sep, ent_type = label.partition("-")
    return f"{FROM_BILUO.get(prefix, prefix)}{sep}{ent_type}" if sep else label


# The layout of a component's labels ---------------------------------------------


@dataclass(frozen=True)
class LabelLayout:
    """Tasks, scheme and labels of a component, and what follows from them:
    the per-token output labels of each task and the columns of the head's
    output that hold them (tasks side by side, in task order).

    tasks: "ents" and/or "tag", in head order.
    scheme: "BIO", "BILUO" or "IO" (how entity types become token labels).
    labels: task -> entity types ("ents") or tags ("tag").
    """

    tasks: Tuple[str, ...]
    scheme: str
    labels: Mapping[str, Sequence[str]]

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "LabelLayout":
        """The layout of a component's cfg ("tasks", "scheme", "labels")."""
        tasks = tuple(cfg["tasks"])
        return cls(tasks, cfg["scheme"], {t: tuple(cfg["labels"][t]) for t in tasks})

    def output_labels(self, task: str) -> List[str]:
        """The per-token output labels of a task: scheme labels for "ents"."""
        labels = self.labels[task]
        return scheme_labels(labels, self.scheme) if task == "ents" else list(labels)

    @property
    def slices(self) -> Dict[str, slice]:
        """task -> the columns of the head's output that hold its labels."""
        slices, start = {}, 0
        for task in self.tasks:
            n = len(self.output_labels(task))
            slices[task] = slice(start, start + n)
            start += n
        return slices

    @property
    def n_outputs(self) -> int:
        """Columns of the head's output: all tasks' output labels."""
        return sum(len(self.output_labels(task)) for task in self.tasks)


def check_tasks(name: str, tasks: Sequence[str]) -> None:
    """Raise unless `tasks` is a non-empty list of distinct known tasks."""
    tasks = list(tasks)
    if not tasks or any(t not in TASKS for t in tasks) or len(set(tasks)) != len(tasks):
        raise ValueError(error(Errors.INVALID_TASKS, name, tasks=tasks, known=list(TASKS)))


def check_scheme(name: str, scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(
            error(
                Errors.INVALID_SCHEME,
                name,
                scheme=scheme,
                known=", ".join(repr(s) for s in SCHEMES),
            )
        )


def check_threshold(name: str, threshold: Any) -> None:
    """Raise unless the `threshold` setting is None or a score in [0, 1]."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
        0.0 <= threshold <= 1.0
    ):
        raise ValueError(error(Errors.INVALID_THRESHOLD, name, threshold=threshold))


def is_valid_cfg(cfg: Mapping[str, Any]) -> bool:
    """Whether a (loaded) cfg holds valid tasks, scheme and labels."""
    try:
        tasks = list(cfg["tasks"])
        return (
            bool(tasks)
            and all(task in TASKS for task in tasks)
            and len(set(tasks)) == len(tasks)
            and cfg["scheme"] in SCHEMES
            and all(isinstance(label, str) for task in tasks for label in cfg["labels"][task])
        )
    except (KeyError, TypeError, AttributeError):
        return False


# Hugging Face labels ----------------------------------------------------------------


@dataclass
class ImportedLabels:
    """How a model's labels become a component's labels.

    task: "ents" or "tag".
    scheme: "BIO", "BILUO" or "IO" for task "ents"; None for "tag".
    labels: the component's labels (entity types, or tags).
    rows: per output row of the component's head, the model's label id, or
        None where the model has no such label.
    """

    task: str
    scheme: Optional[str]
    labels: List[str]
    rows: List[Optional[int]]

    @property
    def missing(self) -> List[int]:
        return [r for r, i in enumerate(self.rows) if i is None]


def read_hf_labels(names: Sequence[str], task: Optional[str] = None) -> ImportedLabels:
    """Map a model's labels (id2label, in id order) to a component's.

    Entity labels are "O" and a scheme prefix, "-" or "_", and the type
    ("B-PER", "I_LOC", "S-WORK-OF-ART"). The prefixes present decide the
    scheme: I only -> "IO"; B, I -> "BIO"; with E/S (BIOES) or L/U (BILOU)
    -> "BILUO" (S -> U, E -> L). Labels without any prefix are tags.

    names (Sequence[str]): the model's labels, label id i at position i.
    task (Optional[str]): "ents", "tag" or None to decide from the labels.
    RETURNS (ImportedLabels): task, scheme, labels and head rows.
    """
    names = list(names)
    if task not in (None, "ents", "tag"):
        raise ValueError(error(Errors.HF_UNKNOWN_TASK, task=task))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(error(Errors.HF_DUPLICATE_LABELS, duplicates=duplicates[:10]))
    if task is None and all(PLACEHOLDER_LABEL.match(n) for n in names):
        raise ValueError(error(Errors.HF_PLACEHOLDER_LABELS, first=", ".join(names[:3])))
    matches = [PREFIXED_LABEL.match(n) for n in names]
    plain = [n for n, m in zip(names, matches) if m is None and n != OUTSIDE]
    if task is None:
        if not any(matches):
            task = "tag"
        elif plain:
            prefixed = [n for n, m in zip(names, matches) if m is not None]
            raise ValueError(
                error(Errors.HF_MIXED_LABELS, prefixed=prefixed[:3], plain=plain[:5])
            )
        else:
            task = "ents"
    if task == "tag":
        return ImportedLabels("tag", None, names, list(range(len(names))))
    if plain:
        raise ValueError(error(Errors.HF_PLAIN_ENTITY_LABELS, plain=plain[:5]))
    prefixes = {m.group(1) for m in matches if m is not None}
    if prefixes & {"E", "S"} and prefixes & {"L", "U"}:
        raise ValueError(error(Errors.HF_MIXED_SCHEMES, prefixes=sorted(prefixes)))
    if prefixes <= {"I"}:
        scheme = "IO"
    elif prefixes <= {"B", "I"}:
        scheme = "BIO"
    else:
        scheme = "BILUO"
    types: List[str] = []
    index: Dict[str, int] = {}
    for label_id, (name, m) in enumerate(zip(names, matches)):
        if m is None:
            key = OUTSIDE
        else:
            prefix, ent_type = m.groups()
            key = f"{TO_BILUO.get(prefix, prefix)}-{ent_type}"
            if ent_type not in types:
                types.append(ent_type)
        if key in index:
            raise ValueError(
                error(Errors.HF_SAME_LABEL_TWICE, first=names[index[key]], second=name, key=key)
            )
        index[key] = label_id
    if not types:
        raise ValueError(error(Errors.HF_NO_ENTITY_LABELS))
    rows = [index.get(label) for label in scheme_labels(types, scheme)]
    return ImportedLabels("ents", scheme, types, rows)


def add_label(
    name: str,
    labels: MutableMapping[str, List[str]],
    label: str,
    task: Optional[str],
) -> int:
    """Add `label` to `labels[task]` (task may be omitted with one task).
    RETURNS 0 if it was there already, else 1."""
    tasks = list(labels)
    if task is None:
        if len(tasks) != 1:
            raise ValueError(
                error(Errors.NAME_THE_TASK, name, tasks=tasks, label=label, first=tasks[0])
            )
        task = tasks[0]
    if task not in labels:
        raise ValueError(error(Errors.UNKNOWN_TASK, name, task=task, tasks=tasks))
    if label in labels[task]:
        return 0
    # Appended, not sorted in: a trained head grows at the end of the task's
    # columns (grown_columns).
    labels[task].append(label)
    return 1


def grown_columns(old: LabelLayout, new: LabelLayout) -> Tuple[List[Optional[int]], List[int]]:
    """Where the head's columns go when labels are added to a trained head.

    RETURNS: per column of `new`, the column of `old` it keeps (None for an
    added label's column); and per added column, in order, the column of
    `old` it starts from: the task's "O" for entities, its first tag for tags.
    """
    sources: List[Optional[int]] = []
    references: List[int] = []
    old_slices = old.slices
    for task in new.tasks:
        start = old_slices[task].start
        index = {label: start + i for i, label in enumerate(old.output_labels(task))}
        for label in new.output_labels(task):
            sources.append(index.get(label))
            if label not in index:
                references.append(start)
    return sources, references


def grow_head(model: Any, old: LabelLayout, new: LabelLayout) -> None:
    """Give a trained head the columns of `new` (`old` plus added labels),
    every trained weight kept. An added column starts as its reference
    column (grown_columns) minus GROWN_GAP: never chosen, and (by
    decoding.log_softmax) every old label's probability stays bit-identical."""
    grow_linear(model, model.get_ref("output_layer"), *grown_columns(old, new), gap=GROWN_GAP)


def old_columns(old: LabelLayout, new: LabelLayout, task: str) -> List[int]:
    """The columns of `old`'s labels of a task within `new`'s columns of that
    task, in `old`'s order (a grown head's, for distillation)."""
    index = {label: i for i, label in enumerate(new.output_labels(task))}
    return [index[label] for label in old.output_labels(task)]


def check_head_size(name: str, n_before: Optional[int], labels: Dict[str, List[str]],
                    n_now: int) -> None:
    """Raise if initialize would give a sized head another size."""
    if n_before is not None and n_before != n_now:
        raise ValueError(
            error(Errors.HEAD_SIZE_CHANGED, name, n_before=n_before, n_now=n_now, labels=labels)
        )


# Labels at initialize -----------------------------------------------------------------


def is_empty_list(examples: Any) -> bool:
    """True for an empty list or tuple of examples (a generator is counted
    while read)."""
    return isinstance(examples, (list, tuple)) and not examples


def labels_in_examples(tasks: Sequence[str], examples: Iterable[Any]) -> Tuple[Dict[str, set], int]:
    """The labels of each task found in the examples' gold docs, and the
    number of examples."""
    found: Dict[str, set] = {task: set() for task in tasks}
    n_examples = 0
    for eg in examples:
        n_examples += 1
        if "ents" in found:
            found["ents"].update(ent.label_ for ent in eg.reference.ents)
        if "tag" in found:
            found["tag"].update(t.tag_ for t in eg.reference if t.tag_)
    return found, n_examples


def initial_labels(
    name: str,
    tasks: Sequence[str],
    found: Mapping[str, set],
    given: Optional[Any],
    added: Mapping[str, Sequence[str]],
) -> Dict[str, List[str]]:
    """The labels a component is initialized with: `given` (the `labels` of
    initialize, as `spacy init labels` writes them) when set, which must hold
    every label `found` in the data; otherwise the labels found plus those
    `added` with add_label, sorted. Every task needs at least one label."""
    if given is not None:
        given = normalize_given_labels(name, tasks, given)
        for task in tasks:
            unknown = sorted(found[task] - set(given[task]))
            if unknown:
                raise ValueError(
                    error(Errors.LABELS_NOT_GIVEN, name, task=task, unknown=unknown[:10])
                )
        labels = {task: list(given[task]) for task in tasks}
    else:
        labels = {task: sorted(found[task] | set(added[task])) for task in tasks}
    for task in tasks:
        if not labels[task]:
            what = "entities (doc.ents)" if task == "ents" else "tags (token.tag_)"
            raise ValueError(error(Errors.TASK_WITHOUT_GOLD, name, task=task, what=what))
    return labels


def normalize_given_labels(name: str, tasks: Sequence[str], labels: Any) -> Dict[str, List[str]]:
    """`labels` given to initialize as task -> labels; a plain list is taken
    as the labels of the only task."""
    tasks = list(tasks)
    if isinstance(labels, dict):
        missing = [task for task in tasks if task not in labels]
        if missing:
            raise ValueError(error(Errors.LABELS_MISSING_TASK, name, missing=missing))
        return {task: list(labels[task]) for task in tasks}
    if len(tasks) != 1:
        raise ValueError(error(Errors.LABELS_NOT_A_DICT, name, tasks=tasks))
    return {tasks[0]: list(labels)}
