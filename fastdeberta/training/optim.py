"""Optimizer parameter groups and learning-rate schedules for the training loop.

* Weight decay is not applied to biases, LayerNorm weights or any other 1-d parameter.
* Layer-wise learning-rate decay (as in the DeBERTa / ELECTRA fine-tuning recipes): with decay ``d``
  and ``N`` encoder layers, the task head gets ``lr``, layer ``i`` (0-based) ``lr * d**(N - i)`` and
  the embeddings ``lr * d**(N + 1)``; the relative-position table, its LayerNorm and v2's convolution
  are used by every layer and sit with the first layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["SCHEDULES", "lr_schedule", "param_groups"]

SCHEDULES = ("linear", "cosine", "constant")
_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")
_SHARED_BY_LAYERS = re.compile(r"(?:^|\.)encoder\.(rel_embeddings|LayerNorm|conv)\.")
_EMBEDDINGS = re.compile(r"(?:^|\.)embeddings\.")


def _no_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or "LayerNorm" in name or name.endswith(".bias")


def _depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for encoder layer i (shared position parts: 1), num_layers + 1 for heads."""
    layer = _LAYER.search(name)
    if layer:
        return int(layer.group(1)) + 1
    if _SHARED_BY_LAYERS.search(name):
        return 1
    if _EMBEDDINGS.search(name):
        return 0
    return num_layers + 1


def param_groups(model: nn.Module, *, lr: float, weight_decay: float,
                 layerwise_lr_decay: float = 1.0) -> list[dict[str, Any]]:
    """AdamW parameter groups: trainable parameters only (each once, tied weights included once)."""
    if not 0.0 < layerwise_lr_decay <= 1.0:
        raise ValueError(f"layerwise_lr_decay must be in (0, 1], got {layerwise_lr_decay}")
    config = getattr(model, "config", None)
    num_layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        depth = _depth(name, num_layers) if layerwise_lr_decay < 1.0 else num_layers + 1
        no_decay = _no_decay(name, param)
        group = groups.get((depth, no_decay))
        if group is None:
            scale = layerwise_lr_decay ** (num_layers + 1 - depth)
            group = groups[(depth, no_decay)] = {
                "params": [], "names": [], "lr": lr * scale, "weight_decay": 0.0 if no_decay else weight_decay}
        group["params"].append(param)
        group["names"].append(name)
    if not groups:
        raise ValueError("the model has no trainable parameters (every parameter has requires_grad=False)")
    return [groups[key] for key in sorted(groups)]


def lr_schedule(kind: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimizer step ``step`` (for LambdaLR): linear warmup
    from ~0 to 1 over ``warmup_steps``, then linear or cosine decay to 0 at ``total_steps``, or constant."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown lr_scheduler_type {kind!r}; choose one of {', '.join(SCHEDULES)}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor
