"""The DeBERTa encoder: a stack of post-LayerNorm transformer layers sharing one relative-position
table, with v2's optional convolution beside the first layer."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import DebertaConfig
from .attention import DisentangledSelfAttention, reuse_buffers
from .feedforward import RECOMPUTABLE, act_linear
from .layers import ACTIVATIONS, Dropout, LayerNorm, activation
from .positions import GraphSlots, PositionSlots, position_slots


class SelfOutput(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual)"""

    def __init__(self, config: DebertaConfig, in_size: int):
        super().__init__()
        self.dense = nn.Linear(in_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.finish(self.dense(x), residual)

    def finish(self, projected: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """The block after the dense layer, given its output: LayerNorm(dropout(projected) + residual)."""
        return self.LayerNorm(self.dropout(projected) + residual)


class Attention(nn.Module):
    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.self = DisentangledSelfAttention(config)
        self.output = SelfOutput(config, config.hidden_size)

    def forward(self, hidden_states, key_mask, rel_embeddings, slots, query_states=None, output_attentions=False):
        context, probs = self.self(hidden_states, key_mask, rel_embeddings, slots, query_states, output_attentions)
        residual = hidden_states if query_states is None else query_states
        return self.output(context, residual), probs


class Intermediate(nn.Module):
    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)
        self.act_name = config.hidden_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class DebertaLayer(nn.Module):
    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = SelfOutput(config, config.intermediate_size)
        # Training: recompute the feed-forward activation in backward instead of keeping its output
        # (see feedforward.py); False keeps the plain modules' path everywhere.
        self.recompute_activation = True

    def forward(self, hidden_states, key_mask, rel_embeddings, slots, query_states=None, output_attentions=False):
        attended, probs = self.attention(hidden_states, key_mask, rel_embeddings, slots, query_states,
                                         output_attentions)
        return self.feed_forward(attended), probs

    def feed_forward(self, attended: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D): LayerNorm(dropout(output.dense(act(intermediate.dense(x)))) + x)."""
        if self.uses_recompute():
            pre = self.intermediate.dense(attended)                                 # (B, L, I)
            projected = act_linear(pre, self.output.dense, self.intermediate.act_name)  # (B, L, D)
            return self.output.finish(projected, attended)
        return self.output(self.intermediate(attended), attended)

    def uses_recompute(self) -> bool:
        """Whether this call takes the recomputing path: training under autograd, an activation with a
        recomputing backward, and the plain modules it stands for (no hooks, output.dense not replaced,
        e.g. by a LoRA adapter); never while torch.compile/export traces."""
        if not (self.recompute_activation and self.training and torch.is_grad_enabled()):
            return False
        if torch.compiler.is_compiling() or self.intermediate.act_name not in RECOMPUTABLE:
            return False
        plain = (type(self.intermediate) is Intermediate and type(self.output.dense) is nn.Linear
                 and self.intermediate.act is ACTIVATIONS[self.intermediate.act_name])   # act not swapped
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in (self.intermediate, self.output.dense))
        return plain and not hooked


class ConvLayer(nn.Module):
    """v2: a 1-D convolution over the embeddings, added to the first layer's output."""

    def __init__(self, config: DebertaConfig):
        super().__init__()
        k = config.conv_kernel_size
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, k, padding=(k - 1) // 2,
                              groups=config.conv_groups)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.act = activation(config.conv_act)

    def forward(self, embeddings: torch.Tensor, layer_output: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        out = self.conv(embeddings.transpose(1, 2)).transpose(1, 2)           # (B, L, D)
        if mask is not None:
            out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        out = self.LayerNorm(layer_output + self.act(self.dropout(out)))
        if mask is not None:
            out = out * mask.unsqueeze(-1).to(out.dtype)
        return out


@dataclass
class EncoderState:
    """What the layers need besides hidden states; computed once per forward."""

    key_mask: torch.Tensor | None          # (B, L) bool, None when nothing is padded
    rel_embeddings: torch.Tensor | None    # (S, D), the table rows in use
    slots: PositionSlots | None


class DebertaEncoder(nn.Module):
    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.layer = nn.ModuleList([DebertaLayer(config) for _ in range(config.num_hidden_layers)])
        self.relative_attention = config.relative_attention
        self.span = config.relative_span
        self.buckets = config.position_buckets if not config.is_v1 else -1
        self.max_relative = config.max_relative_distance
        if self.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * self.span, config.hidden_size)
        norm = [x.strip() for x in str(config.norm_rel_ebd).lower().split("|")]
        self.LayerNorm = (LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                          if "layer_norm" in norm and not config.is_v1 else None)
        self.conv = ConvLayer(config) if config.conv_kernel_size > 0 and not config.is_v1 else None
        self.gradient_checkpointing = False
        # Export graphs (fastdeberta.export): slots computed in the graph from the traced length.
        self.positions_in_graph = False
        self._slots_cache: dict[tuple[int, str, bool], PositionSlots] = {}

    def position_slots(self, length: int, device: torch.device) -> PositionSlots:
        # Index tensors made under inference_mode cannot be saved for backward later: cache per mode.
        inference = False if torch.compiler.is_compiling() else torch.is_inference_mode_enabled()
        key = (length, str(device), inference)
        slots = self._slots_cache.get(key)
        if slots is None:
            slots = position_slots(length, span=self.span, buckets=self.buckets, max_position=self.max_relative,
                                   device=device)
            if len(self._slots_cache) > 64:
                self._slots_cache.clear()
            self._slots_cache[key] = slots
        return slots

    def prepare(self, hidden_states: torch.Tensor, mask: torch.Tensor | None) -> EncoderState:
        # An all-ones mask is dropped (saves the masking work); not checked while compiling, where
        # reading a tensor value would split the graph.
        key_mask = mask
        if mask is not None and not torch.compiler.is_compiling() and bool(mask.all()):
            key_mask = None
        if not self.relative_attention:
            return EncoderState(key_mask, None, None)
        if self.positions_in_graph:
            slots = GraphSlots(hidden_states.shape[1], span=self.span, buckets=self.buckets,
                               max_position=self.max_relative, device=hidden_states.device)
        else:
            slots = self.position_slots(hidden_states.shape[1], hidden_states.device)
        rel = self.rel_embeddings.weight[slots.first: slots.first + slots.count]  # (S, D)
        if self.LayerNorm is not None:
            rel = self.LayerNorm(rel)   # row-wise, so normalising only the rows in use is exact
        return EncoderState(key_mask, rel.to(hidden_states.dtype), slots)

    def run_layer(self, layer: DebertaLayer, hidden_states, state: EncoderState, query_states=None,
                  output_attentions=False):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(layer, hidden_states, state.key_mask, state.rel_embeddings, state.slots,
                              query_states, output_attentions, use_reentrant=False)
        return layer(hidden_states, state.key_mask, state.rel_embeddings, state.slots, query_states,
                     output_attentions)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None, *,
                output_hidden_states: bool = False, output_attentions: bool = False) -> EncoderOutput:
        """hidden_states (B, L, D) from the embeddings; mask (B, L) bool or None."""
        state = self.prepare(hidden_states, mask)
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attn = [] if output_attentions else None
        embeddings = penultimate = hidden_states
        # (the attention layers decide per call whether a buffer may be reused: never under autograd)
        with contextlib.nullcontext() if torch.compiler.is_compiling() else reuse_buffers():
            for i, layer in enumerate(self.layer):
                penultimate = hidden_states
                hidden_states, probs = self.run_layer(layer, hidden_states, state, None, output_attentions)
                if i == 0 and self.conv is not None:
                    hidden_states = self.conv(embeddings, hidden_states, mask)
                if all_hidden is not None:
                    all_hidden.append(hidden_states)
                if all_attn is not None:
                    all_attn.append(probs)
        return EncoderOutput(hidden_states, None if all_hidden is None else tuple(all_hidden),
                             None if all_attn is None else tuple(all_attn), penultimate, state)


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor               # (B, L, D)
    hidden_states: tuple[torch.Tensor, ...] | None
    attentions: tuple[torch.Tensor, ...] | None
    penultimate: torch.Tensor                     # (B, L, D): input of the last layer (for the EMD)
    state: EncoderState
