"""int8 CPU inference: quantize the encoder of every token_classifier."""
from typing import List

from spacy.language import Language

from .errors import EncoderErrors, error
from .layers import HFEncoderShim, quantize_linear_layers
from .pipeline import TokenClassifier


def quantize_encoder(nlp: Language) -> List[str]:
    """Quantize the encoder of every token_classifier in the pipeline to int8,
    in place, for faster inference on CPU: dynamic quantization of the
    transformer's linear layers (int8 weights, one scale per output channel;
    int8 activations, one scale per word piece, computed at run time).

    Call it on a trained pipeline, after loading it: a quantized encoder
    cannot be trained. The pipeline then saves (nlp.to_disk) and loads
    (spacy.load) with its int8 weights.

        nlp = spacy.load("my_pipeline")
        spacy_tokclf.quantize_encoder(nlp)

    nlp (Language): a pipeline with one or more initialized token_classifier
        components that embed their encoder (spacy-tokclf.HFEncoder.v1).
    RETURNS (List[str]): the names of the components quantized.
    """
    quantized: List[str] = []
    listeners: List[str] = []
    for name, pipe in nlp.components:
        if not isinstance(pipe, TokenClassifier):
            continue
        tok2vec = pipe.model.get_ref("tok2vec")
        shims = [s for s in tok2vec.shims if isinstance(s, HFEncoderShim)]
        if not shims:
            listeners.append(name)
            continue
        shim = shims[0]
        transformer = shim.transformer
        if transformer is None:
            raise ValueError(
                error(EncoderErrors.NO_WEIGHTS, name, before="quantize_encoder(nlp)")
            )
        if shim.device.type != "cpu":
            raise ValueError(error(EncoderErrors.QUANTIZE_NOT_ON_CPU, name, device=shim.device))
        quantize_linear_layers(transformer)
        quantized.append(name)
    if not quantized:
        if listeners:
            raise ValueError(error(EncoderErrors.QUANTIZE_LISTENERS, listeners=listeners))
        raise ValueError(error(EncoderErrors.QUANTIZE_NOTHING, components=nlp.pipe_names))
    return quantized
