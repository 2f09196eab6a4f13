"""Hugging Face token-classification checkpoint -> token_classifier.

Import (`from_huggingface`): a fine-tuned `AutoModelForTokenClassification`
directory becomes a token_classifier whose encoder is the model's encoder and
whose head is the model's `classifier`, its rows reordered to the
component's labels. It predicts as the model does, without training, and
trains further like any token_classifier. The way back is exporting.py.

Both directions check their work (`check_same_scores`): the component's label
scores and the model's logits are compared on a sample text of several
sentences, with sentence boundaries, so a head that is not one Linear layer
on the encoder's last hidden states, a row in the wrong place, or a component
that reads sentences apart (`model.tok2vec.context`), is an error, not a
quietly different model.
"""
import copy
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, cast

import numpy
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import SimpleFrozenDict
from thinc.types import Floats1d, Floats2d

from ..errors import Errors, error
from ..labels import ImportedLabels, read_hf_labels
from ..layers import (
    HFEncoderShim,
    PieceEncoder,
    fit_window,
    load_fast_tokenizer,
    max_window,
    prepare_tokenizer,
)
from ..pipeline import DEFAULT_CONFIG, TokenClassifier

# Bias of a head row for a label the model does not have: it is never predicted.
MISSING_LABEL_BIAS = -1e4
# Sentence the component is initialized on.
CHECK_WORDS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."]
# Sentences the component and the model are compared on: one text, with
# sentence boundaries, which a component with sentence context reads
# differently from a model that reads the text whole.
CHECK_SENTENCES = [
    CHECK_WORDS,
    ["The", "dog", "sleeps", "."],
    ["Then", "the", "fox", "runs", "over", "the", "hill", "."],
]
# Largest allowed difference between the two sides' scores (relative and absolute).
CHECK_TOLERANCE = 1e-3

# Settings that the import decides; `config` may set any other.
_IMPORT_SETS = ("tasks", "scheme")
_IMPORT_SETS_TOK2VEC = ("@architectures", "name")


