"""Dynamic int8 linear layers for CPU inference.

`Int8DynamicLinear` replaces a `torch.nn.Linear`: its weights are stored as
int8 (symmetric, one scale per output channel); at run time each input row
(one word piece) is quantized to int8 with its own scale, the product is
computed in int8 with int32 accumulation (`torch._int_mm`, oneDNN with
AVX-512 VNNI / AMX on x86 CPUs) and scaled back to float.

Why not `torch.ao.quantization.quantize_dynamic`: it is deprecated (removal
announced in torch 2.13). Why not torchao's `Int8DynamicActivationInt8WeightConfig`:
without torch.compile its tensor subclass runs quantization and scaling as
many small eager ops and gains little on CPU. Per-row activation scales also
keep the encoder's output closer to fp32 than a per-tensor scale does.
"""
from typing import Optional

import torch

from ..errors import EncoderErrors, error

# Shared by the encoder's serialization: the format of quantized weights.
INT8_DYNAMIC = "int8-dynamic"
_EPS = 1e-12


class Int8DynamicLinear(torch.nn.Module):
    """y = x @ W.T + b with W in int8 and x quantized per row at run time.

    Buffers: weight_int8 [out, in] int8, weight_scale [out] float32, bias [out]
    or None. Inference only: it has no trainable parameters.
    """

    weight_int8: torch.Tensor
    weight_scale: torch.Tensor
    bias: Optional[torch.Tensor]

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        weight = torch.zeros((out_features, in_features), dtype=torch.int8)
        self.register_buffer("weight_int8", weight)
        self.register_buffer("weight_scale", torch.ones((out_features,), dtype=torch.float32))
        self.register_buffer("bias", torch.zeros((out_features,)) if bias else None)

    @classmethod
    def from_float(cls, linear: torch.nn.Linear) -> "Int8DynamicLinear":
        """Quantize a float Linear layer's weights (symmetric, per output channel)."""
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=_EPS) / 127.0
        module.weight_int8 = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        module.weight_scale = scale
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [*, in] -> [*, out], in x's float dtype."""
        if torch.is_grad_enabled() and x.requires_grad:
            raise ValueError(error(EncoderErrors.INT8_INFERENCE_ONLY))
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        # Symmetric scale per row: max |x| maps to 127. amax and amin are two
        # cheap reductions; abs().amax() would first write a copy of x.
        scale = torch.maximum(rows.amax(dim=1, keepdim=True), rows.amin(dim=1, keepdim=True).neg_())
        scale = scale.clamp_(min=_EPS).div_(127.0)
        x_int8 = torch.div(rows, scale).round_().to(torch.int8)
        out = torch._int_mm(x_int8, self.weight_int8.t()).to(x.dtype)
        out.mul_(scale)
        if self.bias is None:
            out.mul_(self.weight_scale)
        else:
            # out * weight_scale + bias in one pass over the output.
            torch.addcmul(self.bias, out, self.weight_scale, out=out)
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


def quantize_linear_layers(module: torch.nn.Module) -> int:
    """Replace every torch.nn.Linear in module (exactly that class, so that
    subclasses that other code reads weights from are left alone) by an
    Int8DynamicLinear, in place.

    RETURNS (int): the number of layers replaced.
    """
    check_int8_support()
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, Int8DynamicLinear.from_float(child))
                n += 1
    return n


def check_int8_support() -> None:
    """Raise ImportError unless this torch multiplies int8 matrices on CPU."""
    try:
        a = torch.ones((1, 8), dtype=torch.int8)
        torch._int_mm(a, a.t())
    except (AttributeError, RuntimeError, NotImplementedError) as err:
        raise ImportError(
            error(EncoderErrors.INT8_UNSUPPORTED, version=torch.__version__, error=err)
        ) from err


def quantization_of(module: torch.nn.Module) -> Optional[str]:
    """INT8_DYNAMIC if module holds Int8DynamicLinear layers, else None."""
    if any(isinstance(m, Int8DynamicLinear) for m in module.modules()):
        return INT8_DYNAMIC
    return None
