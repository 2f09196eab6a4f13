"""The encoder's torch state for thinc, and how it is loaded.

`HFEncoderShim` holds the `PieceEncoder` and the tokenizer; its bytes hold
the transformer config, weights and tokenizer files, so a saved pipeline is
rebuilt without the original model name or the network. `load_encoder` and
`load_fast_tokenizer` read a Hugging Face model by name or directory; the
position limits say how many pieces it reads in one window.
"""
import os
import tempfile
from contextlib import contextmanager
from io import BytesIO
from typing import Any, Dict, Iterator, Optional, Tuple

import srsly
import torch
from spacy.util import make_tempdir
from thinc.api import ArgsKwargs, PyTorchShim, get_torch_default_device, xp2torch

from ..errors import PACKAGE, EncoderErrors, error
from .int8 import INT8_DYNAMIC, quantization_of, quantize_linear_layers
from .piece_encoder import PieceEncoder
from .pieces import SpecialPieces, prepare_tokenizer


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

    @contextmanager
    def use_params(self, params: Dict[Any, Any]) -> Iterator[None]:
        """Use these weights (the optimizer's averages) inside the block.

        thinc's `PyTorchShim.finish_update` gives the optimizer each weight
        under the key `(shim id, parameter name)`, so `use_averages = true`
        keeps the averages under those keys; but `PyTorchShim.use_params` only
        looks for `"pytorch_<id>_<name>"` strings, so the encoder kept its last
        weights where spaCy evaluates and saves with the averages (and only the
        head was averaged). Both key forms are read here.
        """
        prefix = f"pytorch_{self.id}_"
        weights = {}
        for key, value in (params or {}).items():
            if isinstance(key, tuple) and len(key) == 2 and key[0] == self.id:
                weights[key[1]] = value
            elif isinstance(key, str) and key.startswith(prefix):
                weights[key[len(prefix):]] = value
        if self._model is None or not weights:
            yield
            return
        own = dict(self._model.named_parameters())
        backup = {name: own[name].detach().clone() for name in weights if name in own}
        with torch.no_grad():
            for name in backup:
                own[name].copy_(xp2torch(weights[name], device=own[name].device))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in backup.items():
                    own[name].copy_(value)

    def set_encoder(self, model: PieceEncoder, tokenizer: Any) -> None:
        """Use this encoder and (a prepared copy of) this tokenizer. The
        encoder is left in eval mode (a module built from a config starts in
        train mode): a loaded or initialized pipeline predicts without dropout
        from its first call, whichever thread makes it. `begin_update` puts it
        in train mode for training."""
        device = get_torch_default_device()
        if device.type != "cpu" and quantization_of(model.transformer) is not None:
            raise ValueError(error(EncoderErrors.INT8_NOT_ON_GPU, device=device))
        self.tokenizer, self.special = prepare_tokenizer(tokenizer)
        self._model = model.to(device).eval()
        self.window_limit = max_window(model.transformer, self.tokenizer, self.special)

    def to_bytes(self) -> bytes:
        if self._model is None:
            return srsly.msgpack_dumps({"config": None, "tokenizer": {}, "state": b""})
        tokenizer_files = {}
        with make_tempdir() as tmp:
            self.tokenizer.save_pretrained(str(tmp))
            # Plain file names only, as loading requires: transformers writes
            # subdirectories only for chat templates, which no token
            # classifier applies.
            for path in sorted(tmp.iterdir()):
                if path.is_file():
                    tokenizer_files[path.name] = path.read_bytes()
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
        from transformers import AutoConfig, AutoModel

        msg = srsly.msgpack_loads(bytes_data)
        if not msg.get("config"):
            return self
        # Each part is checked on its own, so that damage is reported by name and
        # not as whatever transformers trips over (a garbled tokenizer.json made
        # it ask for protobuf). The file that holds them is named by the caller.
        with make_tempdir() as tmp:
            with _reading("transformer config (config.json)"):
                srsly.write_json(tmp / "config.json", msg["config"])
                config = AutoConfig.from_pretrained(str(tmp), local_files_only=True)
        with _reading("tokenizer files"):
            tokenizer = read_tokenizer_files(msg.get("tokenizer"))
        transformer = AutoModel.from_config(config)
        if msg.get("quantization") == INT8_DYNAMIC:
            quantize_linear_layers(transformer)
        with _reading("weights"):
            state = torch.load(BytesIO(msg["state"]), map_location="cpu", weights_only=True)
            transformer.load_state_dict(state)
        self.set_encoder(PieceEncoder(transformer), tokenizer)
        return self


