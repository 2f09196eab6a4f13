"""Growing a trained head: more outputs for a Linear layer, every trained
weight kept (labels.grown_columns says which output goes where)."""
from typing import Optional, Sequence

from thinc.api import Model


def grow_linear(
    model: Model,
    layer: Model,
    sources: Sequence[Optional[int]],
    references: Sequence[int],
    gap: float,
) -> None:
    """Give a trained Linear layer of `model` len(sources) outputs (and the
    layers that end with it, such as `model` itself, the same nO, which
    saving records).

    sources: per new output, the old output it keeps (its row of W and b), or
        None for an added output.
    references: per added output (in order), the old output it starts from.
    gap: an added output's bias is its reference's minus `gap`, with the
        same weights: its score is the reference's minus `gap` on every
        token, so its exp() is far under the reference's and the softmax
        over the old outputs is unchanged (see decoding.log_softmax); yet
        it is within reach of training, as a -1e4 bias would not be.

    W [nO, nI] -> [len(sources), nI]; b [nO] -> [len(sources)].
    """
    ops = layer.ops
    W = ops.to_numpy(layer.get_param("W"))
    b = ops.to_numpy(layer.get_param("b"))
    new_W = W[[0] * len(sources)].copy()
    new_b = b[[0] * len(sources)].copy()
    added = iter(references)
    for row, source in enumerate(sources):
        if source is None:
            reference = next(added)
            new_W[row] = W[reference]
            new_b[row] = b[reference] - gap
        else:
            new_W[row] = W[source]
            new_b[row] = b[source]
    # thinc refuses a new nO while the layer holds weights: drop, resize, set.
    for name in ("W", "b"):
        layer.set_param(name, None)
    layer.set_dim("nO", len(sources), force=True)
    layer.set_param("W", ops.asarray2f(new_W))
    layer.set_param("b", ops.asarray1f(new_b))
    for node in model.walk():
        # Layers without weights of their own (chain, with_array) whose
        # output is the layer's.
        if node is not layer and node.has_dim("nO") and node.get_dim("nO") == len(W):
            if layer in node.walk() and not any(node.has_param(p) for p in node.param_names):
                node.set_dim("nO", len(sources), force=True)
    for name, value in (("W", new_W), ("b", new_b)):
        if layer.has_grad(name):
            # A gradient of the old shape would not add to the new weights.
            layer.set_grad(name, ops.alloc(value.shape, dtype="float32"))
