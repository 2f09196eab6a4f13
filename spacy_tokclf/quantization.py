"""int8 CPU inference: quantize the encoder of every token_classifier."""
from typing import List

from spacy.language import Language

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
                f"[{name}] The encoder has no weights yet: load a trained pipeline "
                f"(spacy.load) or call nlp.initialize() before quantize_encoder(nlp)."
            )
        if shim.device.type != "cpu":
            raise ValueError(
                f"[{name}] int8 quantization is for CPU inference; this encoder is on "
                f"'{shim.device}'. Load the pipeline without spacy.require_gpu() / "
                f"--gpu-id to quantize it."
            )
        quantize_linear_layers(transformer)
        quantized.append(name)
    if not quantized:
        if listeners:
            raise ValueError(
                f"The token_classifier component(s) {listeners} listen to an upstream "
                f"`transformer` component (spacy-transformers), whose model "
                f"quantize_encoder does not change. It quantizes token_classifiers "
                f'with an embedded encoder (`@architectures = "spacy-tokclf.HFEncoder.v1"`).'
            )
        raise ValueError(
            f"No token_classifier in the pipeline (components: {nlp.pipe_names}): "
            f"nothing to quantize."
        )
    return quantized