def from_huggingface(
    model_dir: Union[str, Path],
    *,
    nlp: Optional[Language] = None,
    lang: str = "en",
    name: str = "token_classifier",
    task: Optional[str] = None,
    config: Dict[str, Any] = SimpleFrozenDict(),
) -> Language:
    """Add a token_classifier made from a fine-tuned Hugging Face
    token-classification model: the model's encoder, its classifier as the
    head, its labels (id2label) as the component's labels. The component
    predicts at once; to train it further, use `nlp.resume_training()` (not
    `nlp.initialize()`, which starts a new head), or source it in a training
    config (`[components.NAME] source = "DIR"` after `nlp.to_disk(DIR)`).

    model_dir (Union[str, Path]): directory of the model: config.json, weights
        and fast tokenizer files, as written by `save_pretrained`.
    nlp (Optional[Language]): pipeline to add the component to; None: a blank
        pipeline of language `lang`.
    lang (str): language of the blank pipeline when `nlp` is None.
    name (str): name of the new component.
    task (Optional[str]): "ents" (entities: Doc.ents) or "tag" (token.tag_);
        None decides from the labels: scheme prefixes (B-, I-, ...) -> "ents".
    config (Dict[str, Any]): other component settings, as for `add_pipe`,
        e.g. {"overwrite": True, "model": {"tok2vec": {"window": 128}}}.
    RETURNS (Language): the pipeline with the new component.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise OSError(error(Errors.HF_NOT_A_MODEL_DIR, name, model_dir=model_dir))
    hf_model, tokenizer = _load_checkpoint(name, model_dir)
    names = [hf_model.config.id2label[i] for i in range(hf_model.config.num_labels)]
    imported = read_hf_labels(names, task)
    nlp = nlp if nlp is not None else spacy.blank(lang)
    if name in nlp.component_names:
        raise ValueError(error(Errors.HF_NAME_TAKEN, name, component=name))
    pipe_config = _component_config(name, model_dir, hf_model, tokenizer, imported, config)
    pipe = cast(TokenClassifier, nlp.add_pipe("token_classifier", name=name, config=pipe_config))
    encoder = _encoder_of(name, hf_model)
    shim = cast(HFEncoderShim, pipe.model.get_ref("tok2vec").shims[0])
    shim.set_encoder(PieceEncoder(encoder), tokenizer)
    _set_head(pipe, imported, hf_model.classifier)
    pooling = pipe.model.get_ref("tok2vec").attrs["settings"].pooling
    if pooling == "first":
        check_same_scores(pipe, imported.task, hf_model, tokenizer, imported.rows, "import")
    else:
        warnings.warn(error(Errors.HF_IMPORT_POOLING, name, pooling=pooling))
    if imported.missing:
        labels = pipe.layout.output_labels(imported.task)
        missing = [labels[r] for r in imported.missing]
        warnings.warn(
            error(Errors.HF_MISSING_ROWS, name, labels=missing, bias=MISSING_LABEL_BIAS)
        )
    return nlp


# Import internals ---------------------------------------------------------------


def _load_checkpoint(name: str, model_dir: Path) -> Tuple[Any, Any]:
    """The token-classification model (eval mode) and its fast tokenizer."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    try:
        hf_config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(
            error(Errors.HF_CONFIG_UNREADABLE, name, model_dir=model_dir, err=err)
        ) from err
    architectures = getattr(hf_config, "architectures", None) or []
    if architectures and not any(a.endswith("ForTokenClassification") for a in architectures):
        raise ValueError(
            error(
                Errors.HF_NOT_TOKEN_CLASSIFICATION,
                name,
                model_dir=model_dir,
                architectures=", ".join(architectures),
            )
        )
    try:
        hf_model, info = AutoModelForTokenClassification.from_pretrained(
            str(model_dir), local_files_only=True, output_loading_info=True
        )
    except ValueError as err:
        raise ValueError(
            error(
                Errors.HF_NO_TOKEN_CLASSIFICATION_MODEL,
                name,
                model_dir=model_dir,
                model_type=hf_config.model_type,
                err=err,
            )
        ) from err
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])[:5]
        raise ValueError(
            error(Errors.HF_MISSING_WEIGHTS, name, model_dir=model_dir, missing=missing)
        )
    classifier = getattr(hf_model, "classifier", None)
    hidden_size = hf_model.config.hidden_size
    if (
        not isinstance(classifier, torch.nn.Linear)
        or classifier.in_features != hidden_size
        or classifier.out_features != hf_model.config.num_labels
    ):
        raise ValueError(
            error(
                Errors.HF_HEAD_NOT_LINEAR,
                name,
                model_class=type(hf_model).__name__,
                hidden_size=hidden_size,
                n_labels=hf_model.config.num_labels,
                found=type(classifier).__name__,
            )
        )
    hf_model.eval()
    tokenizer = load_fast_tokenizer(str(model_dir), local_files_only=True, component=name)
    return hf_model, tokenizer


def _component_config(
    name: str,
    model_dir: Path,
    hf_model: Any,
    tokenizer: Any,
    imported: ImportedLabels,
    config: Dict[str, Any],
) -> Dict[str, Any]:
    """The add_pipe config: the user's settings, plus the ones the import sets."""
    set_here = [key for key in _IMPORT_SETS if key in config]
    tok2vec_given = dict(config.get("model", {}).get("tok2vec", {}))
    set_here += [f"model.tok2vec.{key}" for key in _IMPORT_SETS_TOK2VEC if key in tok2vec_given]
    if set_here:
        raise ValueError(error(Errors.HF_IMPORT_SETS, name, keys=set_here))
    cfg = copy.deepcopy(dict(config))
    model_cfg = cfg.setdefault("model", {})
    tok2vec = model_cfg.setdefault("tok2vec", {})
    tok2vec["name"] = str(model_dir.resolve())
    if "window" not in tok2vec:
        # The component's default window, or the longest the model reads, with
        # the stride scaled alike so that long documents' windows overlap.
        # Special pieces are read after padding is off: a tokenizer.json that
        # pads would otherwise count its padding as special pieces.
        _, special = prepare_tokenizer(tokenizer)
        defaults = DEFAULT_CONFIG["model"]["tok2vec"]
        limit = max_window(_encoder_module(hf_model), tokenizer, special)
        window, stride = fit_window(
            defaults["window"], tok2vec.get("stride", defaults["stride"]), limit
        )
        tok2vec["window"] = window
        tok2vec.setdefault("stride", stride)
    cfg["tasks"] = [imported.task]
    if imported.scheme is not None:
        cfg["scheme"] = imported.scheme
    return cfg


