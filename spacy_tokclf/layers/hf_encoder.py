"""A Hugging Face encoder as a thinc layer: List[Doc] -> one vector per token.

The torch side (`PieceEncoder`) runs the transformer over padded windows and
pools word pieces into spaCy tokens; the thinc side tokenizes, lays out the
windows (see pieces.py) and converts arrays. `HFEncoderShim` makes the
layer self-contained on disk: it saves the transformer config, weights and
tokenizer files, and rebuilds them without the original model name.
"""
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy
import srsly
import torch
from spacy.attrs import SENT_START
from spacy.tokens import Doc
from spacy.util import logger, make_tempdir
from thinc.api import (
    ArgsKwargs,
    Model,
    PyTorchShim,
    get_torch_default_device,
    torch2xp,
    xp2torch,
)
from thinc.types import Floats2d

from .pieces import SpecialPieces, layout_pieces, prepare_tokenizer, tokenize_docs
from .int8 import INT8_DYNAMIC, quantization_of, quantize_linear_layers

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


class PieceEncoder(torch.nn.Module):
    """Transformer over padded windows, pooled to one vector per spaCy token."""

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(
        self,
        batches: List[Tuple[torch.Tensor, torch.Tensor]],
        selections: List[torch.Tensor],
        gather: torch.Tensor,
        token_index: Optional[torch.Tensor],
        n_tokens: int,
    ) -> torch.Tensor:
        """batches: per call, input ids [B, L] and attention mask [B, L].
        selections: per call, the rows of its hidden states [B * L, H] to keep.
        gather [R]: output row -> row of the concatenated selections.
        token_index [R] or None: output token of each row (mean pooling).
        RETURNS [n_tokens, H].
        """
        with torch.inference_mode(not torch.is_grad_enabled()):
            return self._forward(batches, selections, gather, token_index, n_tokens)

    def _forward(self, batches, selections, gather, token_index, n_tokens) -> torch.Tensor:
        hidden_size = self.transformer.config.hidden_size
        # Each call's full hidden states are dropped as soon as its rows are
        # read: holding them all until the end made every call allocate fresh
        # memory, which cost about a tenth of the encoder's time on CPU.
        parts = [
            self.transformer(input_ids=ids, attention_mask=mask)
            .last_hidden_state.reshape(-1, hidden_size)
            .index_select(0, rows)
            for (ids, mask), rows in zip(batches, selections)
        ]
        if not parts:
            return self.transformer.get_input_embeddings().weight.new_zeros((n_tokens, hidden_size))
        rows = (torch.cat(parts) if len(parts) != 1 else parts[0]).index_select(0, gather)
        if token_index is None:
            return rows
        summed = rows.new_zeros((n_tokens, rows.shape[1])).index_add_(0, token_index, rows)
        counts = torch.bincount(token_index, minlength=n_tokens).clamp_(min=1)
        return summed / counts.unsqueeze(1).to(summed.dtype)


