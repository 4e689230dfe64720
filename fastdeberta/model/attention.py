"""Disentangled self-attention (DeBERTa, He et al. 2021, eq. 2-4).

Notation for tensor shapes:
    B  batch            H  heads            d  head size          D  hidden size
    L  sequence length  S  relative-position slots in use (<= 2L-1 or 2 * span)

For query i and key j, with content projections q_i, k_j, position projections (of the relative
embedding table) pk_s, pq_s, and s = slot(i, j) (see positions.py):

    c2c[i, j] = q_i . k_j            content  -> content
    c2p[i, j] = q_i . pk_s           content  -> position
    p2c[i, j] = k_j . pq_s           position -> content
    A = (c2c + c2p + p2c) / sqrt(d * (1 + number of position terms))

Two implementations share the projections:
  * ``reference``: the equations above, materialising each term with ``gather``; also used when
    attention probabilities are requested or for v1's talking-head mixing.
  * ``fast`` (default): the position terms are computed only over the S slots that occur, read back
    as strided views of the (B, H, L, S) tables where the slot is a pure diagonal (no gather), and
    added as one bias to ``scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DebertaConfig
from .positions import PositionSlots

IMPLEMENTATIONS = ("fast", "reference")


# ----------------------------------------------------------------------------- the three terms
def c2c_scores(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Content-to-content: (B, H, L, d) x (B, H, L, d) -> (B, H, L, L)."""
    return query @ key.transpose(-1, -2)


