"""The training optimizer: thinc's Adam with the learning rate scaled per part
of the token_classifier, `spacy-tokclf.Adam.v1`.

thinc calls its optimizer once per parameter, with the key (node or shim id,
parameter name) and no notion of groups. `ScaledAdam` learns the groups from
the component: `TokenClassifier.finish_update` registers its model (once)
before each step, so the optimizer knows which keys are the encoder's (an
`HFEncoderShim`, by layer) and which are the head's (the component's thinc
parameters). Every other key (another component's, a spacy-transformers
transformer's) keeps the plain learning rate.

- `head_lr_scale`: the heads' learning rate over the encoder's.
- `layer_decay`: layer-wise decay (as in ELECTRA and BEiT fine-tuning): the top
  transformer layer gets the full rate, each layer below `layer_decay` times
  the one above it, the embeddings one step less than the lowest layer.

With both at 1.0 it is exactly `Adam.v1`.
"""
import re
from typing import Dict, Iterable, Optional, Set, Tuple

from spacy.util import registry
from thinc.api import Model, Optimizer
from thinc.types import FloatsXd
from thinc.optimizers import ADAM_DEFAULTS, FloatOrSeq

from .errors import OptimizerErrors, error
from .layers.hf_shim import HFEncoderShim

LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def encoder_lr_scale(name: str, n_layers: int, layer_decay: float) -> float:
    """The learning-rate scale of one encoder parameter (a torch parameter
    name such as "transformer.encoder.layer.3.output.dense.weight") when the
    top of `n_layers` layers has scale 1."""
    if layer_decay == 1.0:
        return 1.0
    match = LAYER_INDEX.search(name)
    if match is not None:
        return float(layer_decay ** (n_layers - 1 - int(match.group(1))))
    if "embeddings" in name:
        return float(layer_decay**n_layers)
    return 1.0  # above the layers (a pooler, a final norm)


def count_layers(names: Iterable[str]) -> int:
    """Number of transformer layers, from the parameter names."""
    indices = [int(m.group(1)) for m in map(LAYER_INDEX.search, names) if m is not None]
    return 1 + max(indices) if indices else 0


class ScaledAdam(Optimizer):
    """thinc's Optimizer (Adam) with the learning rate scaled by group. See
    the module docstring."""

    __slots__ = ["head_lr_scale", "layer_decay", "_encoders", "_heads", "_registered"]

    def __init__(
        self, learn_rate, *, head_lr_scale: float = 1.0, layer_decay: float = 1.0, **kwargs
    ):
        super().__init__(learn_rate, **kwargs)
        if not head_lr_scale > 0:
            raise ValueError(
                error(OptimizerErrors.INVALID_SCALE, setting="head_lr_scale", value=head_lr_scale,
                      allowed="a number > 0", example=10.0)
            )
        if not 0 < layer_decay <= 1:
            raise ValueError(
                error(OptimizerErrors.INVALID_SCALE, setting="layer_decay", value=layer_decay,
                      allowed="a number in (0, 1]", example=0.9)
            )
        self.head_lr_scale = head_lr_scale
        self.layer_decay = layer_decay
        self._encoders: Dict[int, Dict[str, float]] = {}  # shim id -> parameter name -> scale
        self._heads: Set[int] = set()  # node ids of the heads' thinc parameters
        self._registered: Set[int] = set()  # model ids already registered

    def register(self, model: Model) -> None:
        """Learn the groups of a token_classifier's model (once per model)."""
        if model.id in self._registered:
            return
        for node in model.walk():
            for shim in node.shims:
                if isinstance(shim, HFEncoderShim) and shim.piece_encoder is not None:
                    names = [name for name, _ in shim.piece_encoder.named_parameters()]
                    n_layers = count_layers(names)
                    self._encoders[shim.id] = {
                        name: encoder_lr_scale(name, n_layers, self.layer_decay) for name in names
                    }
            if node.param_names:
                self._heads.add(node.id)
        self._registered.add(model.id)

    def lr_scale(self, key: Tuple[int, str]) -> float:
        """The learning-rate scale of the parameter with this key."""
        owner, name = key
        encoder: Optional[Dict[str, float]] = self._encoders.get(owner)
        if encoder is not None:
            return encoder.get(name, 1.0)
        return self.head_lr_scale if owner in self._heads else 1.0

    def __call__(self, key, weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0):
        return super().__call__(key, weights, gradient, lr_scale=lr_scale * self.lr_scale(key))


def register_groups(optimizer: Optimizer, model: Model) -> None:
    """Tell a ScaledAdam the groups of a token_classifier's model; any other
    optimizer needs nothing."""
    if isinstance(optimizer, ScaledAdam):
        optimizer.register(model)


@registry.optimizers("spacy-tokclf.Adam.v1")
def make_scaled_adam(
    learn_rate: FloatOrSeq = ADAM_DEFAULTS["learn_rate"],
    *,
    L2: FloatOrSeq = ADAM_DEFAULTS["L2"],
    beta1: FloatOrSeq = ADAM_DEFAULTS["beta1"],
    beta2: FloatOrSeq = ADAM_DEFAULTS["beta2"],
    eps: FloatOrSeq = ADAM_DEFAULTS["eps"],
    grad_clip: FloatOrSeq = ADAM_DEFAULTS["grad_clip"],
    L2_is_weight_decay: bool = bool(ADAM_DEFAULTS["L2_is_weight_decay"]),
    use_averages: bool = True,
    head_lr_scale: float = 1.0,
    layer_decay: float = 1.0,
) -> ScaledAdam:
    """thinc's `Adam.v1` (same settings, same defaults) with `head_lr_scale`
    and `layer_decay` (see spacy_tokclf.optimizers)."""
    return ScaledAdam(
        learn_rate,
        L2=L2,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        grad_clip=grad_clip,
        L2_is_weight_decay=L2_is_weight_decay,
        use_averages=use_averages,
        use_radam=False,
        head_lr_scale=head_lr_scale,
        layer_decay=layer_decay,
    )
