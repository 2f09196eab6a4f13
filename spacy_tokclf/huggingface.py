"""Hugging Face token-classification checkpoints <-> token_classifier.

Import (`from_huggingface`): a fine-tuned `AutoModelForTokenClassification`
directory becomes a token_classifier whose encoder is the model's encoder and
whose head is the model's `classifier`, its rows reordered to the
component's labels. It predicts as the model does, without training, and
trains further like any token_classifier.

Export (`to_huggingface`): a trained token_classifier becomes such a
directory (config with id2label/label2id, safetensors weights, tokenizer),
which `transformers.pipeline("token-classification", ...)` loads.

Both directions check their work: the component's label scores and the
model's logits are compared on a sample sentence, so a head that is not one
Linear layer on the encoder's last hidden states, or a row in the wrong
place, is an error, not a quietly different model.
"""
import copy
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import SimpleFrozenDict

from .annotation import OUTSIDE, scheme_labels
from .layers import (
    EncoderSettings,
    HFEncoderShim,
    PieceEncoder,
    fit_window,
    max_window,
    prepare_tokenizer,
    quantization_of,
)
from .pipeline import DEFAULT_CONFIG, TokenClassifier

# "B-PER", "I_WORK-OF-ART", "S-LOC": a scheme prefix, "-" or "_", the type.
PREFIXED_LABEL = re.compile(r"^([BIESLU])[-_](.+)$")
# transformers' names for labels nobody named (config.json without id2label).
PLACEHOLDER_LABEL = re.compile(r"^LABEL_\d+$")
# BIOES/IOBES prefixes as the component's BILUO names them.
TO_BILUO = {"E": "L", "S": "U"}
FROM_BILUO = {"L": "E", "U": "S"}
# Bias of a head row for a label the model does not have: it is never predicted.
MISSING_LABEL_BIAS = -1e4
# Sentence the component and the model are compared on.
CHECK_WORDS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."]
# Largest allowed difference between the two sides' scores (relative and absolute).
CHECK_TOLERANCE = 1e-3

# Settings that the import decides; `config` may set any other.
_IMPORT_SETS = ("tasks", "scheme")
_IMPORT_SETS_TOK2VEC = ("@architectures", "name")


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


