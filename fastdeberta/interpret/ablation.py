"""Switch attention terms off at inference, to measure what each one contributes.

``switch_off_terms(model, ["c2p"])`` is a context manager: inside it, every attention module of
the model computes its scores without the named terms (the scale stays the model's own, so the
remaining terms keep their size), through the reference equations; on exit the modules are as
before. Nothing in the model code changes and a model outside the block pays nothing.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator

import torch

from ..errors import InvalidInputError
from ..model.attention import DisentangledSelfAttention, merge_heads
from .decompose import TERMS, attend, raw_terms

__all__ = ["switch_off_terms"]


def _forward_without(module: DisentangledSelfAttention, off: frozenset[str], hidden_states: torch.Tensor,
                     key_mask: torch.Tensor | None, rel_embeddings: torch.Tensor | None = None, slots=None,
                     query_states: torch.Tensor | None = None, output_attentions: bool = False):
    """DisentangledSelfAttention.forward with the terms in ``off`` left out of the scores."""
    raw, value = raw_terms(module, hidden_states, rel_embeddings, slots, query_states)
    kept = [term for name, term in raw.items() if name not in off]
    summed = torch.stack(kept).sum(dim=0) if kept else torch.zeros_like(raw["c2c"])    # (B, H, L, L)
    _, probs = attend(module, summed, key_mask, value.dtype)
    return merge_heads(probs @ value), (probs if output_attentions else None)


@contextlib.contextmanager
def switch_off_terms(model: torch.nn.Module, terms: Iterable[str]) -> Iterator[torch.nn.Module]:
    """Within the block, ``model``'s attention leaves out ``terms`` (any of "c2c", "c2p", "p2c";
    a term the model does not use is already off). Yields the model."""
    off = frozenset(terms)
    unknown = sorted(off - set(TERMS))
    if unknown:
        raise InvalidInputError(f"unknown attention term(s) {unknown}; choose from {list(TERMS)}")
    modules = [m for m in model.modules() if isinstance(m, DisentangledSelfAttention)]
    for module in modules:
        # An instance attribute shadows the class's forward for this module only.
        module.forward = functools.partial(_forward_without, module, off)
    try:
        yield model
    finally:
        for module in modules:
            del module.forward
