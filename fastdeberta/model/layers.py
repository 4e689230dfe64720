"""Small building blocks shared by the encoder and the heads."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

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


# Dropout masks on CPU. torch's dropout draws one Mersenne-Twister number per element (bernoulli_:
# 6-9 ms per million elements on one Zen 5 core, 16% of the shipped model's pretraining step).
# ``dropout_keep_mask`` draws one 64-bit number per four elements from the same global generator and
# keeps an element when its 16-bit lane clears a threshold (1 ms per million): the drop rate is rounded
# to a multiple of 1/65536 (0.1 -> 0.100006) and the kept values are scaled by 1 / (1 - that rate), so
# the expectation stays exact. ``exact_dropout()`` switches back to torch's draws, bitwise nn.Dropout.
_EXACT_DROPOUT = False
_LANES = 65536


@contextmanager
def exact_dropout(enabled: bool = True) -> Iterator[None]:
    """Within the block, the model's dropout on CPU draws exactly as ``nn.Dropout`` (bitwise equal
    outputs for the same seed; slower). Outside it, masks come from the faster 16-bit-lane draw."""
    global _EXACT_DROPOUT
    before, _EXACT_DROPOUT = _EXACT_DROPOUT, enabled
    try:
        yield
    finally:
        _EXACT_DROPOUT = before


def dropout_keep_mask(shape: torch.Size | tuple[int, ...], p: float,
                      device: torch.device) -> tuple[torch.Tensor, float]:
    """(bool mask, True with probability ``keep``; ``keep``) for dropout rate ``p`` in [0, 1)."""
    if _EXACT_DROPOUT or device.type != "cpu":
        return torch.empty(shape, dtype=torch.bool, device=device).bernoulli_(1.0 - p), 1.0 - p
    numel = math.prod(shape)
    dropped = round(p * _LANES)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64).random_(-(2**63), None)   # full 64-bit range
    lanes = words.view(torch.int16)[:numel].view(shape)                # uniform on [-32768, 32767]
    return lanes.ge(dropped - _LANES // 2), 1.0 - dropped / _LANES


def keep_scale(keep: float, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """1 / keep as a 0-d tensor of ``dtype`` (torch's rounding: noise.div_(1 - p)); 0 when nothing is kept."""
    one = torch.ones((), dtype=dtype, device=device)
    return one.div_(keep) if keep > 0 else one.zero_()


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
    """Dropout that keeps a bool mask (1 byte per element) for the backward pass instead of a mask in
    the input's dtype, with masks from ``dropout_keep_mask`` on CPU (see above). Under
    ``exact_dropout()`` its output and gradient are bitwise ``nn.Dropout``'s (same ``bernoulli_``
    draws, kept values scaled by the same rounded 1 / (1 - p)). Off CPU it is ``nn.Dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace or self.p >= 1.0:
            return super().forward(x)
        if _EXACT_DROPOUT and x.element_size() < 4:
            # exact mode, 2-byte inputs: torch's own kernel (the bool mask would save 1 byte per element
            # and cost ~1 ms per million elements in conversions)
            return super().forward(x)
        keep, kept = dropout_keep_mask(x.shape, self.p, x.device)
        return _ScaleKept.apply(x, keep, keep_scale(kept, x.dtype))