def read_labels(names: Sequence[str], task: Optional[str] = None) -> ImportedLabels:
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
        raise ValueError(
            f"[token_classifier] Unknown task {task!r}. Use \"ents\" (entities, "
            f"Doc.ents), \"tag\" (token.tag_), or leave it unset (None / no --task) "
            f"to decide from the model's labels."
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"[token_classifier] The model's id2label names some labels twice: "
            f"{duplicates[:10]}. Give each label id its own name in config.json "
            f"(`id2label`) before importing."
        )
    if task is None and all(PLACEHOLDER_LABEL.match(n) for n in names):
        raise ValueError(
            f"[token_classifier] The model's labels are transformers' placeholders "
            f"({', '.join(names[:3])}, ...): its config.json has no `id2label`. Write "
            f"the real label names into `id2label` and `label2id` in config.json, or "
            f"import them as they are with task=\"tag\" (CLI: --task tag)."
        )
    matches = [PREFIXED_LABEL.match(n) for n in names]
    plain = [n for n, m in zip(names, matches) if m is None and n != OUTSIDE]
    if task is None:
        if not any(matches):
            task = "tag"
        elif plain:
            prefixed = [n for n, m in zip(names, matches) if m is not None]
            raise ValueError(
                f"[token_classifier] Mixed labels: {prefixed[:3]} have an entity "
                f"scheme prefix (B-, I-, E-, S-, L-, U-), but {plain[:5]} have none. "
                f"Entity labels must all be \"O\" or prefix + type. Import every "
                f"label as a tag with task=\"tag\" (CLI: --task tag), or fix the "
                f"label names in config.json (`id2label`, `label2id`)."
            )
        else:
            task = "ents"
    if task == "tag":
        return ImportedLabels("tag", None, names, list(range(len(names))))
    if plain:
        raise ValueError(
            f"[token_classifier] task=\"ents\" needs entity labels (\"O\" or a "
            f"B-/I-/E-/S-/L-/U- prefix + type), but {plain[:5]} have no prefix. "
            f"Import them as tags with task=\"tag\" (CLI: --task tag)."
        )
    prefixes = {m.group(1) for m in matches if m is not None}
    if prefixes & {"E", "S"} and prefixes & {"L", "U"}:
        raise ValueError(
            f"[token_classifier] Unknown scheme: the labels mix BIOES (E-, S-) and "
            f"BILOU (L-, U-) prefixes ({sorted(prefixes)}). Rename them to one "
            f"scheme in config.json (`id2label`, `label2id`)."
        )
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
                f"[token_classifier] Labels '{names[index[key]]}' and '{name}' are the "
                f"same label ({key}) written two ways. Keep one of them in config.json "
                f"(`id2label`, `label2id`)."
            )
        index[key] = label_id
    if not types:
        raise ValueError(
            "[token_classifier] The model has no entity labels, only \"O\": "
            "there is nothing to import."
        )
    rows = [index.get(label) for label in scheme_labels(types, scheme)]
    return ImportedLabels("ents", scheme, types, rows)


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
        raise OSError(
            f"[token_classifier] '{model_dir}' is not a directory with a Hugging Face "
            f"model (no config.json). Import from a local directory written by "
            f"`model.save_pretrained(DIR)` and `tokenizer.save_pretrained(DIR)` (for a "
            f"model on the hub: `huggingface-cli download NAME --local-dir DIR`)."
        )
    hf_model, tokenizer = _load_checkpoint(model_dir)
    names = [hf_model.config.id2label[i] for i in range(hf_model.config.num_labels)]
    imported = read_labels(names, task)
    nlp = nlp if nlp is not None else spacy.blank(lang)
    if name in nlp.component_names:
        raise ValueError(
            f"[token_classifier] The pipeline already has a component '{name}'. "
            f"Choose another name (name=..., CLI: --name)."
        )
    pipe_config = _component_config(model_dir, hf_model, tokenizer, imported, config)
    pipe = nlp.add_pipe("token_classifier", name=name, config=pipe_config)
    encoder = _encoder_of(hf_model)
    pipe.model.get_ref("tok2vec").shims[0].set_encoder(PieceEncoder(encoder), tokenizer)
    _set_head(pipe, imported, hf_model.classifier)
    pooling = pipe.model.get_ref("tok2vec").attrs["settings"].pooling
    if pooling == "first":
        _check_same_scores(pipe, imported.task, hf_model, tokenizer, imported.rows, "import")
    else:
        warnings.warn(
            f"[{name}] `model.tok2vec.pooling = \"{pooling}\"`: the imported head was "
            f"trained on each word's first piece, so the component predicts "
            f"differently from the model until it is trained. Leave pooling at "
            f"\"first\" to predict as the model does."
        )
    if imported.missing:
        labels = pipe.layout.output_labels(imported.task)
        warnings.warn(
            f"[{name}] The model has no label for {[labels[r] for r in imported.missing]}: "
            f"the component is never going to predict them (their head rows have "
            f"bias {MISSING_LABEL_BIAS:g}), and further training barely moves them."
        )
    return nlp


