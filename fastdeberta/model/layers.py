"""Small building blocks shared by the encoder and the heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_python": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_fast,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; supported: {sorted(ACTIVATIONS)}") from None


class LayerNorm(nn.LayerNorm):
    """LayerNorm whose statistics are always computed in fp32 (safe in bf16/fp16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            w = None if self.weight is None else self.weight.float()
            b = None if self.bias is None else self.bias.float()
            return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)
        return super().forward(x)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT-style initialisation: N(0, std) weights, zero biases, unit LayerNorm, zero padding row."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv1d):
        nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _ScaleKept(torch.autograd.Function):
    """x * noise with noise = keep * scale (torch's dropout noise), saving only the bool mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(keep, scale)
        return x * keep.to(x.dtype).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        keep, scale = ctx.saved_tensors
        return grad * keep.to(grad.dtype).mul_(scale), None, None


class Dropout(nn.Dropout):
    """``nn.Dropout`` that keeps a bool mask (1 byte per element) for the backward pass instead of a
    mask in the input's dtype (4 bytes in fp32). On CPU the output and gradient are bitwise torch's:
    the mask comes from the same ``bernoulli_`` draws and the kept values are scaled by the same
    rounded 1 / (1 - p). Elsewhere (CUDA's fused kernel draws differently) it is ``nn.Dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Only for 4-byte inputs: for bf16 the mask shrinks from 2 bytes to 1, which does not pay for
        # the ~1 ms per million elements the bool -> float conversions add on CPU.
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace or x.element_size() < 4:
            return super().forward(x)
        keep = torch.empty(x.shape, dtype=torch.bool).bernoulli_(1.0 - self.p)
        scale = torch.ones((), dtype=x.dtype).div_(1.0 - self.p)       # torch's noise.div_(1 - p)
        return _ScaleKept.apply(x, keep, scale)
