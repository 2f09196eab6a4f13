"""token_classifier -> Hugging Face token-classification checkpoint.

Export (`to_huggingface`): a trained token_classifier becomes a directory with
config.json (id2label/label2id), safetensors weights and the tokenizer, which
`transformers.pipeline("token-classification", ...)` loads. The exported
model's logits are checked against the component's scores on a sample text
of several sentences, with sentence boundaries (importing.check_same_scores).

What a checkpoint cannot hold is refused or named: sentence context
(`model.tok2vec.context`: 0 is refused unless allow_context=True, a larger
context is a warning that says on which texts the two read differently), the
`threshold` and the calibration (warnings).
"""
import copy
import warnings
from pathlib import Path
from typing import Any, List, Optional, Union, cast

import numpy
import torch
from spacy.language import Language

from ..errors import Errors, error
from ..labels import biluo_to_bioes
from ..layers import EncoderSettings, HFEncoderShim, quantization_of
from ..pipeline import TokenClassifier
from .importing import check_same_scores


def to_huggingface(
    nlp_or_pipe: Union[Language, TokenClassifier],
    out_dir: Union[str, Path],
    *,
    component: Optional[str] = None,
    task: Optional[str] = None,
    allow_context: bool = False,
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
    allow_context (bool): export a component with `model.tok2vec.context = 0`
        (each sentence read alone) anyway, as the model it is on docs
        without sentence boundaries.
    RETURNS (Path): out_dir.
    """
    pipe = _find_component(nlp_or_pipe, component)
    if task is None:
        task = "ents" if "ents" in pipe.tasks else pipe.tasks[0]
    if task not in pipe.tasks:
        raise ValueError(error(Errors.HF_EXPORT_TASK, pipe.name, task=task, tasks=pipe.tasks))
    tok2vec = pipe.model.get_ref("tok2vec")
    if not tok2vec.shims or not isinstance(tok2vec.shims[0], HFEncoderShim):
        raise ValueError(error(Errors.HF_EXPORT_LISTENER, pipe.name, tok2vec=tok2vec.name))
    shim: HFEncoderShim = tok2vec.shims[0]
    output_layer = pipe.model.get_ref("output_layer")
    if not shim.loaded or not output_layer.has_param("W"):
        raise ValueError(error(Errors.HF_EXPORT_UNTRAINED, pipe.name))
    transformer = shim.transformer
    assert transformer is not None  # shim.loaded
    if quantization_of(transformer) is not None:
        raise ValueError(error(Errors.HF_EXPORT_QUANTIZED, pipe.name))
    settings: EncoderSettings = tok2vec.attrs["settings"]
    if settings.pooling != "first":
        raise ValueError(error(Errors.HF_EXPORT_POOLING, pipe.name, pooling=settings.pooling))
    # Sentences read alone differ from the whole text on any text of several
    # sentences; with context > 0, only on texts longer than the window.
    alone = settings.context == 0
    if alone and not allow_context:
        raise ValueError(error(Errors.HF_EXPORT_CONTEXT_ALONE, pipe.name))
    if alone:
        warnings.warn(error(Errors.HF_EXPORT_CONTEXT_ALLOWED, pipe.name))
    elif settings.context is not None:
        warnings.warn(
            error(Errors.HF_EXPORT_CONTEXT, pipe.name, context=settings.context, window=settings.window)
        )
    if task == "ents" and pipe.cfg.get("threshold") is not None:
        warnings.warn(error(Errors.HF_EXPORT_THRESHOLD, pipe.name, threshold=pipe.cfg["threshold"]))
    calibration = pipe.cfg.get("calibration")
    if calibration:
        method = calibration.get("method", "temperature")
        warnings.warn(error(Errors.HF_EXPORT_CALIBRATION, pipe.name, method=method))
    labels = pipe.layout.output_labels(task)
    if task == "ents" and pipe.cfg["scheme"] == "BILUO":
        labels = [biluo_to_bioes(label) for label in labels]
        warnings.warn(error(Errors.HF_EXPORT_BIOES, pipe.name))
    hf_model = _token_classification_model(pipe.name, transformer, labels)
    cols = pipe.layout.slices[task]
    ops = pipe.model.ops
    W = ops.to_numpy(output_layer.get_param("W"))[cols]
    b = ops.to_numpy(output_layer.get_param("b"))[cols]
    with torch.no_grad():
        hf_model.classifier.weight.copy_(torch.from_numpy(numpy.ascontiguousarray(W)))
        hf_model.classifier.bias.copy_(torch.from_numpy(numpy.ascontiguousarray(b)))
    hf_model.eval()
    rows = list(range(len(labels)))
    # The sample text has sentence boundaries, unless the component reads
    # sentences alone (allowed above): then it is compared as read whole.
    check_same_scores(pipe, task, hf_model, shim.tokenizer, rows, "export", sentences=not alone)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(str(out_dir), safe_serialization=True)
    shim.tokenizer.save_pretrained(str(out_dir))
    return out_dir


def _find_component(
    nlp_or_pipe: Union[Language, TokenClassifier], component: Optional[str]
) -> TokenClassifier:
    if isinstance(nlp_or_pipe, TokenClassifier):
        return nlp_or_pipe
    if not isinstance(nlp_or_pipe, Language):
        raise TypeError(error(Errors.HF_NOT_A_PIPELINE, found=type(nlp_or_pipe).__name__))
    nlp = nlp_or_pipe
    if component is not None:
        if component not in nlp.component_names:
            raise ValueError(
                error(
                    Errors.HF_NO_SUCH_COMPONENT,
                    component=component,
                    components=nlp.component_names,
                )
            )
        pipe = nlp.get_pipe(component)
        if not isinstance(pipe, TokenClassifier):
            raise ValueError(
                error(
                    Errors.HF_NOT_A_TOKEN_CLASSIFIER,
                    component=component,
                    found=type(pipe).__name__,
                )
            )
        return pipe
    found = [
        name for name in nlp.component_names if isinstance(nlp.get_pipe(name), TokenClassifier)
    ]
    if len(found) != 1:
        raise ValueError(error(Errors.HF_WHICH_COMPONENT, n=len(found), found=found))
    return cast(TokenClassifier, nlp.get_pipe(found[0]))


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
            error(Errors.HF_EXPORT_NO_MODEL_TYPE, name, model_type=hf_config.model_type, err=err)
        ) from err
    result = hf_model.base_model.load_state_dict(transformer.state_dict(), strict=False)
    classifier = getattr(hf_model, "classifier", None)
    if result.missing_keys or not isinstance(classifier, torch.nn.Linear):
        raise ValueError(
            error(
                Errors.HF_EXPORT_NOT_ENCODER_PLUS_LINEAR,
                name,
                model_class=type(hf_model).__name__,
                missing=result.missing_keys[:5],
            )
        )
    return hf_model
