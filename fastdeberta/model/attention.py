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
  * ``fast`` (default): the position terms are computed tile by tile against position vectors
    ordered by distance and read back as strided views (``relative_scores``: no gather, no (L, L)
    index), summed into one bias for ``scaled_dot_product_attention``; long inputs go in query
    blocks so attention memory grows linearly with L. Past the distance where every slot is the
    outermost one (``PositionSlots.reach``, ~511 for the released checkpoints), long inputs in
    inference take a band + far-field form: position matmuls only over a band of ~2 * reach keys
    per query tile, a broadcast sum of per-query and per-key constants elsewhere (``_bias_band``).
    In training (dropout, or a bias that needs a gradient) the bias goes into one ``baddbmm`` with
    q k^T instead of SDPA, whose CPU kernels handle neither (``_attend_explicit``).
"""

from __future__ import annotations

import contextlib
import math
import threading

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DebertaConfig
from .layers import Dropout, dropout_keep_mask, keep_scale
from .positions import PositionSlots

IMPLEMENTATIONS = ("fast", "reference")

# Inference scratch space: the bias and position tables are large (up to block_elements each) and
# the same shapes recur in every layer; fresh allocations that size are page-faulted every time.
# Within ``reuse_buffers()`` (the encoder's layer loop, when no gradient is recorded) they are made
# once per forward and reused by the next layer; outside it, or under torch.compile, they are not.
_scratch = threading.local()


@contextlib.contextmanager
def reuse_buffers():
    previous = getattr(_scratch, "buffers", None)
    _scratch.buffers = {}
    try:
        yield
    finally:
        _scratch.buffers = previous


def _scratch_buffer(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
    """The reusable buffer ``name`` of this shape, or None outside ``reuse_buffers`` (and whenever autograd
    records or torch.compile traces: out= has no autograd, and the graph must not hold Python state)."""
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return None
    key = (name, tuple(shape), like.dtype, like.device)
    found = buffers.get(key)
    if found is None:
        found = buffers[key] = like.new_empty(shape)
    return found


def _empty(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    found = _scratch_buffer(name, shape, like)
    return like.new_empty(shape) if found is None else found


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


def relative_scores(content: torch.Tensor, pos: torch.Tensor, window: torch.Tensor, tile: int,
                    name: str = "") -> torch.Tensor:
    """Content rows against position vectors chosen by distance, tile by tile, with no gather.

    content (B, H, A, d) with A = tiles * tile; pos (H, S, d); window (tiles, w) from
    ``PositionSlots.window`` with w = tile + C - 1 -> (B, H, tiles, tile, C), a strided view where
    entry [b, h, t, x, y] = content[b, h, t * tile + x] . pos[h, window[t, tile - 1 - x + y]].

    Each tile is one matmul against its window of w position vectors (sorted by falling distance);
    in the (tile, w) product, row x holds its C scores contiguously from column tile - 1 - x on, so
    the result is a view with row stride w - 1. Cost: A * (tile + C - 1) dot products instead of a
    gather over A * C indices.
    """
    B, H, A, d = content.shape
    tiles, w = window.shape
    C = w - tile + 1
    rows = content.view(B, H, tiles, tile, d).permute(1, 2, 0, 3, 4).reshape(H * tiles, B * tile, d)
    by_distance = pos[:, window.view(-1)].view(H * tiles, w, d)                  # (H*tiles, w, d)
    table = torch.bmm(rows, by_distance.transpose(1, 2),
                      out=_scratch_buffer(name, (H * tiles, B * tile, w), content))   # (H*tiles, B*tile, w)
    return table.as_strided((B, H, tiles, tile, C),
                            (tile * w, tiles * B * tile * w, B * tile * w, w - 1, 1), tile - 1)


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """(B, H, L, d) -> (B, H, rows, d), zero rows appended."""
    return x if x.shape[2] == rows else F.pad(x, (0, 0, 0, rows - x.shape[2]))


def average_values_at_padded_queries(context: torch.Tensor, value: torch.Tensor,
                                     key_mask: torch.Tensor | None) -> torch.Tensor:
    """At padded query rows, the mean of all L values (padding included); elsewhere ``context``.

    context, value (B, H, L, d); key_mask (B, L) bool or None -> (B, H, L, d). transformers masks
    padded query rows entirely, and a softmax over a row of equal scores is uniform over all L keys;
    doing the same makes padded positions equal transformers' too (one mean per head, no (L, L) work).
    """
    if key_mask is None:
        return context
    mean = value.float().mean(dim=2, keepdim=True).to(context.dtype)            # (B, H, 1, d)
    return torch.where(key_mask[:, None, :, None], context, mean)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., L, H * d) -> (..., H, L, d)"""
    x = x.unflatten(-1, (heads, -1))
    return x.transpose(-2, -3)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, L, d) -> (B, L, H * d)"""
    return x.transpose(1, 2).flatten(2)


class _SoftmaxDropoutValues(torch.autograd.Function):
    """dropout(softmax(scores)) @ values, keeping for backward the probabilities and a bool dropout mask
    instead of both the probabilities and their dropped copy: one (N, Lq, L) tensor per layer less.

    scores (N, Lq, L), values (N, L, d), p the dropout rate -> (N, Lq, d). The mask comes from
    ``dropout_keep_mask``; under ``exact_dropout()`` mask and scaling are torch's (same ``bernoulli_``
    draws, kept values times the rounded 1 / (1 - p)) and the result equals
    ``torch.bmm(F.dropout(torch.softmax(scores, -1), p), values)``.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, values: torch.Tensor, p: float) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        keep = scale = None
        dropped = probs
        if p > 0:
            keep, kept = dropout_keep_mask(probs.shape, min(p, 1.0), probs.device)
            scale = keep_scale(kept, probs.dtype, probs.device)
            dropped = probs * keep.to(probs.dtype).mul_(scale)
        ctx.values_dtype = values.dtype
        values = values.to(probs.dtype)
        ctx.save_for_backward(probs, values, keep, scale)
        return torch.bmm(dropped, values)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        probs, values, keep, scale = ctx.saved_tensors
        grad = grad.to(probs.dtype)
        noise = None if keep is None else keep.to(probs.dtype).mul_(scale)
        dropped = probs if noise is None else probs * noise
        grad_values = torch.bmm(dropped.transpose(1, 2), grad).to(ctx.values_dtype)   # (N, L, d)
        grad_probs = torch.bmm(grad, values.transpose(1, 2))                            # (N, Lq, L)
        if noise is not None:
            grad_probs = grad_probs * noise
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        return grad_scores, grad_values, None


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
            self.pos_dropout = Dropout(config.hidden_dropout_prob)
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
        self.dropout = Dropout(config.attention_probs_dropout_prob)
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
            return merge_heads(average_values_at_padded_queries(context, value, key_mask)), None
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
            # as transformers: a padded query row is masked entirely, so its softmax is uniform over all keys
            pair_mask = key_mask[:, None, None, :] & key_mask[:, None, :, None]  # (B, 1, L, L)
            scores = scores.masked_fill(~pair_mask, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores.float(), dim=-1).to(value.dtype)           # fp32 statistics
        probs = self.dropout(probs)
        if self.talking_head:
            probs = self.head_weights_proj(probs.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return probs @ value, probs                                             # (B, H, L, d), (B, H, L, L)

    # Bias blocks are capped at this many elements; longer inputs are processed in query blocks so
    # attention memory grows linearly with the sequence length.
    block_elements = 1 << 24
    # Rows per matmul tile of the position terms: each tile computes tile + L - 1 scores per row
    # instead of L, so small tiles waste less; too small and the matmuls get inefficient.
    tile = 64

    def _fast(self, query, key, value, pos_key, pos_query, slots, key_mask):
        B, H, L, _ = query.shape
        if pos_key is None and pos_query is None:
            bias = None
            if key_mask is not None:
                bias = query.new_zeros(B, 1, 1, L).masked_fill_(~key_mask[:, None, None, :],
                                                                 torch.finfo(query.dtype).min)
            return self._sdpa(query, key, value, bias)
        # Fold the scale into the (small) content operands so each bias is built once, in place.
        q_scaled = query * self.scale if pos_key is not None else None
        k_scaled = key * self.scale if pos_query is not None else None
        reach = slots.reach
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (q_scaled, k_scaled, pos_key, pos_query))
        band = (reach is not None and not needs_grad and L >= self.band_min_factor * (self.band_tile + 2 * reach))
        tile = self.band_tile if band else max(2, min(self.tile, L))  # (one-row tiles would overlap)
        # The band path recomputes 2 * reach key rows of p2c per block, so it takes larger blocks.
        width, budget = (L + 2 * reach + tile, 4 * self.block_elements) if band else (L, self.block_elements)
        block = L if B * H * L * width <= budget else max(tile, budget // (B * H * width) // tile * tile)
        outputs = []
        for i0 in range(0, L, block):
            rows = slice(i0, min(i0 + block, L))
            if band:
                bias = self._bias_band(q_scaled, k_scaled, pos_key, pos_query, slots, key_mask, rows, tile, reach)
            else:
                bias = self._bias(q_scaled, k_scaled, pos_key, pos_query, slots, key_mask, rows, tile)
            outputs.append(self._sdpa(query[:, :, rows], key, value, bias))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)

    def _bias(self, q_scaled, k_scaled, pos_key, pos_query, slots, key_mask, rows, tile):
        """Additive attention bias c2p + p2c (+ key mask) for query rows ``rows``: (B, H, Lb, L).

        c2p is computed in tiles of query rows against all keys, p2c in tiles of keys against the
        block's queries (p2c is a c2p with the roles of query and key swapped and the distance
        negated). Both land in one buffer padded to whole tiles, viewed as
        (B, H, query tiles, tile, key tiles, tile); the returned bias is a slice of it.
        """
        like = q_scaled if q_scaled is not None else k_scaled
        B, H, L, _ = like.shape
        i0, Lb = rows.start, rows.stop - rows.start
        q_tiles, k_tiles = -(-Lb // tile), -(-L // tile)
        Lq, Lk = q_tiles * tile, k_tiles * tile                                 # padded sizes
        terms = []
        if pos_key is not None:
            window = slots.window(row_start=i0, tiles=q_tiles, tile=tile, col_start=0, cols=Lk, sign=1)
            c2p = relative_scores(_pad_rows(q_scaled[:, :, rows], Lq), pos_key, window, tile, "c2p")
            terms.append(c2p.unflatten(-1, (k_tiles, tile)))                    # (B, H, qt, tile, kt, tile)
        if pos_query is not None:
            window = slots.window(row_start=0, tiles=k_tiles, tile=tile, col_start=i0, cols=Lq, sign=-1)
            p2c_t = relative_scores(_pad_rows(k_scaled, Lk), pos_query, window, tile, "p2c")  # (B, H, kt, tile, Lq)
            terms.append(p2c_t.unflatten(-1, (q_tiles, tile)).permute(0, 1, 4, 5, 2, 3))
        buffer = _empty("bias", (B, H, Lq, Lk), like)
        tiled = buffer.view(B, H, q_tiles, tile, k_tiles, tile)
        if len(terms) == 2 and not (torch.is_grad_enabled() and (terms[0].requires_grad or terms[1].requires_grad)):
            torch.add(terms[0], terms[1], out=tiled)                             # one pass; out= has no autograd
        else:
            # p2c (the transposed view, when present) goes first: copy_ reads a transposed view about
            # twice as fast as add_ does (bf16, 32 x 128 tokens: 3.8 ms for both passes instead of 7.4)
            tiled.copy_(terms[-1])
            for term in terms[:-1]:
                tiled.add_(term)
        bias = buffer[:, :, :Lb, :L]
        if key_mask is not None:
            # In place is safe: the buffer is freshly made and no backward formula reads it.
            bias.masked_fill_(~key_mask[:, None, None, :], torch.finfo(bias.dtype).min)
        return bias

    # Long inputs (inference): past distance ``reach`` every slot is the outermost one, so c2p is a
    # per-query constant and p2c a per-key constant there. Only a band of 2 * reach keys around each
    # tile of queries needs the position matmuls; the rest is a broadcast sum.
    band_tile = 128
    band_min_factor = 1.5

    def _bias_band(self, q_scaled, k_scaled, pos_key, pos_query, slots, key_mask, rows, tile, reach):
        """Bias for query rows ``rows`` as band + far field: (B, H, Lb, L), a view with padded rows.

        Buffer columns hold key j at column j + reach, so the band of the query tile starting at
        row a (keys a - reach ... a + tile + reach - 1) starts at column a: the bands of all tiles
        form one strided view of the buffer, and both terms are one matmul each against a window of
        position vectors that is the same for every tile (``PositionSlots.band_windows``).
        """
        like = q_scaled if q_scaled is not None else k_scaled
        B, H, L, _ = like.shape
        i0, Lb = rows.start, rows.stop - rows.start
        tiles = -(-Lb // tile)
        Lq, band = tiles * tile, tile + 2 * reach
        w = tile + band - 1
        P = max(i0 + Lq + 2 * reach, reach + L)
        buffer = _empty("bias", (B, H, Lq, P), like)
        top, bottom = slots.slot(L - 1) - slots.first, slots.slot(-(L - 1)) - slots.first

        # Far field: keys left of the band see slot ``top``, keys right of it slot ``bottom``.
        ends = [top, bottom]
        q_blk = _pad_rows(q_scaled[:, :, rows], Lq) if q_scaled is not None else None
        if q_blk is not None:
            c_left, c_right = (q_blk @ pos_key[:, ends].transpose(-1, -2)).unbind(-1)        # (B, H, Lq) each
        else:
            c_left = c_right = like.new_zeros(B, H, Lq)
        if k_scaled is not None:
            p_left, p_right = (k_scaled @ pos_query[:, ends].transpose(-1, -2)).unbind(-1)   # (B, H, L) each
        else:
            p_left = p_right = like.new_zeros(B, H, L)
        for t in range(tiles):
            a, r = i0 + t * tile, slice(t * tile, (t + 1) * tile)
            lo, hi = min(max(a - reach, 0), L), min(a + tile + reach, L)
            if lo > 0:
                torch.add(c_left[:, :, r, None], p_left[:, :, None, :lo], out=buffer[:, :, r, reach:reach + lo])
            if hi < L:
                torch.add(c_right[:, :, r, None], p_right[:, :, None, hi:],
                          out=buffer[:, :, r, reach + hi:reach + L])

        # Band: (B, H, tiles, tile, band), entry [t, x, y] for query a + x and key a - reach + y.
        c2p_window, p2c_window = slots.band_windows(tile, reach)
        strip = buffer.as_strided((B, H, tiles, tile, band), (H * Lq * P, Lq * P, tile * (P + 1), P, 1),
                                  buffer.storage_offset() + i0)
        terms = []
        if q_blk is not None:
            table = torch.matmul(q_blk, pos_key[:, c2p_window].transpose(-1, -2),
                                 out=_scratch_buffer("c2p", (B, H, Lq, w), like))       # (B, H, Lq, w)
            terms.append(table.as_strided((B, H, tiles, tile, band), (H * Lq * w, Lq * w, tile * w, w - 1, 1),
                                          table.storage_offset() + tile - 1))
        if k_scaled is not None:
            # Keys of all bands: key rows i0 - reach ... i0 + Lq + reach - 1, zeros outside [0, L).
            lo, hi = i0 - reach, i0 + Lq + reach
            keys = F.pad(k_scaled[:, :, max(lo, 0):min(hi, L)], (0, 0, max(0, -lo), max(0, hi - L)))
            table = torch.matmul(keys, pos_query[:, p2c_window].transpose(-1, -2),
                                 out=_scratch_buffer("p2c", (B, H, Lq + 2 * reach, w), like))  # (B, H, Lq + 2R, w)
            n = Lq + 2 * reach
            terms.append(table.as_strided((B, H, tiles, tile, band), (H * n * w, n * w, tile * w, 1, w - 1),
                                          table.storage_offset() + band - 1))
        if len(terms) == 2:
            torch.add(terms[0], terms[1], out=strip)
        else:
            strip.copy_(terms[0])
        bias = buffer[:, :, :Lb, reach:reach + L]
        if key_mask is not None:
            bias.masked_fill_(~key_mask[:, None, None, :], torch.finfo(bias.dtype).min)
        return bias

    def _sdpa(self, query, key, value, bias):
        dropout_p = self.dropout.p if self.training else 0.0
        if dropout_p > 0 or (bias is not None and bias.requires_grad):
            return self._attend_explicit(query, key, value, bias)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout_p,
                                              scale=self.scale)

    def _attend_explicit(self, query, key, value, bias):
        """softmax(q k^T * scale + bias) v, written out for training.

        query (B, H, Lq, d), key/value (B, H, L, d), bias (B, H, Lq, L) or (B, 1, 1, L) or None
        -> (B, H, Lq, d). SDPA's fused CPU kernel has no dropout and no gradient for the bias, so in
        training SDPA falls back to its generic math path (q and k scaled separately, a separate bias
        add, a NaN-guarded softmax). Folding scale and bias into one ``baddbmm`` instead makes the
        whole RTD pretraining step (tiny config, 32 x 128, bf16 autocast) take 1.2x less CPU time
        (fp32: unchanged). The softmax of a bf16 input accumulates in fp32 inside the kernel; the
        dropout draws the same mask as ``self.dropout`` in the reference path.
        """
        B, H, Lq, d = query.shape
        L = key.shape[2]
        q = query.reshape(B * H, Lq, d)
        k_t = key.reshape(B * H, L, d).transpose(1, 2)                          # (B*H, d, L)
        if bias is not None and bias.shape[1] == H and bias.shape[2] == Lq:
            scores = torch.baddbmm(bias.reshape(B * H, Lq, L), q, k_t, alpha=self.scale)  # (B*H, Lq, L)
        else:
            scores = torch.bmm(q, k_t).mul_(self.scale)
            if bias is not None:                                                # key mask only: (B, 1, 1, L)
                scores = scores.view(B, H, Lq, L).add_(bias).view(B * H, Lq, L)
        values = value.reshape(B * H, L, d)
        p = self.dropout.p if self.training else 0.0
        if p > 0 and scores.element_size() >= 4:
            # fp32: keep a bool mask, not the dropped probabilities (v3-base, 8 x 128: -72 MiB of saved
            # activations, same speed); in bf16 the recomputation in backward costs ~3% of a step.
            context = _SoftmaxDropoutValues.apply(scores, values, p)                     # (B*H, Lq, d)
        else:
            context = torch.bmm(self.dropout(torch.softmax(scores, dim=-1)), values)    # (B*H, Lq, d)
        return context.view(B, H, Lq, d)
