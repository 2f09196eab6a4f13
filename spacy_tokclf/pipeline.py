"""The `token_classifier` component: per-token labels -> Doc.ents and token.tag_."""
import warnings
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
import srsly
from spacy import util
from spacy.attrs import TAG
from spacy.errors import Errors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, set_dropout_rate
from thinc.types import Floats2d

from .annotation import (
    SCHEMES,
    biluo_to_scheme,
    constrained_decode_docs,
    label_spans,
    scheme_labels,
    split_label,
    transition_masks,
)
from .calibration import check_calibration, map_entity_scores, scale_log_probs, temperature_of
from .labels import LabelLayout
from .scoring import score_token_classifier

TASKS = ("ents", "tag")
PROBS_ATTR = "tokclf_probs"

DEFAULT_CONFIG_STR = """
[model]
@architectures = "spacy-tokclf.TokenClassifier.v1"
nO = null
dropout = 0.1

[model.tok2vec]
@architectures = "spacy-tokclf.HFEncoder.v1"
name = ""
pooling = "first"
window = 256
stride = 192
batch_pieces = 4096

[scorer]
@scorers = "spacy-tokclf.tokclf_scorer.v1"
"""
DEFAULT_CONFIG = Config().from_str(DEFAULT_CONFIG_STR)

if not Doc.has_extension(PROBS_ATTR):
    Doc.set_extension(PROBS_ATTR, default=None)

# Per doc: task -> (label ids [n_tokens], probability of each id [n_tokens]).
DocPrediction = Dict[str, Tuple[numpy.ndarray, numpy.ndarray]]


@Language.factory(
    "token_classifier",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "token.tag", "doc.spans"],
    default_config={
        "model": DEFAULT_CONFIG["model"],
        "tasks": ["ents"],
        "scheme": "BIO",
        "overwrite": False,
        "spans_key": None,
        "threshold": None,
        "scorer": DEFAULT_CONFIG["scorer"],
    },
    default_score_weights={
        "ents_f": 1.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_per_type": None,
        "tag_acc": 1.0,
    },
)
def make_token_classifier(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    *,
    tasks: List[str],
    scheme: str,
    overwrite: bool,
    spans_key: Optional[str],
    threshold: Optional[float] = None,
    scorer: Optional[Callable],
) -> "TokenClassifier":
    """Create a token_classifier: a transformer encoder with one
    token-classification head per task.

    model (Model[List[Doc], List[Floats2d]]): the encoder and heads.
    tasks (List[str]): "ents" (written to Doc.ents) and/or "tag" (token.tag_).
    scheme (str): per-token entity scheme, "BIO", "BILUO" or "IO".
    overwrite (bool): replace existing entities and tags.
    spans_key (Optional[str]): key in doc.spans for scored entities; None: the
        component's name.
    threshold (Optional[float]): drop predicted entities scored under it;
        None keeps all.
    scorer (Optional[Callable]): the scoring method.
    """
    return TokenClassifier(
        nlp.vocab,
        model,
        name,
        tasks=tasks,
        scheme=scheme,
        overwrite=overwrite,
        spans_key=spans_key,
        threshold=threshold,
        scorer=scorer,
    )


