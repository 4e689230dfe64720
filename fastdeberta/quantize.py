"""Reduced-precision inference on CPU: dynamic int8 quantisation of the linear layers, and bf16.

Softmax and LayerNorm statistics stay in fp32 in either mode (see model/layers.py, attention.py).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def quantize_int8(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights int8 per tensor, activations
    quantised on the fly). CPU inference only; the word embeddings and the MLM decoder stay fp32."""
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao.quantization prints deprecation notices
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(target, {nn.Linear}, dtype=torch.qint8, inplace=True)


def to_bfloat16(model: nn.Module) -> nn.Module:
    """Cast parameters to bf16 in place (fast only where the CPU has native bf16 matmul)."""
    return model.to(torch.bfloat16)