def to_huggingface(
    nlp_or_pipe: Union[Language, TokenClassifier],
    out_dir: Union[str, Path],
    *,
    component: Optional[str] = None,
    task: Optional[str] = None,
) -> Path:
    """Write a trained token_classifier as a Hugging Face token-classification
    checkpoint: config.json (with id2label, label2id), model.safetensors and
    the tokenizer files. `transformers.pipeline("token-classification",
    model=out_dir, aggregation_strategy="first")` loads it and, on the same
    words, predicts the labels the component predicts.

    nlp_or_pipe (Union[Language, TokenClassifier]): a pipeline or the component.
    out_dir (Union[str, Path]): the directory to write (created if needed).
    component (Optional[str]): name of the component in the pipeline; None:
        the only token_classifier.
    task (Optional[str]): the task to export (one head per checkpoint); None:
        "ents" if the component has it, else its only task.
    RETURNS (Path): out_dir.
    """
    pipe = _find_component(nlp_or_pipe, component)
    if task is None:
        task = "ents" if "ents" in pipe.tasks else pipe.tasks[0]
    if task not in pipe.tasks:
        raise ValueError(
            f"[{pipe.name}] Cannot export task '{task}': the component's tasks are "
            f"{pipe.tasks}. Pick one of them (task=..., CLI: --task)."
        )
    tok2vec = pipe.model.get_ref("tok2vec")
    if not tok2vec.shims or not isinstance(tok2vec.shims[0], HFEncoderShim):
        raise ValueError(
            f"[{pipe.name}] Only a component with its own encoder "
            f"(`spacy-tokclf.HFEncoder.v1`) can be exported: this one's "
            f"`model.tok2vec` is `{tok2vec.name}` (e.g. a listener of a shared "
            f"`transformer` component), whose weights and pooling live elsewhere."
        )
    shim: HFEncoderShim = tok2vec.shims[0]
    output_layer = pipe.model.get_ref("output_layer")
    if not shim.loaded or not output_layer.has_param("W"):
        raise ValueError(
            f"[{pipe.name}] The component is not trained or initialized yet: nothing "
            f"to export. Train it (nlp.initialize() and nlp.update(), or spacy train), "
            f"or load a trained pipeline with spacy.load()."
        )
    if quantization_of(shim.transformer) is not None:
        raise ValueError(
            f"[{pipe.name}] This pipeline's encoder is quantized to int8 "
            f"(spacy_tokclf.quantize_encoder), and a quantized pipeline cannot be "
            f"exported: Hugging Face models hold fp32 weights. Export the fp32 "
            f"pipeline (the one saved before quantize_encoder) instead."
        )
    settings: EncoderSettings = tok2vec.attrs["settings"]
    if settings.pooling != "first":
        raise ValueError(
            f"[{pipe.name}] Cannot export faithfully: `model.tok2vec.pooling` is "
            f"\"{settings.pooling}\", but a Hugging Face token-classification model "
            f"labels each word by its first word piece. Train the component with "
            f"pooling = \"first\":\n    [components.{pipe.name}.model.tok2vec]\n"
            f"    pooling = \"first\""
        )
    labels = pipe.layout.output_labels(task)
    if task == "ents" and pipe.cfg["scheme"] == "BILUO":
        labels = [_biluo_to_bioes(label) for label in labels]
        warnings.warn(
            f"[{pipe.name}] The component's scheme is BILUO: its labels are exported "
            f"as BIOES (B-, I-, E-, S-). transformers' token-classification pipeline "
            f"groups words into entities by B-/I- only, so with aggregation_strategy "
            f"other than \"none\" it splits each E- word off its entity and merges "
            f"adjacent S- words of one type. "
            f"Decode the BIOES labels yourself, or train with scheme = \"BIO\" for an "
            f"export that the pipeline decodes."
        )
    hf_model = _token_classification_model(pipe.name, shim.transformer, labels)
    cols = pipe.layout.slices[task]
    ops = pipe.model.ops
    W = ops.to_numpy(output_layer.get_param("W"))[cols]
    b = ops.to_numpy(output_layer.get_param("b"))[cols]
    with torch.no_grad():
        hf_model.classifier.weight.copy_(torch.from_numpy(numpy.ascontiguousarray(W)))
        hf_model.classifier.bias.copy_(torch.from_numpy(numpy.ascontiguousarray(b)))
    hf_model.eval()
    rows = list(range(len(labels)))
    _check_same_scores(pipe, task, hf_model, shim.tokenizer, rows, "export")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(str(out_dir), safe_serialization=True)
    shim.tokenizer.save_pretrained(str(out_dir))
    return out_dir


# Import internals ---------------------------------------------------------------


