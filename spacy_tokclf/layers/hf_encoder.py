"""A Hugging Face encoder as a thinc layer: List[Doc] -> one vector per token.

`HFEncoder` builds the layer, one fused thinc node as spacy-transformers'
`HFWrapper` is: `Model("hf_encoder", pytorch_forward, attrs, shims=[HFEncoderShim])`.
Its thinc side, here, tokenizes the docs, lays out the windows (pieces.py)
and converts arrays: `convert_inputs` gives the torch side (piece_encoder.py)
one `EncoderInputs`, `convert_outputs` splits its token vectors per doc. The
shim (hf_shim.py) holds the transformer and tokenizer and their bytes.
"""
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

import numpy
import torch
from spacy.attrs import SENT_START
from spacy.tokens import Doc
from spacy.util import logger
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from thinc.types import Floats2d

from ..errors import EncoderErrors, EncoderWarnings, error
from ..types import PerTokenModelT
from .hf_shim import HFEncoderShim, fit_window, load_encoder
from .piece_encoder import EncoderInputs
from .pieces import layout_pieces, tokenize_docs

POOLINGS = ("first", "mean")


@dataclass(frozen=True)
class EncoderSettings:
    """The encoder's config settings. thinc serializes msgpack-able attrs and
    restores them over the config on load; this object is not msgpack-able on
    purpose, so settings given at load time (spacy.load(..., config=...)) win.
    """

    name: str
    pooling: str
    window: int
    stride: int
    batch_pieces: int
    # Pieces of context on each side of a sentence, for docs with sentence
    # boundaries; None: sentence boundaries are not used (HFEncoder.v1).
    context: Optional[int] = None


def HFEncoder(settings: EncoderSettings) -> PerTokenModelT:
    """The encoder layer: one vector per spaCy token, [len(doc), H] per doc.
    Cheap to build: the transformer and tokenizer load at initialization (or
    from a saved pipeline's bytes). The settings are not checked here: the
    registered builders (architectures.py) check them.

    settings (EncoderSettings): the model.tok2vec settings.
    RETURNS (Model[List[Doc], List[Floats2d]]): the encoder.
    """
    return Model(
        "hf_encoder",
        pytorch_forward,
        init=init,
        attrs={
            "settings": settings,
            "convert_inputs": convert_inputs,
            "convert_outputs": convert_outputs,
        },
        shims=[HFEncoderShim()],
        dims={"nO": None},
    )


def shim_of(model: Model) -> HFEncoderShim:
    """The encoder layer's shim."""
    shim = model.shims[0]
    assert isinstance(shim, HFEncoderShim)
    return shim


def init(model: Model, X: Optional[List[Doc]] = None, Y: Any = None) -> None:
    """Load the transformer and tokenizer (unless loaded from bytes), check
    the window against them, check the tokenizer on the sample X, set nO.
    The transformer is left in eval mode, as after loading (hf_shim)."""
    shim = shim_of(model)
    if shim.piece_encoder is None:
        encoder, tokenizer = load_encoder(model.attrs["settings"].name)
        shim.set_encoder(encoder, tokenizer)
        assert shim.piece_encoder is not None
    # Initialized again after training, it may still be in train mode.
    shim.piece_encoder.eval()
    check_window(model)
    if X:
        warn_if_mostly_unknown(shim, X, model.attrs["settings"].name)
    model.set_dim("nO", shim.piece_encoder.transformer.config.hidden_size)


# A share of unknown pieces above which the tokenizer cannot be the one the
# encoder was trained with (or its vocabulary did not load).
UNKNOWN_SHARE_WARNING = 0.5