class HFEncoderShim(PyTorchShim):
    """PyTorchShim whose bytes hold everything needed to rebuild the encoder:
    the transformer config, its weights and the tokenizer files. Loading a
    saved pipeline never goes back to the model name or the network.
    """

    def __init__(self, model: Optional[PieceEncoder] = None, tokenizer: Any = None):
        super().__init__(model)
        self.tokenizer: Any = None
        self.special: Optional[SpecialPieces] = None
        # Word pieces per window the model reads (special pieces not counted).
        self.window_limit: Optional[int] = None
        self.window_fit_logged = False
        if tokenizer is not None:
            self.tokenizer, self.special = prepare_tokenizer(tokenizer)
            if model is not None:
                self.window_limit = max_window(model.transformer, self.tokenizer, self.special)

    @property
    def loaded(self) -> bool:
        """Whether the encoder has weights (set_encoder or from_bytes ran)."""
        return self._model is not None

    @property
    def piece_encoder(self) -> Optional[PieceEncoder]:
        """The torch module (transformer + pooling); None before it is loaded."""
        return self._model

    @property
    def transformer(self) -> Optional[torch.nn.Module]:
        """The Hugging Face transformer; None before it is loaded."""
        return None if self._model is None else self._model.transformer

    def predict(self, inputs: ArgsKwargs) -> Any:
        """Run the encoder without gradients, in eval mode, thread-safely.

        PyTorchShim.predict sets the module to eval(), runs it and sets it back
        to train(): with several threads predicting on one pipeline (a served
        model), one thread's end of prediction switched dropout on inside
        another thread's forward pass, and the module was left in train mode
        after every prediction. Here the module is put in eval mode and left
        there; `begin_update` (training) puts it back in train mode. Training
        and prediction on one pipeline in different threads at the same time
        remain unsupported, as for any torch module.
        """
        if self._model.training:
            self._model.eval()
        with torch.no_grad():
            with torch.autocast(device_type="cuda", enabled=self._mixed_precision):
                return self._model(*inputs.args, **inputs.kwargs)

    def set_encoder(self, model: PieceEncoder, tokenizer: Any) -> None:
        """Use this encoder and (a prepared copy of) this tokenizer."""
        device = get_torch_default_device()
        if device.type != "cpu" and quantization_of(model.transformer) is not None:
            raise ValueError(
                f"[token_classifier] This encoder is quantized to int8 "
                f"(spacy_tokclf.quantize_encoder), which runs on the CPU only, but "
                f"thinc's device is {device} (spacy.require_gpu() or prefer_gpu() was "
                f"called). Load the int8 pipeline without require_gpu(), or load the "
                f"fp32 pipeline (saved before quantize_encoder) on the GPU."
            )
        self.tokenizer, self.special = prepare_tokenizer(tokenizer)
        self._model = model.to(device)
        self.window_limit = max_window(model.transformer, self.tokenizer, self.special)

    def to_bytes(self) -> bytes:
        if self._model is None:
            return srsly.msgpack_dumps({"config": None, "tokenizer": {}, "state": b""})
        tokenizer_files = {}
        with make_tempdir() as tmp:
            self.tokenizer.save_pretrained(str(tmp))
            for path in tmp.glob("**/*"):
                if path.is_file():
                    tokenizer_files[path.relative_to(tmp).as_posix()] = path.read_bytes()
        state = BytesIO()
        torch.save(self._model.transformer.state_dict(), state)
        msg = {
            "config": self._model.transformer.config.to_dict(),
            "tokenizer": tokenizer_files,
            "state": state.getvalue(),
            # None, or INT8_DYNAMIC: the state holds int8 weights (quantize_encoder).
            "quantization": quantization_of(self._model.transformer),
        }
        return srsly.msgpack_dumps(msg)

    def from_bytes(self, bytes_data: bytes) -> "HFEncoderShim":
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        msg = srsly.msgpack_loads(bytes_data)
        if not msg.get("config"):
            return self
        # Each part is checked on its own, so that damage is reported by name and
        # not as whatever transformers trips over (a garbled tokenizer.json made
        # it ask for protobuf). The file that holds them is named by the caller.
        with make_tempdir() as tmp:
            with _reading("transformer config (config.json)"):
                srsly.write_json(tmp / "config.json", msg["config"])
                config = AutoConfig.from_pretrained(str(tmp))
            with _reading("tokenizer files"):
                files = msg["tokenizer"]
                if "tokenizer.json" not in files:
                    raise ValueError("tokenizer.json is missing")
                Tokenizer.from_str(files["tokenizer.json"].decode("utf8"))
                for name, data in files.items():
                    path = Path(tmp) / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                tokenizer = AutoTokenizer.from_pretrained(str(tmp), use_fast=True)
        transformer = AutoModel.from_config(config)
        if msg.get("quantization") == INT8_DYNAMIC:
            quantize_linear_layers(transformer)
        with _reading("weights"):
            state = torch.load(BytesIO(msg["state"]), map_location="cpu", weights_only=True)
            transformer.load_state_dict(state)
        self.set_encoder(PieceEncoder(transformer), tokenizer)
        return self


@contextmanager
def _reading(part: str) -> Iterator[None]:
    """Name the part of a saved encoder that cannot be read."""
    try:
        yield
    except Exception as err:
        raise ValueError(
            f"[token_classifier] The saved encoder's {part} cannot be read: "
            f"{type(err).__name__}: {err}"
        ) from err