class TokenClassifier(TrainablePipe):
    """Predict a label per token for each task; write entities and tags."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str = "token_classifier",
        *,
        tasks: Sequence[str] = ("ents",),
        scheme: str = "BIO",
        overwrite: bool = False,
        spans_key: Optional[str] = None,
        threshold: Optional[float] = None,
        scorer: Optional[Callable] = score_token_classifier,
    ) -> None:
        """Initialize the component. Nothing is loaded: see `initialize`.

        vocab (Vocab): the shared vocabulary.
        model (Model[List[Doc], List[Floats2d]]): the encoder and heads.
        name (str): the component instance name.
        tasks (Sequence[str]): "ents" and/or "tag".
        scheme (str): "BIO", "BILUO" or "IO".
        overwrite (bool): replace existing entities and tags.
        spans_key (Optional[str]): doc.spans key for scored entities.
        threshold (Optional[float]): drop predicted entities scored under it.
        scorer (Optional[Callable]): the scoring method.
        """
        tasks = list(tasks)
        if not tasks or any(t not in TASKS for t in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(
                f"[{name}] Invalid setting `tasks = {tasks}`. Use a non-empty list of "
                f'distinct tasks from {list(TASKS)}, e.g. config={{"tasks": ["ents", "tag"]}} '
                f'in nlp.add_pipe("token_classifier", ...), or in a config file:\n'
                f'    [components.{name}]\n    tasks = ["ents"]'
            )
        if scheme not in SCHEMES:
            raise ValueError(
                f"[{name}] Invalid setting `scheme = {scheme!r}`. Use one of "
                f"{', '.join(repr(s) for s in SCHEMES)}, e.g. in a config file:\n"
                f'    [components.{name}]\n    scheme = "BIO"'
            )
        _check_threshold(name, threshold)
        self.vocab = vocab
        self.model = model
        self.name = name
        self._rehearsal_model = None
        self.scorer = scorer
        self._unseen_warned: set = set()
        self.cfg: Dict[str, Any] = {
            "labels": {task: [] for task in tasks},
            "tasks": tasks,
            "scheme": scheme,
            "overwrite": overwrite,
            "spans_key": spans_key if spans_key is not None else name,
            # Entities scored under it are dropped (None: keep all).
            "threshold": threshold,
            # The threshold of the config the component was built from: a
            # loaded pipeline keeps its saved threshold unless the config it
            # is loaded with sets another one (see _merge_loaded_cfg).
            "config_threshold": threshold,
            # Fitted by spacy_tokclf.calibration.calibrate: None, or
            # {"temperature": {task: T}, "entity_map": ...}.
            "calibration": None,
        }

    # Labels -----------------------------------------------------------------

    @property
    def tasks(self) -> List[str]:
        return list(self.cfg["tasks"])

    @property
    def labels(self) -> Tuple[str, ...]:
        """RETURNS (Tuple[str]): the entity types and tags, in task order."""
        return tuple(label for task in self.tasks for label in self.cfg["labels"][task])

    @property
    def label_data(self) -> Dict[str, List[str]]:
        """RETURNS (Dict[str, List[str]]): labels per task, for `spacy init labels`."""
        return {task: list(self.cfg["labels"][task]) for task in self.tasks}

    @property
    def layout(self) -> LabelLayout:
        """RETURNS (LabelLayout): tasks, scheme, labels, output labels and the
        head's columns of each task, as the cfg holds them now."""
        return LabelLayout.from_cfg(self.cfg)

    def add_label(self, label: str, task: Optional[str] = None) -> int:
        """Add an entity type or tag before `initialize`.

        label (str): the label.
        task (Optional[str]): "ents" or "tag"; may be omitted with one task.
        RETURNS (int): 0 if the label was already present, otherwise 1.
        """
        if not isinstance(label, str):
            raise ValueError(Errors.E187)
        if task is None:
            if len(self.tasks) != 1:
                raise ValueError(
                    f"[{self.name}] This component has tasks {self.tasks}: name the "
                    f'task, e.g. add_label("{label}", task="{self.tasks[0]}").'
                )
            task = self.tasks[0]
        if task not in self.cfg["labels"]:
            raise ValueError(f"[{self.name}] Unknown task '{task}'; tasks are {self.tasks}.")
        if label in self.cfg["labels"][task]:
            return 0
        if self.model.get_ref("output_layer").has_dim("nO"):
            raise ValueError(
                f"[{self.name}] Cannot add label '{label}' after the component was "
                f"initialized. Add it before `nlp.initialize()`, or list it in "
                f"`[initialize.components.{self.name}.labels]`."
            )
        self.cfg["labels"][task].append(label)
        self.vocab.strings.add(label)
        return 1

    # Prediction -------------------------------------------------------------

    def predict(self, docs: Iterable[Doc]) -> List[DocPrediction]:
        """Label ids and their probabilities for each task and token.

        docs (Iterable[Doc]): the docs.
        RETURNS (List[DocPrediction]): per doc, task -> (ids, probabilities).
        """
        docs = list(docs)
        if not any(len(doc) for doc in docs):
            empty = (numpy.zeros((0,), dtype="int64"), numpy.zeros((0,), dtype="float32"))
            return [{task: empty for task in self.tasks} for _ in docs]
        decoded, lengths = self.predict_log_probs(docs)
        calibration = self.cfg.get("calibration")
        per_task = {}
        for task, (log_probs, ids) in decoded.items():
            # Calibration changes the probabilities reported for the labels
            # chosen above, never the choice.
            log_probs = scale_log_probs(log_probs, temperature_of(calibration, task))
            probs = numpy.exp(log_probs[numpy.arange(len(ids)), ids]).astype("float32")
            per_task[task] = (ids, probs)
        bounds = numpy.cumsum(lengths)[:-1]
        split = {
            task: list(zip(numpy.split(ids, bounds), numpy.split(probs, bounds)))
            for task, (ids, probs) in per_task.items()
        }
        return [{task: split[task][i] for task in self.tasks} for i in range(len(docs))]

    def predict_log_probs(
        self, docs: List[Doc]
    ) -> Tuple[Dict[str, Tuple[numpy.ndarray, numpy.ndarray]], List[int]]:
        """Uncalibrated label log-probabilities and the decoded label ids of
        all tokens of the docs, the docs' rows one after another (what
        `predict` and calibration start from).

        docs (List[Doc]): the docs.
        RETURNS: task -> (log_probs [n_tokens, n_labels], ids [n_tokens]), and
            the docs' lengths.
        """
        if not any(len(doc) for doc in docs):
            empty = {
                task: (
                    numpy.zeros((0, len(self.layout.output_labels(task))), dtype="float32"),
                    numpy.zeros((0,), dtype="int64"),
                )
                for task in self.tasks
            }
            return empty, [len(doc) for doc in docs]
        scores = self.model.predict(docs)
        lengths = [len(s) for s in scores]
        # One copy to the host per batch, not one per doc.
        flat = self.model.ops.to_numpy(self.model.ops.xp.concatenate(scores))
        # All docs' tokens at once: no loop over docs or tokens here.
        per_task = {}
        for task, cols in self.layout.slices.items():
            log_probs = _log_softmax(flat[:, cols])
            if task == "ents":
                masks = transition_masks(tuple(self.layout.output_labels(task)), self.cfg["scheme"])
                ids = constrained_decode_docs(log_probs, lengths, *masks)
            else:
                ids = log_probs.argmax(axis=1)
            per_task[task] = (log_probs, ids)
        return per_task, lengths

    def set_annotations(self, docs: Iterable[Doc], predictions: List[DocPrediction]) -> None:
        """Write entities to doc.ents and doc.spans[spans_key] (with scores),
        tags to token.tag_, and label probabilities to doc._.tokclf_probs.

        docs (Iterable[Doc]): the docs.
        predictions (List[DocPrediction]): the output of `predict`.
        """
        overwrite = self.cfg["overwrite"]
        tag_hashes = None
        if "tag" in self.tasks:
            strings = self.vocab.strings
            tag_hashes = numpy.asarray(
                [strings.add(tag) for tag in self.layout.output_labels("tag")], dtype="uint64"
            )
        for doc, prediction in zip(docs, predictions):
            # Per task, the tokens whose existing annotation is kept
            # (overwrite = false): their probability is None, as the
            # component assigned them nothing.
            kept: Dict[str, numpy.ndarray] = {}
            if "ents" in prediction:
                ids, token_probs = prediction["ents"]
                spans = self._score_entities(
                    label_spans(ids, token_probs, self.layout.output_labels("ents"))
                )
                kept["ents"] = self._set_ents(doc, spans)
            if "tag" in prediction and len(doc):
                ids, _ = prediction["tag"]
                new = tag_hashes[ids]
                if not overwrite:
                    old = doc.to_array(TAG)
                    kept["tag"] = old != 0
                    new = numpy.where(kept["tag"], old, new)
                doc.from_array([TAG], new.reshape(-1, 1))
            probs = doc._.get(PROBS_ATTR) or {}
            probs[self.name] = {
                task: _probs_list(p, kept.get(task)) for task, (_, p) in prediction.items()
            }
            doc._.set(PROBS_ATTR, probs)

    def _score_entities(
        self, spans: List[Tuple[int, int, str, float]]
    ) -> List[Tuple[int, int, str, float]]:
        """The decoded entities with calibrated scores (when the component is
        calibrated), less those scored under `threshold`."""
        calibration = self.cfg.get("calibration")
        threshold = self.cfg.get("threshold")
        if not spans or (threshold is None and not (calibration or {}).get("entity_map")):
            return spans
        scores = map_entity_scores(calibration, [span[3] for span in spans]).tolist()
        return [
            (start, end, label, score)
            for (start, end, label, _), score in zip(spans, scores)
            if threshold is None or score >= threshold
        ]

    def _set_ents(self, doc: Doc, spans: List[Tuple[int, int, str, float]]) -> numpy.ndarray:
        """Write the predicted entities to doc.spans[spans_key] (with scores)
        and doc.ents, by the overwrite policy.

        overwrite = true: both are replaced. overwrite = false: what is there
        wins. doc.ents keeps its entities and takes the predicted ones that
        overlap none of them (tokens with no entity status become "O"); an
        existing span group under spans_key keeps its spans (and scores) and
        takes the predicted spans that overlap none of them, so running the
        component twice adds nothing. Without such a group, the group holds
        every predicted entity, whatever was written to doc.ents.

        RETURNS (numpy.ndarray): per token, whether its existing entity was kept.
        """
        key = self.cfg["spans_key"]
        predicted = [Span(doc, start, end, label=label) for start, end, label, _ in spans]
        scores = [score for *_, score in spans]
        taken = numpy.zeros((len(doc),), dtype=bool)
        if self.cfg["overwrite"]:
            doc.spans[key] = SpanGroup(doc, name=key, spans=predicted, attrs={"scores": scores})
            doc.set_ents(predicted, default="outside")
            return taken
        if key in doc.spans:
            group = doc.spans[key]
            old_scores = list(group.attrs.get("scores", [None] * len(group)))
            if len(old_scores) != len(group):
                old_scores = [None] * len(group)
            in_group = numpy.zeros((len(doc),), dtype=bool)
            for span in group:
                in_group[span.start : span.end] = True
            new = [i for i, s in enumerate(predicted) if not in_group[s.start : s.end].any()]
            doc.spans[key] = SpanGroup(
                doc,
                name=key,
                spans=list(group) + [predicted[i] for i in new],
                attrs={**group.attrs, "scores": old_scores + [scores[i] for i in new]},
            )
        else:
            doc.spans[key] = SpanGroup(doc, name=key, spans=predicted, attrs={"scores": scores})
        existing = list(doc.ents)
        for ent in existing:
            taken[ent.start : ent.end] = True
        added = [s for s in predicted if not taken[s.start : s.end].any()]
        doc.set_ents(existing + added, default="outside")
        return taken

    # Training ---------------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Any] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples.

        examples (Iterable[Example]): the batch.
        drop (float): the dropout rate.
        sgd (Optional[Optimizer]): the optimizer.
        losses (Optional[Dict[str, float]]): losses so far, updated in place.
        RETURNS (Dict[str, float]): the updated losses.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "TokenClassifier.update")
        docs = [eg.predicted for eg in examples]
        if not any(len(doc) for doc in docs):
            return losses
        set_dropout_rate(self.model, drop)
        scores, backprop = self.model.begin_update(docs)
        loss, d_scores = self.get_loss(examples, scores)
        backprop(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(
        self, examples: Iterable[Example], scores: List[Floats2d]
    ) -> Tuple[float, List[Floats2d]]:
        """Softmax cross-entropy per task, averaged over the tokens that have
        gold annotation. Tokens with missing annotation (unknown entity
        status, empty tag, misaligned gold) add no loss and no gradient.

        examples (Iterable[Example]): the batch.
        scores (List[Floats2d]): the model output.
        RETURNS (Tuple[float, List[Floats2d]]): loss and gradient of the scores.
        """
        examples = list(examples)
        validate_examples(examples, "TokenClassifier.get_loss")
        ops = self.model.ops
        xp = ops.xp
        if not scores:
            return 0.0, []
        lengths = [len(s) for s in scores]
        # The math stays on the model's device; only the gold ids go there (once
        # per task) and only the loss comes back (one scalar).
        X = xp.concatenate(scores)
        d_X = xp.zeros_like(X)
        total = None
        for task, cols in self.layout.slices.items():
            gold = numpy.concatenate(
                [self.gold_ids(eg, task) for eg in examples]
                or [numpy.zeros((0,), dtype="int64")]
            )
            has_gold = gold >= 0
            n_gold = int(has_gold.sum())
            if n_gold == 0:
                continue
            rows = numpy.flatnonzero(has_gold)
            rows_d, gold_d = xp.asarray(rows), xp.asarray(gold[rows])
            log_probs = _log_softmax(X[:, cols], xp)
            task_loss = -log_probs[rows_d, gold_d].sum() / n_gold
            total = task_loss if total is None else total + task_loss
            d = xp.exp(log_probs)
            d[rows_d, gold_d] -= 1.0
            d[xp.asarray(~has_gold)] = 0.0
            d_X[:, cols] = d / n_gold
        loss = 0.0 if total is None else float(total)
        if numpy.isnan(loss):
            raise ValueError(Errors.E910.format(name=self.name))
        return loss, list(xp.split(d_X, numpy.cumsum(lengths)[:-1].tolist()))

    def gold_ids(self, example: Example, task: str) -> numpy.ndarray:
        """Gold label id per predicted token; -1 where the gold is missing."""
        if task == "ents":
            scheme = self.cfg["scheme"]
            gold = [biluo_to_scheme(t, scheme) for t in example.get_aligned_ner()]
        else:
            gold = [t or None for t in example.get_aligned("TAG", as_string=True)]
        index = {label: i for i, label in enumerate(self.layout.output_labels(task))}
        ids = numpy.full((len(gold),), -1, dtype="int64")
        for i, label in enumerate(gold):
            if label is None:
                continue
            label_id = index.get(label)
            if label_id is None:
                # Name the entity type, not each of its B-/I-/L-/U- labels.
                self._warn_unseen(task, split_label(label)[1] if task == "ents" else label)
                continue
            ids[i] = label_id
        return ids

    def _warn_unseen(self, task: str, label: str) -> None:
        if (task, label) not in self._unseen_warned:
            self._unseen_warned.add((task, label))
            warnings.warn(
                f"[{self.name}] Gold label '{label}' (task '{task}') was not seen at "
                f"initialize; its tokens are treated as missing annotation. Add it to "
                f"`[initialize.components.{self.name}.labels]` or re-run initialize "
                f"on data that contains it."
            )

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Any] = None,
    ) -> None:
        """Infer the labels from the examples (or take `labels`), load the
        encoder and size the heads.

        get_examples (Callable[[], Iterable[Example]]): returns gold examples.
        nlp (Optional[Language]): the pipeline.
        labels (Optional[Dict[str, List[str]]]): labels per task, as written by
            `spacy init labels`; a plain list is taken as the labels of the
            only task.
        """
        if callable(get_examples) and _is_empty_list(get_examples()):
            raise self._empty_corpus_error()  # before spaCy's E930, which does not say so
        validate_get_examples(get_examples, "TokenClassifier.initialize")
        found, n_examples = self._labels_in_data(get_examples())
        if n_examples == 0:
            # Otherwise, with `labels` given, the head would be sized from no
            # sample at all and the first prediction would crash in blis.
            raise self._empty_corpus_error()
        if labels is not None:
            given = self._normalize_labels(labels)
            for task in self.tasks:
                unknown = sorted(found[task] - set(given[task]))
                if unknown:
                    raise ValueError(
                        f"[{self.name}] The training data has {task} labels that are "
                        f"not in the `labels` given to initialize: {unknown[:10]}. "
                        f"Add them to the labels file "
                        f"(`[initialize.components.{self.name}.labels]`), or regenerate "
                        f"it with `spacy init labels`."
                    )
            new_labels = {task: list(given[task]) for task in self.tasks}
        else:
            # Labels added with add_label() before initialize are kept.
            new_labels = {
                task: sorted(found[task] | set(self.cfg["labels"][task])) for task in self.tasks
            }
        for task in self.tasks:
            if not new_labels[task]:
                what = "entities (doc.ents)" if task == "ents" else "tags (token.tag_)"
                raise ValueError(
                    f"[{self.name}] Task '{task}' is set in `tasks`, but no training "
                    f"example has gold {what}. Remove '{task}' from "
                    f"`[components.{self.name}] tasks`, or train on annotated data."
                )
        n_labels = sum(
            len(scheme_labels(new_labels[t], self.cfg["scheme"]) if t == "ents" else new_labels[t])
            for t in self.tasks
        )
        output_layer = self.model.get_ref("output_layer")
        if output_layer.has_dim("nO") and output_layer.get_dim("nO") != n_labels:
            raise ValueError(
                f"[{self.name}] This component was already initialized with "
                f"{output_layer.get_dim('nO')} output labels; the data or `labels` now "
                f"give {n_labels} ({new_labels}). A trained head cannot change "
                f"size: add a new component (nlp.remove_pipe(\"{self.name}\"), then "
                f"nlp.add_pipe(\"token_classifier\", ...)) and initialize that one."
            )
        self.cfg["labels"] = new_labels
        for task in self.tasks:
            for label in new_labels[task]:
                self.vocab.strings.add(label)
        output_layer.set_dim("nO", n_labels)
        doc_sample = [eg.x for eg in islice(get_examples(), 10)]
        self.model.initialize(X=doc_sample)

    def _labels_in_data(self, examples: Iterable[Example]) -> Tuple[Dict[str, set], int]:
        """The labels of each task found in the examples, and the number of examples."""
        found: Dict[str, set] = {task: set() for task in self.tasks}
        n_examples = 0
        for eg in examples:
            n_examples += 1
            if "ents" in found:
                found["ents"].update(ent.label_ for ent in eg.reference.ents)
            if "tag" in found:
                found["tag"].update(t.tag_ for t in eg.reference if t.tag_)
        return found, n_examples

    def _empty_corpus_error(self) -> ValueError:
        return ValueError(
            f"[{self.name}] initialize got no training examples: the corpus is empty. "
            f"Point `[paths.train]` (read by `[corpora.train]`) at a .spacy file or "
            f"directory that holds annotated docs, e.g. `python -m spacy train "
            f"config.cfg --paths.train ./train.spacy`; `python -m spacy debug data "
            f"config.cfg` shows what the corpus holds. From Python, pass a function "
            f"that returns the examples: nlp.initialize(lambda: examples)."
        )

    # Serialization ----------------------------------------------------------

    def from_disk(
        self, path: Union[str, Path], *, exclude: Iterable[str] = util.SimpleFrozenList()
    ) -> "TokenClassifier":
        """Load the component from a directory written by `to_disk`. A missing,
        truncated or corrupted file raises an error that names the file.

        path (Union[str, Path]): the component's directory.
        exclude (Iterable[str]): names of serialization fields to skip.
        RETURNS (TokenClassifier): the loaded component.
        """
        self._validate_serialization_attrs()
        path = util.ensure_path(path)
        name = self.name

        def read_cfg(p: Path) -> None:
            cfg = srsly.read_json(p)
            if not isinstance(cfg, dict) or not {"tasks", "scheme", "labels"} <= set(cfg):
                raise ValueError('it is not a JSON object with "tasks", "scheme" and "labels"')
            self._merge_loaded_cfg(cfg)

        deserialize = {
            # spaCy's default reader skips a missing cfg: labels would then be
            # empty and the first prediction would crash in numpy.
            "cfg": lambda p: _read_saved(name, p, read_cfg),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: _read_saved(
                name, p, lambda f: self.model.from_bytes(f.read_bytes())
            ),
        }
        util.from_disk(path, deserialize, exclude)
        self._check_cfg(f"The file {path / 'cfg'}")
        return self

    def from_bytes(
        self, bytes_data: bytes, *, exclude: Iterable[str] = util.SimpleFrozenList()
    ) -> "TokenClassifier":
        """Load the component from the output of `to_bytes`.

        bytes_data (bytes): the data.
        exclude (Iterable[str]): names of serialization fields to skip.
        RETURNS (TokenClassifier): the loaded component.
        """
        given = self.cfg.get("config_threshold")
        super().from_bytes(bytes_data, exclude=exclude)
        self._keep_config_threshold(given)
        self._check_cfg("The component's cfg")
        return self

    def _merge_loaded_cfg(self, saved: Dict[str, Any]) -> None:
        given = self.cfg.get("config_threshold")
        self.cfg.update(saved)
        self._keep_config_threshold(given)

    def _keep_config_threshold(self, given: Optional[float]) -> None:
        """After loading a saved cfg: the saved threshold stands (a threshold
        set on the component before it was saved is kept), unless the config
        the pipeline is loaded with sets another threshold than the one it was
        saved with, as `spacy.load(path, config={"components": {name:
        {"threshold": 0.8}}})` does: then that one wins."""
        saved = self.cfg.get("config_threshold")
        # Compared with a tolerance: srsly's JSON reader can be one ulp off.
        same = saved == given or (
            isinstance(saved, (int, float)) and isinstance(given, (int, float))
            and abs(saved - given) <= 1e-9
        )
        if not same:
            self.cfg["threshold"] = given
        self.cfg["config_threshold"] = given

    def _check_cfg(self, source: str) -> None:
        """Raise if the loaded cfg is not valid or does not describe the loaded
        model, as after a hand edit or a cfg copied from another pipeline:
        predictions would otherwise read the wrong columns of the head."""
        cfg = self.cfg
        try:
            tasks = list(cfg["tasks"])
            valid = (
                bool(tasks)
                and all(task in TASKS for task in tasks)
                and len(set(tasks)) == len(tasks)
                and cfg["scheme"] in SCHEMES
                and all(isinstance(label, str) for task in tasks for label in cfg["labels"][task])
            )
            problem = check_calibration(cfg.get("calibration"), tasks)
            threshold = cfg.get("threshold")
            if threshold is not None and not (
                isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0
            ):
                problem = f"threshold must be null or a number in [0, 1], not {threshold!r}"
        except (KeyError, TypeError, AttributeError):
            valid, problem = False, None
        if valid and problem:
            raise ValueError(
                f"[{self.name}] {source} is not valid: {problem}. Copy the pipeline "
                f"directory again from where it was saved, or calibrate it again "
                f"(python -m spacy tokclf-calibrate)."
            )
        if not valid:
            raise ValueError(
                f"[{self.name}] {source} does not hold valid settings: it needs "
                f'"tasks" (distinct names from {list(TASKS)}), "scheme" (one of '
                f'{list(SCHEMES)}) and "labels" (task -> list of labels), but holds '
                f"{str(cfg)[:300]}. Copy the pipeline directory again from where it "
                f"was saved, or save the pipeline again with nlp.to_disk()."
            )
        n_labels = sum(len(self.layout.output_labels(task)) for task in tasks)
        output_layer = self.model.get_ref("output_layer")
        if output_layer.has_dim("nO") and output_layer.get_dim("nO") != n_labels:
            raise ValueError(
                f"[{self.name}] {source} does not match the saved model: its labels "
                f"{self.label_data} make {n_labels} outputs (scheme "
                f"\"{cfg['scheme']}\"), but the model has {output_layer.get_dim('nO')}. "
                f"The cfg was edited or comes from another pipeline: copy the pipeline "
                f"directory again from where it was saved, or save it again with "
                f"nlp.to_disk()."
            )

    def _normalize_labels(self, labels: Any) -> Dict[str, List[str]]:
        if isinstance(labels, dict):
            missing = [task for task in self.tasks if task not in labels]
            if missing:
                raise ValueError(
                    f"[{self.name}] The `labels` given to initialize have no entry for "
                    f"task(s) {missing}. Give a dict of task -> labels, e.g. "
                    f'{{"ents": ["PER", "LOC"], "tag": ["NN", "VB"]}}, as written by '
                    f"`spacy init labels`."
                )
            return {task: list(labels[task]) for task in self.tasks}
        if len(self.tasks) != 1:
            raise ValueError(
                f"[{self.name}] With tasks {self.tasks}, `labels` must be a dict of "
                f'task -> labels, e.g. {{"ents": [...], "tag": [...]}}.'
            )
        return {self.tasks[0]: list(labels)}