def _encoder_module(hf_model: Any) -> torch.nn.Module:
    """The model's encoder, as loaded (`model.bert`, `model.roberta`, ...)."""
    return hf_model.base_model


def _encoder_of(name: str, hf_model: Any) -> torch.nn.Module:
    """The model's encoder as `AutoModel` builds it, so that the saved pipeline
    rebuilds it from its config (AutoModel.from_config) and loads its weights.
    Parts that token classification leaves out (BERT's pooler) stay random;
    they are never used."""
    from transformers import AutoModel

    encoder = AutoModel.from_config(hf_model.config)
    result = encoder.load_state_dict(hf_model.base_model.state_dict(), strict=False)
    if result.unexpected_keys:
        raise ValueError(
            error(
                Errors.HF_ENCODER_DOES_NOT_FIT,
                name,
                model_class=type(hf_model).__name__,
                encoder_class=type(encoder).__name__,
                keys=result.unexpected_keys[:5],
            )
        )
    return encoder.eval()


def _set_head(pipe: TokenClassifier, imported: ImportedLabels, classifier: torch.nn.Linear) -> None:
    """Give the component the model's labels and its classifier as the head."""
    pipe.cfg["labels"] = {imported.task: list(imported.labels)}
    for label in imported.labels:
        pipe.vocab.strings.add(label)
    output_layer = pipe.model.get_ref("output_layer")
    output_layer.set_dim("nO", len(imported.rows))
    pipe.model.initialize(X=[Doc(pipe.vocab, words=CHECK_WORDS)])
    weight = classifier.weight.detach().cpu().numpy()
    bias = (
        classifier.bias.detach().cpu().numpy()
        if classifier.bias is not None
        else numpy.zeros((weight.shape[0],), dtype="float32")
    )
    W = numpy.zeros((len(imported.rows), weight.shape[1]), dtype="float32")
    b = numpy.full((len(imported.rows),), MISSING_LABEL_BIAS, dtype="float32")
    for row, label_id in enumerate(imported.rows):
        if label_id is not None:
            W[row] = weight[label_id]
            b[row] = bias[label_id]
    ops = pipe.model.ops
    output_layer.set_param("W", ops.asarray2f(cast(Floats2d, W)))
    output_layer.set_param("b", ops.asarray1f(cast(Floats1d, b)))


# Both directions (exporting.py uses it too) ----------------------------------------


def check_same_scores(
    pipe: TokenClassifier,
    task: str,
    hf_model: Any,
    tokenizer: Any,
    rows: Sequence[Optional[int]],
    direction: str,
    sentences: bool = True,
) -> None:
    """Raise unless the component's label scores equal the model's logits at
    each word's first piece, on the words of CHECK_SENTENCES as one doc: with
    sentence boundaries (sentences=True), which the model never has, or
    without.

    rows: per component output row (of `task`), the model's label id or None.
    """
    words = [word for sentence in CHECK_SENTENCES for word in sentence]
    sent_starts: List[Union[bool, int, None]] = [
        i == 0 for sentence in CHECK_SENTENCES for i in range(len(sentence))
    ]
    doc = Doc(pipe.vocab, words=words, sent_starts=sent_starts if sentences else None)
    ops = pipe.model.ops
    scores = ops.to_numpy(pipe.model.predict([doc])[0])[:, pipe.layout.slices[task]]
    encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    word_ids = encoded.word_ids(0)
    first = [word_ids.index(i) for i in range(len(words))]
    device = next(hf_model.parameters()).device
    with torch.no_grad():
        # The inputs the component gives its encoder (layers/hf_encoder.py).
        logits = hf_model(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=encoded["attention_mask"].to(device),
        ).logits[0]
    logits = logits.cpu().numpy()[first]
    present = [r for r, i in enumerate(rows) if i is not None]
    ours = scores[:, present]
    theirs = logits[:, [rows[r] for r in present]]
    if not numpy.allclose(ours, theirs, rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE):
        diff = float(numpy.abs(ours - theirs).max())
        template = Errors.HF_IMPORT_HEAD_DIFFERS if direction == "import" else Errors.HF_EXPORT_DIFFERS
        what = template.format(model_class=type(hf_model).__name__)
        raise ValueError(
            error(Errors.HF_NOT_FAITHFUL, pipe.name, direction=direction, what=what, diff=diff)
        )