def load_encoder(name: str) -> Tuple[PieceEncoder, Any]:
    """Load a transformer and its fast tokenizer from a name or a directory.

    name (str): a Hugging Face model name or a local directory.
    RETURNS (Tuple[PieceEncoder, PreTrainedTokenizerFast]): the encoder and tokenizer.
    """
    from transformers import AutoModel, AutoTokenizer

    try:
        # add_prefix_space: byte-level BPE tokenizers (RoBERTa, GPT-2) need it to
        # read pre-split words as they read running text; others ignore it.
        tokenizer = AutoTokenizer.from_pretrained(name, use_fast=True, add_prefix_space=True)
        transformer = AutoModel.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise OSError(
            f"[token_classifier] Could not load the encoder '{name}' set in "
            f"`model.tok2vec.name`: {err}\nSet it to a local directory that holds a "
            f"Hugging Face model (config.json, weights, tokenizer files), e.g.\n"
            f'    nlp.add_pipe("token_classifier", config={{"model": {{"tok2vec": '
            f'{{"name": "/path/to/model"}}}}}})\nor, in a config file:\n'
            f"    [components.token_classifier.model.tok2vec]\n    name = \"/path/to/model\""
        ) from err
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"[token_classifier] The tokenizer of '{name}' (`model.tok2vec.name`) is a "
            f"slow (Python) tokenizer ({type(tokenizer).__name__}). token_classifier "
            f"needs a fast tokenizer to map word pieces to spaCy tokens. Save a fast "
            f"tokenizer next to the model (tokenizer.json), e.g.\n"
            f"    AutoTokenizer.from_pretrained(name, use_fast=True).save_pretrained(dir)\n"
            f"or, for a SentencePiece model, install `sentencepiece` so transformers "
            f"can convert it."
        )
    return PieceEncoder(transformer), tokenizer


def position_limit(transformer: torch.nn.Module, tokenizer: Any) -> int:
    """Positions (special pieces included) the model reads in one sequence.

    Read from the model itself, so any model type works: a learned position
    table (`*position_embeddings`, an Embedding) gives its rows, less the rows
    before the first position when the table has a padding index (RoBERTa-like
    models count positions from padding_idx + 1); without a table (relative or
    rotary positions), the config's `max_position_embeddings`. A tokenizer that
    says it reads fewer (`model_max_length`) lowers it; transformers' "no
    limit" value (1e30) and a missing one are ignored.
    """
    limit: Optional[int] = None
    for name, module in transformer.named_modules():
        if name.endswith("position_embeddings") and isinstance(module, torch.nn.Embedding):
            offset = 0 if module.padding_idx is None else module.padding_idx + 1
            limit = module.num_embeddings - offset
            break
    if limit is None:
        limit = getattr(transformer.config, "max_position_embeddings", None)
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < (limit or 10**6):
        limit = model_max
    return limit or 512


def max_window(transformer: torch.nn.Module, tokenizer: Any, special: SpecialPieces) -> int:
    """The longest window of pieces (without special pieces) the model takes."""
    return position_limit(transformer, tokenizer) - len(special.prefix) - len(special.suffix)