def _read_saved(name: str, path: Path, read: Callable[[Path], Any]) -> Any:
    """Read a file written by `to_disk`; a missing or unreadable file raises an
    error that names it, whatever failed underneath (msgpack, json, torch)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"[{name}] Cannot load the component: the file {path} is missing. A "
            f"pipeline saved with nlp.to_disk() has it: copy the whole pipeline "
            f"directory again, or save the pipeline again."
        )
    try:
        return read(path)
    except Exception as err:
        raise ValueError(
            f"[{name}] Cannot load the component from the file {path}: "
            f"{type(err).__name__}: {err}\nThe file is truncated or corrupted, or was "
            f"not written for this component's config. Copy the pipeline directory "
            f"again from where it was saved, or save the pipeline again with "
            f"nlp.to_disk()."
        ) from err


def _check_threshold(name: str, threshold: Any) -> None:
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
        0.0 <= threshold <= 1.0
    ):
        raise ValueError(
            f"[{name}] Invalid setting `threshold = {threshold!r}`. Use null (keep "
            f"every entity) or a score in [0, 1]; entities scored under it are "
            f"dropped. In a config file:\n    [components.{name}]\n    threshold = 0.5"
        )


def _is_empty_list(examples: Any) -> bool:
    """True for an empty list or tuple (a generator is counted while read)."""
    return isinstance(examples, (list, tuple)) and not examples


def _log_softmax(scores: Any, xp: Any = numpy) -> Any:
    """Row-wise log-softmax with the array module of the scores (numpy/cupy)."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def _probs_list(probs: numpy.ndarray, kept: Optional[numpy.ndarray]) -> List[Optional[float]]:
    """Token probabilities as a list; None where the existing annotation was kept."""
    values = probs.tolist()
    if kept is None or not kept.any():
        return values
    return [None if k else v for v, k in zip(values, kept.tolist())]
