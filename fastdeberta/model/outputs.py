"""Output containers with the field names transformers users know.

Fields are reachable as attributes (``out.logits``), as keys (``out["logits"]``) and by position
over the fields that are set (``out[0]``), like transformers' ``ModelOutput``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

Tensor = torch.Tensor


@dataclass
class ModelOutput:
    def to_tuple(self) -> tuple:
        return tuple(v for v in (getattr(self, f.name) for f in fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def items(self) -> list[tuple[str, object]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def __getitem__(self, key: str | int):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{key!r} is not set on this {type(self).__name__}; set fields: {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None   # embeddings + one per layer, (B, L, D) each
    attentions: tuple[Tensor, ...] | None = None      # one per layer, (B, H, L, L) each


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None                      # (B, L, V)
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None                      # (B, num_labels)
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None                      # (B, L, num_labels)
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None                # (B, L)
    end_logits: Tensor | None = None                  # (B, L)
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class MultipleChoiceModelOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None                      # (B, num_choices)
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


def _register_pytrees() -> None:
    """Let torch.export / torch.compile flatten the output containers like tuples."""
    from torch.utils import _pytree as pytree

    def register(cls):
        names = [f.name for f in fields(cls)]
        pytree.register_pytree_node(
            cls,
            lambda out: ([getattr(out, n) for n in names], None),
            lambda values, _ctx: cls(*values),
            serialized_type_name=f"fastdeberta.{cls.__name__}",
        )

    for cls in (BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput, TokenClassifierOutput,
                QuestionAnsweringModelOutput, MultipleChoiceModelOutput):
        register(cls)


_register_pytrees()