def fit_window(window: int, stride: int, limit: int) -> Tuple[int, int]:
    """(window, stride) to use: the settings when the window fits the model;
    else the longest window that fits, with the stride scaled down alike, so
    neighbouring windows still overlap (by at least one piece)."""
    stride = min(stride, window)
    if window <= limit:
        return window, stride
    fitted_stride = max(1, min(limit - 1, (stride * limit) // window)) if limit > 1 else 1
    return limit, fitted_stride


def hf_encoder_init(model: Model, X: Optional[List[Doc]] = None, Y: Any = None) -> None:
    shim: HFEncoderShim = model.shims[0]
    if not shim.loaded:
        encoder, tokenizer = load_encoder(model.attrs["settings"].name)
        shim.set_encoder(encoder, tokenizer)
    check_window(model)
    if X:
        warn_if_mostly_unknown(shim, X, model.attrs["settings"].name)
    model.set_dim("nO", shim.transformer.config.hidden_size)


# A share of unknown pieces above which the tokenizer cannot be the one the
# encoder was trained with (or its vocabulary did not load).
UNKNOWN_SHARE_WARNING = 0.5


def warn_if_mostly_unknown(shim: "HFEncoderShim", docs: List[Doc], name: str) -> None:
    """Warn when most word pieces of the sample docs are the unknown piece:
    the model then sees almost no text, trains on nothing and says nothing.
    (A tokenizer built with a keyword that transformers 5 renamed, e.g.
    `BertTokenizerFast(vocab_file=...)`, loads a vocabulary of 5 pieces.)
    """
    unk_id = shim.tokenizer.unk_token_id
    if unk_id is None:
        return
    pieces = tokenize_docs(shim.tokenizer, docs, shim.special.unk_id)
    ids = [doc_ids for doc_ids, _ in pieces if len(doc_ids)]
    n_pieces = sum(len(doc_ids) for doc_ids in ids)
    if n_pieces < 20:
        return
    share = sum(int((doc_ids == unk_id).sum()) for doc_ids in ids) / n_pieces
    if share > UNKNOWN_SHARE_WARNING:
        warnings.warn(
            f"[token_classifier] {share:.0%} of the word pieces of the initialization "
            f"sample are the tokenizer's unknown piece: the encoder ('{name}', "
            f"`model.tok2vec.name`) will see almost none of the text. Check that its "
            f"tokenizer files hold the vocabulary the model was trained with "
            f"(len(tokenizer) is {len(shim.tokenizer)})."
        )


def check_window(model: Model) -> Tuple[int, int]:
    """The (window, stride) the loaded encoder can read: the settings, or the
    longest window that fits when `model.tok2vec.window` is longer (logged)."""
    shim: HFEncoderShim = model.shims[0]
    settings: EncoderSettings = model.attrs["settings"]
    limit = shim.window_limit
    if limit is None or limit < 1:
        raise ValueError(
            f"[token_classifier] The encoder ('{settings.name}') reads no word pieces "
            f"besides its special pieces (window limit {limit}): check its "
            f"`max_position_embeddings` and its tokenizer's `model_max_length`."
        )
    window, stride = fit_window(settings.window, settings.stride, limit)
    if window != settings.window and not shim.window_fit_logged:
        shim.window_fit_logged = True
        logger.warning(
            f"[token_classifier] `model.tok2vec.window` is {settings.window} word "
            f"pieces, but the encoder ('{settings.name}') reads at most {limit} at a "
            f"time (besides its special pieces): using window {window} and stride "
            f"{stride}. Set `window = {window}` and `stride = {stride}` (or less) "
            f"to choose them yourself; long documents are still read whole."
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
    """List[Doc] -> PieceEncoder arguments; docs take no gradient."""
    shim: HFEncoderShim = model.shims[0]
    if not shim.loaded:
        raise ValueError(
            "[token_classifier] The encoder has no weights yet: call "
            "`nlp.initialize()` (or train with `spacy train`) before using the "
            "component, or load a trained pipeline with `spacy.load()`."
        )
    settings: EncoderSettings = model.attrs["settings"]
    window, stride = check_window(model)
    pieces = tokenize_docs(shim.tokenizer, docs, shim.special.unk_id)
    layout = layout_pieces(
        pieces,
        shim.special,
        window=window,
        stride=stride,
        batch_pieces=settings.batch_pieces,
        pooling=settings.pooling,
        sentence_starts=(
            None if settings.context is None else sentence_piece_starts(docs, pieces)
        ),
        context=settings.context,
    )
    as_tensor = lambda a: torch.from_numpy(a).to(shim.device)
    args = (
        [(as_tensor(ids), as_tensor(mask)) for ids, mask in layout.batches],
        [as_tensor(rows) for rows in layout.selections],
        as_tensor(layout.gather),
        None if layout.token_index is None else as_tensor(layout.token_index),
        layout.n_tokens,
    )
    return ArgsKwargs(args=args, kwargs={}), lambda d_inputs: []


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