def read_tokenizer_files(files: Any) -> Any:
    """The fast tokenizer of a saved encoder, from its table of file names ->
    bytes. The table comes from a file and is untrusted: every name must be a
    plain file name (check_file_name) before anything is written, and the
    files are written only into a fresh temporary directory, which is removed
    afterwards."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    if not isinstance(files, dict):
        raise ValueError(EncoderErrors.SAVED_TOKENIZER_TABLE.format(found=type(files).__name__))
    for name, data in files.items():
        check_file_name(name)
        if not isinstance(data, bytes):
            found = f"{name}: {type(data).__name__}"
            raise ValueError(EncoderErrors.SAVED_TOKENIZER_TABLE.format(found=found))
    if "tokenizer.json" not in files:
        raise ValueError(EncoderErrors.SAVED_TOKENIZER_JSON_MISSING)
    Tokenizer.from_str(files["tokenizer.json"].decode("utf8"))
    with tempfile.TemporaryDirectory(prefix="tokclf-tokenizer-") as tmp:
        for name, data in files.items():
            # "xb": a fresh file, never one that is there already.
            with open(os.path.join(tmp, name), "xb") as f:
                f.write(data)
        return AutoTokenizer.from_pretrained(tmp, use_fast=True, local_files_only=True)


# Characters that make a name more than one file name: separators (POSIX and
# Windows), a Windows drive or stream (":"), and NUL.
_NOT_IN_FILE_NAMES = frozenset("/\\:\0")


def check_file_name(name: Any) -> None:
    """Raise unless `name` is a plain file name: a non-empty string without a
    separator, ":" or NUL that is not "." or "..", so that joined to a
    directory it names a file directly inside it."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or any(char in _NOT_IN_FILE_NAMES for char in name)
        or os.path.basename(name) != name
    ):
        raise ValueError(EncoderErrors.SAVED_TOKENIZER_FILE_NAME.format(file=name))


@contextmanager
def _reading(part: str) -> Iterator[None]:
    """Name the part of a saved encoder that cannot be read."""
    try:
        yield
    except Exception as err:
        raise ValueError(
            error(
                EncoderErrors.SAVED_PART_UNREADABLE,
                part=part,
                type=type(err).__name__,
                error=err,
            )
        ) from err


class SlowTokenizerError(ValueError):
    """Only a slow (Python) tokenizer is available: word pieces cannot be
    mapped to spaCy tokens."""


def load_fast_tokenizer(
    name_or_dir: str,
    *,
    local_files_only: bool = False,
    setting: Optional[str] = None,
    component: str = PACKAGE,
) -> Any:
    """Load the fast tokenizer of a Hugging Face model, set up as the
    component reads words with it.

    name_or_dir (str): a Hugging Face model name or a local directory.
    local_files_only (bool): never look for the files on the network.
    setting (Optional[str]): the setting that named the model (e.g.
        "model.tok2vec.name"), named in the error.
    component (str): the component's name for the error prefix, when known.
    RETURNS (PreTrainedTokenizerFast): the tokenizer.
    RAISES SlowTokenizerError (a ValueError): only a slow tokenizer exists.
        transformers' own errors (OSError, ValueError) for a model it cannot
        find or read pass through.
    """
    from transformers import AutoTokenizer

    # add_prefix_space: byte-level BPE tokenizers (RoBERTa, GPT-2) need it to
    # read pre-split words as they read running text; others ignore it.
    tokenizer = AutoTokenizer.from_pretrained(
        name_or_dir, use_fast=True, add_prefix_space=True, local_files_only=local_files_only
    )
    if not getattr(tokenizer, "is_fast", False):
        named_by = f" (`{setting}`)" if setting else ""
        raise SlowTokenizerError(
            error(
                EncoderErrors.SLOW_TOKENIZER,
                component,
                model=name_or_dir,
                named_by=named_by,
                kind=type(tokenizer).__name__,
            )
        )
    return tokenizer


def load_encoder(name: str) -> Tuple[PieceEncoder, Any]:
    """Load a transformer and its fast tokenizer from a name or a directory.

    name (str): a Hugging Face model name or a local directory
        (`model.tok2vec.name`).
    RETURNS (Tuple[PieceEncoder, PreTrainedTokenizerFast]): the encoder and tokenizer.
    """
    from transformers import AutoModel

    try:
        tokenizer = load_fast_tokenizer(name, setting="model.tok2vec.name")
        transformer = AutoModel.from_pretrained(name)
    except SlowTokenizerError:
        raise
    except (OSError, ValueError) as err:
        raise OSError(error(EncoderErrors.LOAD_FAILED, model=name, error=err)) from err
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