def c2p_scores(query: torch.Tensor, pos_key: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Content-to-position: query i against the position key of slot(i, j).

    query (B, H, L, d), pos_key (H, S, d), slots (L, L) in [0, S) -> (B, H, L, L)
    """
    table = query @ pos_key.transpose(-1, -2)                               # (B, H, L, S)
    index = slots.expand(table.shape[0], table.shape[1], *slots.shape)      # (B, H, L, L)
    return table.gather(-1, index)


def p2c_scores(key: torch.Tensor, pos_query: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Position-to-content: key j against the position query of slot(i, j).

    key (B, H, L, d), pos_query (H, S, d), slots (L, L) in [0, S) -> (B, H, L, L)
    """
    table = key @ pos_query.transpose(-1, -2)                               # (B, H, L_key, S)
    index = slots.t().expand(table.shape[0], table.shape[1], slots.shape[1], slots.shape[0])
    return table.gather(-1, index).transpose(-1, -2)                        # (B, H, L_query, L_key)


def position_table(content: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Every content vector against every position vector, batched over heads so each head is one
    large matmul (M = B * L) instead of B small ones.

    content (B, H, L, d), pos (H, S, d) -> (H, B * L, S), contiguous; entry [h, b * L + i, s].
    """
    B, H, L, d = content.shape
    flat = content.transpose(1, 2).reshape(B * L, H, d).transpose(0, 1)     # (H, B*L, d)
    return torch.bmm(flat, pos.transpose(1, 2))                             # (H, B*L, S)


def _as_bhls(table: torch.Tensor, batch: int) -> torch.Tensor:
    """(H, B*L, S) -> (B, H, L, S) view."""
    H, BL, S = table.shape
    return table.view(H, batch, BL // batch, S).transpose(0, 1)


def c2p_bias(query: torch.Tensor, pos_key: torch.Tensor, slots: PositionSlots, rows: slice) -> torch.Tensor:
    """c2p for query rows ``rows``: (B, H, L, d), (H, S, d) -> (B, H, len(rows), L).

    When slots are diagonal (slot = i - j + L - 1, S = 2L - 1) the position keys are taken in
    reverse order: row i then holds the scores for j = 0..L-1 contiguously at columns L-1-i ..
    2L-2-i, and the result is a strided view (flat offset i * (S - 1) + j + L - 1), no gather.
    """
    B, H, L, _ = query.shape
    i0, i1 = rows.start, rows.stop
    if slots.diagonal:
        table = position_table(query, pos_key.flip(-2))                     # (H, B*L, S)
        S = table.shape[-1]
        return table.as_strided((B, H, i1 - i0, L), (L * S, B * L * S, S - 1, 1),
                                table.storage_offset() + L - 1 + i0 * (S - 1))
    table = _as_bhls(position_table(query, pos_key), B)[:, :, i0:i1]        # (B, H, Lb, S)
    return table.gather(-1, slots.index[i0:i1].expand(B, H, i1 - i0, L))


def p2c_bias(key: torch.Tensor, pos_query: torch.Tensor, slots: PositionSlots, rows: slice) -> torch.Tensor:
    """p2c for query rows ``rows``: entry (i, j) = key_j . pos_query[slot(i, j)].

    key (B, H, L, d), pos_query (H, S, d) -> (B, H, len(rows), L). Diagonal slots: table[j, i - j + L - 1]
    at flat offset j * (S - 1) + i + L - 1, a strided view.
    """
    B, H, L, _ = key.shape
    i0, i1 = rows.start, rows.stop
    table = position_table(key, pos_query)                                  # (H, B*L, S)
    if slots.diagonal:
        S = table.shape[-1]
        return table.as_strided((B, H, i1 - i0, L), (L * S, B * L * S, 1, S - 1),
                                table.storage_offset() + L - 1 + i0)
    index = slots.index[i0:i1].t().expand(B, H, L, i1 - i0)                 # (B, H, L_key, Lb)
    return _as_bhls(table, B).gather(-1, index).transpose(-1, -2)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., L, H * d) -> (..., H, L, d)"""
    x = x.unflatten(-1, (heads, -1))
    return x.transpose(-2, -3)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, d) -> (B, L, H * d)"""
    return x.transpose(1, 2).flatten(2)


class DisentangledSelfAttention(nn.Module):
    """Self-attention with content and relative-position terms; parameter names follow transformers
    (``query_proj``/``key_proj``/``value_proj`` for v2, fused ``in_proj`` + ``q_bias``/``v_bias`` for v1).
    """

    def __init__(self, config: DebertaConfig):
        super().__init__()
        D, H = config.hidden_size, config.num_attention_heads
        self.heads = H
        self.head_size = D // H
        self.v1 = config.is_v1
        if self.v1:
            # One matmul; output laid out per head as [q_h | k_h | v_h].
            self.in_proj = nn.Linear(D, 3 * D, bias=False)
            self.q_bias = nn.Parameter(torch.zeros(D))
            self.v_bias = nn.Parameter(torch.zeros(D))
        else:
            self.query_proj = nn.Linear(D, D)
            self.key_proj = nn.Linear(D, D)
            self.value_proj = nn.Linear(D, D)

        self.relative_attention = config.relative_attention
        self.terms = config.attention_terms if config.relative_attention else ()
        self.share_att_key = config.share_att_key and not self.v1
        if self.relative_attention:
            self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)
            if self.v1:
                if "c2p" in self.terms:
                    self.pos_proj = nn.Linear(D, D, bias=False)
                if "p2c" in self.terms:
                    self.pos_q_proj = nn.Linear(D, D)
            elif not self.share_att_key:
                if "c2p" in self.terms:
                    self.pos_key_proj = nn.Linear(D, D)
                if "p2c" in self.terms:
                    self.pos_query_proj = nn.Linear(D, D)
        self.talking_head = self.v1 and config.talking_head
        if self.talking_head:
            self.head_logits_proj = nn.Linear(H, H, bias=False)
            self.head_weights_proj = nn.Linear(H, H, bias=False)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        # The scale counts the position terms named in the config, as the original does.
        self.scale = 1.0 / math.sqrt(self.head_size * (1 + len(config.attention_terms)))
        self.implementation = "fast"

    # ------------------------------------------------------------------ projections
    def project_qkv(self, hidden_states: torch.Tensor, query_states: torch.Tensor | None):
        """(B, L, D) -> query, key, value, each (B, H, L, d)."""
        H, d = self.heads, self.head_size
        if not self.v1:
            q_in = hidden_states if query_states is None else query_states
            return (split_heads(self.query_proj(q_in), H), split_heads(self.key_proj(hidden_states), H),
                    split_heads(self.value_proj(hidden_states), H))
        if query_states is None:
            qkv = self.in_proj(hidden_states).unflatten(-1, (H, 3, d))          # (B, L, H, 3, d)
            query, key, value = (qkv[..., n, :].transpose(1, 2) for n in range(3))
        else:
            w = self.in_proj.weight.unflatten(0, (H, 3, d))                    # (H, 3, d, D)
            query = split_heads(F.linear(query_states, w[:, 0].flatten(0, 1)), H)
            key = split_heads(F.linear(hidden_states, w[:, 1].flatten(0, 1)), H)
            value = split_heads(F.linear(hidden_states, w[:, 2].flatten(0, 1)), H)
        query = query + self.q_bias.view(H, 1, d)
        value = value + self.v_bias.view(H, 1, d)
        return query, key, value

    def position_keys(self, rel: torch.Tensor) -> torch.Tensor:
        """Relative embeddings (S, D) -> position keys (H, S, d) for c2p."""
        proj = self.pos_proj if self.v1 else (self.key_proj if self.share_att_key else self.pos_key_proj)
        return split_heads(proj(rel), self.heads)

    def position_queries(self, rel: torch.Tensor) -> torch.Tensor:
        """Relative embeddings (S, D) -> position queries (H, S, d) for p2c."""
        proj = self.pos_q_proj if self.v1 else (self.query_proj if self.share_att_key else self.pos_query_proj)
        return split_heads(proj(rel), self.heads)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,                 # (B, L, D): keys and values (and queries by default)
        key_mask: torch.Tensor | None,               # (B, L) bool, True = real token; None = no padding
        rel_embeddings: torch.Tensor | None = None,  # (S, D): the table rows in use (slots.first ...)
        slots: PositionSlots | None = None,
        query_states: torch.Tensor | None = None,    # (B, L, D): queries from elsewhere (EMD)
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query, key, value = self.project_qkv(hidden_states, query_states)     # (B, H, L, d) each
        use_positions = self.relative_attention and bool(self.terms) and rel_embeddings is not None
        pos_key = pos_query = None
        if use_positions:
            rel = self.pos_dropout(rel_embeddings)                              # (S, D)
            if "c2p" in self.terms:
                pos_key = self.position_keys(rel)                               # (H, S, d)
            if "p2c" in self.terms:
                pos_query = self.position_queries(rel)                          # (H, S, d)

        if self.implementation == "fast" and not (output_attentions or self.talking_head):
            context = self._fast(query, key, value, pos_key, pos_query, slots, key_mask)
            return merge_heads(context), None
        context, probs = self._reference(query, key, value, pos_key, pos_query, slots, key_mask)
        return merge_heads(context), (probs if output_attentions else None)

    def _reference(self, query, key, value, pos_key, pos_query, slots, key_mask):
        scores = c2c_scores(query, key)                                         # (B, H, L, L)
        if pos_key is not None:
            scores = scores + c2p_scores(query, pos_key, slots.index)
        if pos_query is not None:
            scores = scores + p2c_scores(key, pos_query, slots.index)
        scores = scores * self.scale
        if self.talking_head:
            scores = self.head_logits_proj(scores.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)           # fp32 statistics
        probs = self.dropout(probs)
        if self.talking_head:
            probs = self.head_weights_proj(probs.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return probs @ value, probs                                             # (B, H, L, d), (B, H, L, L)

    # Bias blocks are capped at this many elements; longer inputs are processed in query blocks so
    # attention memory grows linearly with the sequence length.
    block_elements = 1 << 24

    def _fast(self, query, key, value, pos_key, pos_query, slots, key_mask):
        B, H, L, _ = query.shape
        block = max(64, self.block_elements // (B * H * L)) // 64 * 64
        if pos_key is None and pos_query is None and key_mask is None:
            return self._sdpa(query, key, value, None)
        # Fold the scale into the (small) content operands so each bias is built once, in place.
        q_scaled = query * self.scale if pos_key is not None else None
        k_scaled = key * self.scale if pos_query is not None else None
        if block >= L:
            return self._sdpa(query, key, value, self._bias(q_scaled, k_scaled, pos_key, pos_query, slots,
                                                            key_mask, slice(0, L), query))
        outputs = []
        for i0 in range(0, L, block):
            rows = slice(i0, min(i0 + block, L))
            bias = self._bias(q_scaled, k_scaled, pos_key, pos_query, slots, key_mask, rows, query)
            outputs.append(self._sdpa(query[:, :, rows], key, value, bias))
        return torch.cat(outputs, dim=2)

    def _bias(self, q_scaled, k_scaled, pos_key, pos_query, slots, key_mask, rows, like):
        """Additive attention bias for query rows ``rows``: (B, H, Lb, L), contiguous."""
        B, H, L, _ = like.shape
        terms = []
        if pos_key is not None:
            terms.append(c2p_bias(q_scaled, pos_key, slots, rows))
        if pos_query is not None:
            terms.append(p2c_bias(k_scaled, pos_query, slots, rows))
        if len(terms) == 2:
            if torch.is_grad_enabled() and (terms[0].requires_grad or terms[1].requires_grad):
                bias = terms[0] + terms[1]            # out= has no autograd
            else:
                bias = torch.add(terms[0], terms[1], out=like.new_empty(B, H, rows.stop - rows.start, L))
        elif terms:
            bias = terms[0].contiguous()
        else:
            bias = like.new_zeros(B, 1, 1, L)
        if key_mask is not None:
            # In place is safe: bias is freshly made and no backward formula reads it.
            bias.masked_fill_(~key_mask[:, None, None, :], torch.finfo(bias.dtype).min)
        return bias

    def _sdpa(self, query, key, value, bias):
        dropout_p = self.dropout.p if self.training else 0.0
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout_p,
                                              scale=self.scale)