def _load_checkpoint(model_dir: Path) -> Tuple[Any, Any]:
    """The token-classification model (eval mode) and its fast tokenizer."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    try:
        hf_config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"[token_classifier] transformers cannot read the config.json in "
            f"'{model_dir}': {err}"
        ) from err
    architectures = getattr(hf_config, "architectures", None) or []
    if architectures and not any(a.endswith("ForTokenClassification") for a in architectures):
        raise ValueError(
            f"[token_classifier] '{model_dir}' holds a {', '.join(architectures)}, not a "
            f"model fine-tuned for token classification (*ForTokenClassification). To "
            f"train a token_classifier on this encoder, name it as the encoder instead:\n"
            f'    nlp.add_pipe("token_classifier", config={{"model": {{"tok2vec": '
            f'{{"name": "{model_dir}"}}}}}})'
        )
    try:
        hf_model, info = AutoModelForTokenClassification.from_pretrained(
            str(model_dir), local_files_only=True, output_loading_info=True
        )
    except ValueError as err:
        raise ValueError(
            f"[token_classifier] transformers has no token-classification model for "
            f"'{model_dir}' (model type '{hf_config.model_type}'): {err}"
        ) from err
    if info.get("missing_keys"):
        raise ValueError(
            f"[token_classifier] '{model_dir}' lacks weights of its token-classification "
            f"model ({sorted(info['missing_keys'])[:5]}): it is not a fine-tuned "
            f"token classifier, and these weights would be random. Import a "
            f"checkpoint saved from a trained *ForTokenClassification model."
        )
    classifier = getattr(hf_model, "classifier", None)
    hidden_size = hf_model.config.hidden_size
    if (
        not isinstance(classifier, torch.nn.Linear)
        or classifier.in_features != hidden_size
        or classifier.out_features != hf_model.config.num_labels
    ):
        raise ValueError(
            f"[token_classifier] {type(hf_model).__name__} has no plain Linear "
            f"`classifier` from the encoder's hidden states ({hidden_size}) to its "
            f"{hf_model.config.num_labels} labels (found: {type(classifier).__name__}). "
            f"token_classifier can hold only such a head (as in BERT, RoBERTa, XLM-R, "
            f"DeBERTa, ELECTRA or DistilBERT *ForTokenClassification models)."
        )
    hf_model.eval()
    tokenizer = AutoTokenizer.from_pretrained(
        str(model_dir), use_fast=True, add_prefix_space=True, local_files_only=True
    )
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"[token_classifier] The tokenizer in '{model_dir}' is a slow (Python) "
            f"tokenizer ({type(tokenizer).__name__}); token_classifier needs a fast one "
            f"to map word pieces to spaCy tokens. Save a fast tokenizer (tokenizer.json) "
            f"into the directory: AutoTokenizer.from_pretrained(DIR, use_fast=True)"
            f".save_pretrained(DIR), with `sentencepiece` installed for SentencePiece models."
        )
    return hf_model, tokenizer


def _component_config(
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
        raise ValueError(
            f"[token_classifier] The import decides {set_here} from the model; leave "
            f"them out of `config`. Choose the task with task=\"ents\" or \"tag\"."
        )
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


def _encoder_of(hf_model: Any) -> torch.nn.Module:
    """The model's encoder as `AutoModel` builds it, so that the saved pipeline
    rebuilds it from its config (AutoModel.from_config) and loads its weights.
    Parts that token classification leaves out (BERT's pooler) stay random;
    they are never used."""
    from transformers import AutoModel

    encoder = AutoModel.from_config(hf_model.config)
    result = encoder.load_state_dict(hf_model.base_model.state_dict(), strict=False)
    if result.unexpected_keys:
        raise ValueError(
            f"[token_classifier] The encoder of {type(hf_model).__name__} does not fit "
            f"{type(encoder).__name__} (weights {result.unexpected_keys[:5]} have no "
            f"place in it), so it cannot be imported."
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
    output_layer.set_param("W", ops.asarray2f(W))
    output_layer.set_param("b", ops.asarray1f(b))


# Export internals ---------------------------------------------------------------


def _find_component(
    nlp_or_pipe: Union[Language, TokenClassifier], component: Optional[str]
) -> TokenClassifier:
    if isinstance(nlp_or_pipe, TokenClassifier):
        return nlp_or_pipe
    if not isinstance(nlp_or_pipe, Language):
        raise TypeError(
            f"Expected a spaCy pipeline (Language) or a token_classifier, not "
            f"{type(nlp_or_pipe).__name__}. Load a saved pipeline with spacy.load(DIR)."
        )
    nlp = nlp_or_pipe
    if component is not None:
        if component not in nlp.component_names:
            raise ValueError(
                f"[token_classifier] The pipeline has no component '{component}'; its "
                f"components are {nlp.component_names}."
            )
        pipe = nlp.get_pipe(component)
        if not isinstance(pipe, TokenClassifier):
            raise ValueError(
                f"[token_classifier] Component '{component}' is a "
                f"{type(pipe).__name__}, not a token_classifier."
            )
        return pipe
    found = [
        name for name in nlp.component_names if isinstance(nlp.get_pipe(name), TokenClassifier)
    ]
    if len(found) != 1:
        raise ValueError(
            f"[token_classifier] The pipeline has {len(found)} token_classifier "
            f"components ({found}): name the one to export (component=..., CLI: "
            f"--component)."
        )
    return nlp.get_pipe(found[0])


def _biluo_to_bioes(label: str) -> str:
    prefix, sep, ent_type = label.partition("-")
    return f"{FROM_BILUO.get(prefix, prefix)}{sep}{ent_type}" if sep else label


def _token_classification_model(name: str, transformer: Any, labels: List[str]) -> Any:
    """A *ForTokenClassification model on a copy of `transformer`'s config and
    weights, with a classifier for `labels` (weights set by the caller)."""
    from transformers import AutoModelForTokenClassification

    hf_config = copy.deepcopy(transformer.config)
    hf_config.id2label = dict(enumerate(labels))
    hf_config.label2id = {label: i for i, label in enumerate(labels)}
    try:
        hf_model = AutoModelForTokenClassification.from_config(hf_config)
    except ValueError as err:
        raise ValueError(
            f"[{name}] transformers has no token-classification model for the "
            f"encoder's model type '{hf_config.model_type}', so it cannot be "
            f"exported: {err}"
        ) from err
    result = hf_model.base_model.load_state_dict(transformer.state_dict(), strict=False)
    classifier = getattr(hf_model, "classifier", None)
    if result.missing_keys or not isinstance(classifier, torch.nn.Linear):
        raise ValueError(
            f"[{name}] {type(hf_model).__name__} is not the encoder plus one Linear "
            f"`classifier` (weights it would lack: {result.missing_keys[:5]}), so the "
            f"component's head cannot be written into it."
        )
    return hf_model


# Both directions -------------------------------------------------------------------


def _check_same_scores(
    pipe: TokenClassifier,
    task: str,
    hf_model: Any,
    tokenizer: Any,
    rows: Sequence[Optional[int]],
    direction: str,
) -> None:
    """Raise unless the component's label scores equal the model's logits at
    each word's first piece, on CHECK_WORDS.

    rows: per component output row (of `task`), the model's label id or None.
    """
    doc = Doc(pipe.vocab, words=CHECK_WORDS)
    ops = pipe.model.ops
    scores = ops.to_numpy(pipe.model.predict([doc])[0])[:, pipe.layout.slices[task]]
    encoded = tokenizer(CHECK_WORDS, is_split_into_words=True, return_tensors="pt")
    word_ids = encoded.word_ids(0)
    first = [word_ids.index(i) for i in range(len(CHECK_WORDS))]
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
        what = (
            f"{type(hf_model).__name__}'s logits are not its `classifier` applied to its "
            f"encoder's last hidden states: it has a head that token_classifier cannot "
            f"hold (token_classifier imports models whose head is one Linear layer on "
            f"the encoder, as BERT, RoBERTa, XLM-R, DeBERTa, ELECTRA or DistilBERT "
            f"*ForTokenClassification models are)"
            if direction == "import"
            else f"the exported {type(hf_model).__name__} does not compute what the "
            f"component computes"
        )
        raise ValueError(
            f"[{pipe.name}] Cannot {direction} faithfully: {what}. Largest difference "
            f"between the label scores on a sample sentence: {diff:.3g}."
        )
