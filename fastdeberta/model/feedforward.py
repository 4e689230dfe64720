"""The feed-forward block's activation recomputed in backward (training only).

The reference path, ``output.dense(act(intermediate.dense(x)))``, keeps two (B, L, intermediate) tensors
for backward: the pre-activation (for the activation's derivative) and the activation output (for the
output projection's weight gradient). :func:`act_linear` keeps only the pre-activation and recomputes
``act(pre)`` in backward: at DeBERTa-v3-base's 8 x 128 in fp32 that is 12 MiB less per layer.

Forward and gradients are the reference's operations on the same inputs (the same ``F.linear``, the
two matrix products and bias sum autograd's linear backward uses, and aten's own activation backward),
so they agree with the plain modules to the last bit on the CPU, also under bf16 autocast, whose casts
are reproduced outside the function. Only the activations listed in ``RECOMPUTABLE`` take this path;
the encoder falls back to the plain modules for the others and outside training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ACTIVATIONS

Tensor = torch.Tensor


def _gelu_erf_backward(grad: Tensor, pre: Tensor) -> Tensor:
    return torch.ops.aten.gelu_backward(grad, pre, approximate="none")


def _gelu_tanh_backward(grad: Tensor, pre: Tensor) -> Tensor:
    return torch.ops.aten.gelu_backward(grad, pre, approximate="tanh")


def _silu_backward(grad: Tensor, pre: Tensor) -> Tensor:
    return torch.ops.aten.silu_backward(grad, pre)


# activation name (config.hidden_act) -> its derivative applied to a gradient: (grad, pre) -> grad_pre.
# Each entry is the backward aten runs for the function ACTIVATIONS maps the name to. The others
# (relu keeps only its output anyway; quick_gelu and gelu_fast are composites) use the plain modules.
RECOMPUTABLE: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "gelu": _gelu_erf_backward,
    "gelu_python": _gelu_erf_backward,
    "gelu_new": _gelu_tanh_backward,
    "gelu_pytorch_tanh": _gelu_tanh_backward,
    "silu": _silu_backward,
    "swish": _silu_backward,
}


class _ActLinear(torch.autograd.Function):
    """linear(act(pre), weight, bias), saving pre and weight; act(pre) is recomputed in backward."""

    @staticmethod
    def forward(ctx, pre: Tensor, weight: Tensor, bias: Tensor | None, name: str) -> Tensor:
        ctx.name = name
        ctx.save_for_backward(pre, weight)
        hidden = ACTIVATIONS[name](pre).to(weight.dtype)         # (..., I)
        return F.linear(hidden, weight, bias)                    # (..., O)

    @staticmethod
    def backward(ctx, grad: Tensor):
        # in the saved tensors' dtypes, as the reference's backward outside autocast
        with torch.autocast(grad.device.type, enabled=False):
            return _ActLinear._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad: Tensor):
        pre, weight = ctx.saved_tensors                           # (..., I), (O, I)
        flat = grad.reshape(-1, grad.shape[-1])                   # (N, O)
        grad_pre = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            hidden = ACTIVATIONS[ctx.name](pre).to(weight.dtype).reshape(-1, pre.shape[-1])   # (N, I)
            grad_weight = flat.t().mm(hidden)                     # (O, I)
            del hidden                                            # freed before the input gradient
        if ctx.needs_input_grad[2]:
            grad_bias = flat.sum(0)                               # (O,)
        if ctx.needs_input_grad[0]:
            grad_hidden = flat.mm(weight).view(pre.shape).to(pre.dtype)   # (..., I)
            grad_pre = RECOMPUTABLE[ctx.name](grad_hidden, pre)
        return grad_pre, grad_weight, grad_bias, None


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype active for ``device_type``, or None outside autocast (torch >= 2.2)."""
    if hasattr(torch, "get_autocast_dtype"):                      # torch >= 2.4
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def act_linear(pre: Tensor, linear: nn.Linear, name: str) -> Tensor:
    """``linear(ACTIVATIONS[name](pre))`` keeping only ``pre`` (not the activation) for backward.

    pre: (..., I) the intermediate dense layer's output; returns (..., O). ``name`` must be in
    RECOMPUTABLE. Under autocast the weight and bias are cast as autocast casts them for ``F.linear``
    (differentiably, so their gradients come back in fp32, as on the reference path)."""
    if name not in RECOMPUTABLE:
        raise ValueError(f"activation {name!r} has no recomputing backward; supported: {sorted(RECOMPUTABLE)}. "
                         "Use the plain modules for it.")
    weight, bias = linear.weight, linear.bias
    dtype = _autocast_dtype(pre.device.type)
    if dtype is not None:
        weight, bias = _autocast_cast(weight, dtype), _autocast_cast(bias, dtype)
    return _ActLinear.apply(pre, weight, bias, name)


def _autocast_cast(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    # autocast casts floating tensors other than float64 to its dtype for the lower-precision ops
    if t is None or not t.is_floating_point() or t.dtype in (dtype, torch.float64):
        return t
    return t.to(dtype)
