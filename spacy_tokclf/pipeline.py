"""The `token_classifier` component: per-token labels -> Doc.ents and token.tag_."""
import warnings
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy import util
from spacy.errors import Errors as SpacyErrors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats2d

from .annotation import annotate
from .decoding import BatchDecoding, DocPrediction, decode, empty_decoding, per_doc_predictions
from .errors import Errors, Warnings, error
from .labels import LabelLayout, add_label, check_head_size, check_scheme, check_tasks, grow_head
from .labels import check_threshold, initial_labels, is_empty_list, labels_in_examples
from .loss import Distillation, gold_ids, token_cross_entropy
from .optimizers import register_groups
from .saved import config_settings, load_from_bytes, load_from_disk
from .scoring import score_token_classifier

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
        "ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None, "tag_acc": 1.0
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
    """Predict a label per token for each task; write entities and tags.

    Prediction: `predict` runs the model and decodes its scores
    (decoding.py); `set_annotations` writes them to the docs (annotation.py).
    Training: `update` runs the model with gradients, `get_loss` takes the
    gold ids and the cross-entropy from loss.py. Labels: labels.py.
    """

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
        check_tasks(name, tasks)
        check_scheme(name, scheme)
        check_threshold(name, threshold)
        self.vocab = vocab
        self.model = model
        self.name = name
        self._rehearsal_model = None
        self.scorer = scorer
        self._unseen_warned: set = set()
        self.distillation: Optional[Distillation] = None  # extend_labels (loss.py); not saved
        self.cfg: Dict[str, Any] = {
            "labels": {task: [] for task in tasks},
            "tasks": tasks,
            "scheme": scheme,
            "overwrite": overwrite,
            "spans_key": spans_key if spans_key is not None else name,
            # Entities scored under it are dropped (None: keep all).
            "threshold": threshold,
            # The config's threshold (a threshold set on the component later
            # differs from it; saved.warn_if_threshold_dropped).
            "config_threshold": threshold,
            # None, or fitted by calibrate: {"temperature": {task: T}, "entity_map": ...}.
            "calibration": None,
        }
        # What the config sets, which loading keeps (saved.merge_loaded_cfg).
        self._config_settings = config_settings(self.cfg, model)

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
        """Add an entity type or tag. A trained head grows, keeping every weight:
        until an update, the old labels predict exactly as before (labels.grow_head).

        label (str): the label.
        task (Optional[str]): "ents" or "tag"; may be omitted with one task.
        RETURNS (int): 0 if the label was already present, otherwise 1.
        """
        if not isinstance(label, str):
            raise ValueError(SpacyErrors.E187)
        old, output_layer = self.layout, self.model.get_ref("output_layer")
        added = add_label(self.name, self.cfg["labels"], label, task)
        if added:
            self.vocab.strings.add(label)
            if output_layer.has_param("W"):
                grow_head(self.model, old, self.layout)
                if self._config_settings["nO"] is not None:  # a config that set nO
                    self._config_settings["nO"] = self.layout.n_outputs
        return added

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
        return per_doc_predictions(decoded, lengths, self.cfg.get("calibration"))

    def predict_log_probs(self, docs: List[Doc]) -> Tuple[BatchDecoding, List[int]]:
        """Uncalibrated label log-probabilities and decoded label ids of all tokens
        of the docs, rows one after another (what `predict` and calibration use).

        docs (List[Doc]): the docs.
        RETURNS: task -> (log_probs [n_tokens, n_labels], ids [n_tokens]), and
            the docs' lengths.
        """
        lengths = [len(doc) for doc in docs]
        if not any(lengths):
            return empty_decoding(self.layout), lengths
        scores = self.model.predict(docs)
        # One copy to the host per batch, not one per doc.
        flat = self.model.ops.to_numpy(self.model.ops.xp.concatenate(scores))
        return decode(self.layout, flat, lengths), lengths

    def set_annotations(self, docs: Iterable[Doc], predictions: List[DocPrediction]) -> None:
        """Write entities to doc.ents and doc.spans[spans_key] (with scores),
        tags to token.tag_, and label probabilities to doc._.tokclf_probs.

        docs (Iterable[Doc]): the docs.
        predictions (List[DocPrediction]): the output of `predict`.
        """
        layout = self.layout
        tags = layout.output_labels("tag") if "tag" in layout.tasks else []
        tag_hashes = numpy.asarray([self.vocab.strings.add(t) for t in tags], dtype="uint64")
        for doc, prediction in zip(docs, predictions):
            annotate(
                doc, prediction, layout=layout, cfg=self.cfg, name=self.name, tag_hashes=tag_hashes
            )

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
        losses = {} if losses is None else losses
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

    def finish_update(self, sgd: Optimizer) -> None:
        """Step the optimizer (spacy-tokclf.Adam.v1 learns the model's groups first)."""
        register_groups(sgd, self.model)
        self.model.finish_update(sgd)

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
        if not scores:
            return 0.0, []

        def gold(task: str) -> numpy.ndarray:
            ids = [self.gold_ids(eg, task) for eg in examples]
            return numpy.concatenate(ids or [numpy.zeros((0,), dtype="int64")])

        ops, layout, distill = self.model.ops, self.layout, self.distillation
        loss, d_scores = (  # with a teacher (extend_labels), its loss: loss.Distillation
            token_cross_entropy(ops, layout, scores, gold) if distill is None
            else distill.loss(ops, layout, scores, gold, [eg.predicted for eg in examples])
        )
        if numpy.isnan(loss):
            raise ValueError(SpacyErrors.E910.format(name=self.name))
        return loss, d_scores

    def gold_ids(self, example: Example, task: str) -> numpy.ndarray:
        """Gold label id per predicted token; -1 where the gold is missing.

        example (Example): the example.
        task (str): "ents" or "tag".
        RETURNS (numpy.ndarray): int64 [len(example.predicted)].
        """
        return gold_ids(self.layout, example, task, self._warn_unseen)

    def _warn_unseen(self, task: str, label: str) -> None:
        if (task, label) not in self._unseen_warned:
            self._unseen_warned.add((task, label))
            warnings.warn(error(Warnings.UNSEEN_GOLD_LABEL, self.name, task=task, label=label))

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
        if callable(get_examples) and is_empty_list(get_examples()):
            # Before spaCy's E930, which does not say so.
            raise ValueError(error(Errors.EMPTY_CORPUS, self.name))
        validate_get_examples(get_examples, "TokenClassifier.initialize")
        found, n_examples = labels_in_examples(self.tasks, get_examples())
        if n_examples == 0:
            # Else, with `labels` given, the head is sized from no sample: blis crashes.
            raise ValueError(error(Errors.EMPTY_CORPUS, self.name))
        # Labels added with add_label() before initialize are kept.
        new_labels = initial_labels(self.name, self.tasks, found, labels, self.cfg["labels"])
        n_labels = LabelLayout(tuple(self.tasks), self.cfg["scheme"], new_labels).n_outputs
        output_layer = self.model.get_ref("output_layer")
        check_head_size(self.name, output_layer.maybe_get_dim("nO"), new_labels, n_labels)
        self.cfg["labels"] = new_labels
        for label in self.labels:
            self.vocab.strings.add(label)
        output_layer.set_dim("nO", n_labels)
        doc_sample = [eg.x for eg in islice(get_examples(), 10)]
        self.model.initialize(X=doc_sample)

    # Serialization ----------------------------------------------------------

    def from_disk(
        self, path: Union[str, Path], *, exclude: Iterable[str] = util.SimpleFrozenList()
    ) -> "TokenClassifier":
        """Load the component from a directory written by `to_disk`. A missing,
        truncated or corrupted file raises an error that names the file. The
        config decides `overwrite`, `spans_key` and `threshold`; one that changes
        `tasks`, `scheme` or `model.nO` (fixed by training) is refused (saved.py).

        path (Union[str, Path]): the component's directory.
        exclude (Iterable[str]): names of serialization fields to skip.
        RETURNS (TokenClassifier): the loaded component.
        """
        self._validate_serialization_attrs()
        load_from_disk(self, Path(path), exclude, self._config_settings)
        return self

    def from_bytes(
        self, bytes_data: bytes, *, exclude: Iterable[str] = util.SimpleFrozenList()
    ) -> "TokenClassifier":
        """Load the component from the output of `to_bytes`, with the config's
        settings as `from_disk`.

        bytes_data (bytes): the data.
        exclude (Iterable[str]): names of serialization fields to skip.
        RETURNS (TokenClassifier): the loaded component.
        """
        self._validate_serialization_attrs()
        load_from_bytes(self, bytes_data, exclude, self._config_settings)
        return self