def warn_if_mostly_unknown(shim: HFEncoderShim, docs: List[Doc], name: str) -> None:
    """Warn when most word pieces of the sample docs are the unknown piece:
    the model then sees almost no text, trains on nothing and says nothing.
    (A tokenizer built with a keyword that transformers 5 renamed, e.g.
    `BertTokenizerFast(vocab_file=...)`, loads a vocabulary of 5 pieces.)
    """
    unk_id = shim.tokenizer.unk_token_id
    if unk_id is None or shim.special is None:
        return
    pieces = tokenize_docs(shim.tokenizer, docs, shim.special.unk_id)
    ids = [doc_ids for doc_ids, _ in pieces if len(doc_ids)]
    n_pieces = sum(len(doc_ids) for doc_ids in ids)
    if n_pieces < 20:
        return
    share = sum(int((doc_ids == unk_id).sum()) for doc_ids in ids) / n_pieces
    if share > UNKNOWN_SHARE_WARNING:
        warnings.warn(
            error(
                EncoderWarnings.MOSTLY_UNKNOWN,
                share=share,
                model=name,
                vocab_size=len(shim.tokenizer),
            )
        )


def check_window(model: Model) -> Tuple[int, int]:
    """The (window, stride) the loaded encoder can read: the settings, or the
    longest window that fits when `model.tok2vec.window` is longer (logged)."""
    shim = shim_of(model)
    settings: EncoderSettings = model.attrs["settings"]
    limit = shim.window_limit
    if limit is None or limit < 1:
        raise ValueError(error(EncoderErrors.NO_WINDOW, model=settings.name, limit=limit))
    window, stride = fit_window(settings.window, settings.stride, limit)
    if window != settings.window and not shim.window_fit_logged:
        shim.window_fit_logged = True
        logger.warning(
            error(
                EncoderWarnings.WINDOW_FITTED,
                window=settings.window,
                model=settings.name,
                limit=limit,
                fitted_window=window,
                fitted_stride=stride,
            )
        )
    return window, stride


def sentence_piece_starts(
    docs: List[Doc], pieces: List[Tuple[numpy.ndarray, numpy.ndarray]]
) -> List[Optional[numpy.ndarray]]:
    """Per doc, the piece offset of each sentence's first piece; None for a
    doc without sentence boundaries (from the data, a sentencizer, senter or
    parser), which is then read as a whole."""
    out: List[Optional[numpy.ndarray]] = []
    for doc, (_, owners) in zip(docs, pieces):
        if len(doc) == 0 or not doc.has_annotation("SENT_START"):
            out.append(None)
            continue
        token_starts = numpy.flatnonzero(doc.to_array(SENT_START) == 1)
        out.append(numpy.searchsorted(owners, token_starts, side="left"))
    return out


def convert_inputs(model: Model, docs: List[Doc], is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    """List[Doc] -> the PieceEncoder's one argument, an EncoderInputs; docs
    take no gradient."""
    shim = shim_of(model)
    special = shim.special
    if not shim.loaded or special is None:
        raise ValueError(error(EncoderErrors.NO_WEIGHTS, before="using the component"))
    settings: EncoderSettings = model.attrs["settings"]
    window, stride = check_window(model)
    pieces = tokenize_docs(shim.tokenizer, docs, special.unk_id)
    layout = layout_pieces(
        pieces,
        special,
        window=window,
        stride=stride,
        batch_pieces=settings.batch_pieces,
        pooling=settings.pooling,
        sentence_starts=(
            None if settings.context is None else sentence_piece_starts(docs, pieces)
        ),
        context=settings.context,
    )
    inputs = EncoderInputs.from_layout(layout, shim.device)
    return ArgsKwargs(args=(inputs,), kwargs={}), lambda d_inputs: []


def convert_outputs(
    model: Model, docs_and_output: Tuple[List[Doc], torch.Tensor], is_train: bool
) -> Tuple[List[Floats2d], Callable]:
    """Token vectors [n_tokens, H] -> one [len(doc), H] array per doc."""
    docs, output = docs_and_output
    xp = model.ops.xp
    if not docs:
        return [], lambda dYs: ArgsKwargs(args=(), kwargs={})
    Y = torch2xp(output)
    # Split points as host ints: a device array of indices costs cupy one
    # device-to-host sync per doc.
    Ys = xp.split(Y, numpy.cumsum([len(doc) for doc in docs[:-1]], dtype="int64").tolist())

    def get_d_output(dYs: List[Floats2d]) -> ArgsKwargs:
        dY = xp2torch(xp.concatenate(dYs), device=output.device)
        return ArgsKwargs(args=(output,), kwargs={"grad_tensors": (dY,)})

    return list(Ys), get_d_output
