"""Registered, versioned model builders. They only compose layers."""
from typing import Optional

from spacy.util import registry
from thinc.api import Dropout, Linear, chain, with_array

from .errors import EncoderErrors, error
from .layers import POOLINGS, EncoderSettings, HFEncoder
from .types import PerTokenModelT


@registry.architectures("spacy-tokclf.HFEncoder.v1")
def build_hf_encoder(
    name: str,
    pooling: str = "first",
    window: int = 256,
    stride: int = 192,
    batch_pieces: int = 4096,
) -> PerTokenModelT:
    """HFEncoder.v2 without sentence context: docs are read whole, in
    windows, whatever their sentence boundaries."""
    return build_hf_encoder_v2(
        name=name,
        pooling=pooling,
        window=window,
        stride=stride,
        batch_pieces=batch_pieces,
        context=None,
    )


@registry.architectures("spacy-tokclf.HFEncoder.v2")
def build_hf_encoder_v2(
    name: str,
    pooling: str = "first",
    window: int = 256,
    stride: int = 192,
    batch_pieces: int = 4096,
    context: Optional[int] = None,
) -> PerTokenModelT:
    """A Hugging Face encoder that gives one vector per spaCy token. Nothing is
    loaded until the model is initialized.

    name (str): Hugging Face model name or local directory.
    pooling (str): how a token's word pieces become one vector: "first" or "mean".
    window (int): word pieces per encoder window, at most (special pieces not
        counted). A longer doc is read in the fewest windows that keep the
        overlap below, all of one length.
    stride (int): pieces between the starts of neighbouring windows of a long
        doc, at most: neighbours overlap by at least window - stride pieces.
    batch_pieces (int): padded word pieces per encoder call, at most.
    context (Optional[int]): for docs with sentence boundaries (from the data,
        a sentencizer, senter or parser), read each sentence with up to this
        many pieces of its neighbours on each side (0: each sentence alone);
        the same in training and prediction. None: ignore sentence boundaries.
    RETURNS (Model[List[Doc], List[Floats2d]]): the encoder.
    """
    if not name:
        raise ValueError(error(EncoderErrors.NO_ENCODER_NAME))
    if pooling not in POOLINGS:
        raise ValueError(
            error(
                EncoderErrors.UNKNOWN_POOLING,
                pooling=pooling,
                known=", ".join(repr(p) for p in POOLINGS),
            )
        )
    if not 0 < stride <= window:
        raise ValueError(error(EncoderErrors.INVALID_STRIDE, stride=stride, window=window))
    if batch_pieces < 1:
        raise ValueError(error(EncoderErrors.INVALID_BATCH_PIECES))
    if context is not None and not 0 <= context < window:
        raise ValueError(
            error(EncoderErrors.INVALID_CONTEXT, context=context, max_context=window - 1)
        )
    return HFEncoder(EncoderSettings(name, pooling, window, stride, batch_pieces, context))


@registry.architectures("spacy-tokclf.TokenClassifier.v1")
def build_token_classifier(
    tok2vec: PerTokenModelT, nO: Optional[int] = None, dropout: float = 0.1
) -> PerTokenModelT:
    """Per-token label scores: an encoder, dropout and one linear layer whose
    outputs are the labels of all tasks side by side (one head per task, in
    one matrix product). The component sets nO from its labels.

    tok2vec (Model[List[Doc], List[Floats2d]]): the encoder, embedded or a listener.
    nO (Optional[int]): number of output labels, inferred when None.
    dropout (float): dropout on the token vectors before the head.
    RETURNS (Model[List[Doc], List[Floats2d]]): scores of shape [len(doc), nO].
    """
    output_layer = Linear(nO=nO)
    model: PerTokenModelT = chain(tok2vec, with_array(chain(Dropout(dropout), output_layer)))
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("output_layer", output_layer)
    return model
