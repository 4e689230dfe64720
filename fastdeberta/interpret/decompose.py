"""The disentangled attention of every layer and head, split into its three terms.

DeBERTa's pre-softmax attention score of query i and key j is a sum (model/attention.py)::

    scores[i, j] = (c2c[i, j] + c2p[i, j] + p2c[i, j]) * scale        (v1 talking heads: then mixed)

``explain_attention`` runs the model once and returns, per layer, each term *already scaled* the
way the model scales it, their sum with the padding mask applied, and the post-softmax
probabilities, each (B, H, L, L); the relative-position bucket of every (query, key) pair; and the
tokens with their character offsets.

Capture: forward pre-hooks on the chosen layers' ``DisentangledSelfAttention`` modules record what
each one receives (hidden states, key mask, relative embeddings, slots); the terms are then
recomputed from the module's own projections with the model's reference functions (``c2c_scores``,
``c2p_scores``, ``p2c_scores``) in the order the reference path uses, so ``scores`` equals the
model's own pre-softmax scores bit for bit. The hooks exist only inside the call: a model that is
not being explained pays nothing.

v1 talking heads mix the heads with a linear map (no bias) before the softmax and another after
it. Each term is reported *after* the first mixing, so the three terms still add up to ``scores``
(up to float rounding), and ``probs`` is what the model multiplies the values with (after the
second mixing, like transformers' ``output_attentions``): for those models ``probs`` is not
``softmax(scores)``.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidInputError
from ..model.attention import DisentangledSelfAttention, c2c_scores, c2p_scores, p2c_scores

__all__ = ["AttentionExplanation", "LayerAttention", "attention_terms", "decompose_attention",
           "explain_attention"]

TERMS = ("c2c", "c2p", "p2c")


@dataclass
class LayerAttention:
    """One layer's attention, each tensor (B, H, L, L) for query i (dim 2) and key j (dim 3).

    c2c / c2p / p2c: the pre-softmax terms, scaled as the model scales them (None where the config
    does not use the term). scores: the model's pre-softmax scores (their sum) with padding masked
    (``torch.finfo(dtype).min`` wherever the query or the key is padding). probs: the attention
    probabilities.
    """

    layer: int
    c2c: torch.Tensor
    c2p: torch.Tensor | None
    p2c: torch.Tensor | None
    scores: torch.Tensor
    probs: torch.Tensor

    def select(self, index: int) -> LayerAttention:
        """The same layer for text ``index`` only (every tensor (1, H, L, L))."""
        pick = lambda t: None if t is None else t[index:index + 1]      # noqa: E731
        return LayerAttention(self.layer, pick(self.c2c), pick(self.c2p), pick(self.p2c), pick(self.scores),
                              pick(self.probs))

    @property
    def terms(self) -> dict[str, torch.Tensor]:
        """The terms this model uses, by name (always "c2c", then "c2p" / "p2c" where present)."""
        found = {"c2c": self.c2c, "c2p": self.c2p, "p2c": self.p2c}
        return {name: value for name, value in found.items() if value is not None}


@dataclass
class AttentionExplanation:
    """What ``explain_attention`` returns.

    layers: {layer index: LayerAttention}, in layer order (only the layers asked for).
    position_buckets: (L, L) long, the relative position delta(i, j) = i - j after the model's
        log-bucketing and clipping, as the position terms looked it up; None without relative
        attention. delta = 1: the key is the token just before the query.
    attention_mask: (B, L) long, 1 = token, 0 = padding.  input_ids: (B, L).
    tokens / offsets: per text, the token strings and their (start, end) character offsets in the
        text (special tokens: (0, 0)), without padding; None when the input came as token ids.
    """

    layers: dict[int, LayerAttention]
    position_buckets: torch.Tensor | None
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    num_layers: int
    num_heads: int
    talking_head: bool = False
    texts: list[str] | None = None
    tokens: list[list[str]] | None = None
    offsets: list[list[tuple[int, int]]] | None = None

    def __getitem__(self, layer: int) -> LayerAttention:
        return self.layers[_layer_index(layer, self.num_layers, available=self.layers)]

    @property
    def lengths(self) -> list[int]:
        """Number of real (non-padding) tokens of each text."""
        return [int(n) for n in self.attention_mask.sum(dim=1)]

    @property
    def term_names(self) -> tuple[str, ...]:
        first = next(iter(self.layers.values()))
        return tuple(first.terms)

    def check_index(self, index: int) -> None:
        """Raise InvalidInputError unless ``index`` names one of the explained texts."""
        count = self.input_ids.shape[0]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise InvalidInputError(f"index {index!r} is out of range: this explanation holds {count} text(s) "
                                    f"(0 ... {count - 1})")

    def to_bertviz(self, index: int = 0) -> tuple[list[torch.Tensor], list[str]]:
        """The combined attention of text ``index`` as bertviz's ``head_view`` / ``model_view`` take it:
        (per captured layer a float tensor (1, H, n, n), padding removed; the n token strings)."""
        self.check_index(index)
        n = self.lengths[index]
        attention = [layer.probs[index:index + 1, :, :n, :n].float().cpu() for layer in self.layers.values()]
        tokens = self.tokens[index] if self.tokens is not None else [str(t) for t in self.input_ids[index, :n].tolist()]
        return attention, list(tokens)


# ----------------------------------------------------------------------------- the decomposition
def attention_terms(attention: DisentangledSelfAttention, hidden_states: torch.Tensor,
                    key_mask: torch.Tensor | None, rel_embeddings: torch.Tensor | None = None,
                    slots: Any = None, query_states: torch.Tensor | None = None, layer: int = -1) -> LayerAttention:
    """Recompute one attention call term by term, from the module's own projections.

    Arguments are what ``DisentangledSelfAttention.forward`` receives: hidden_states (B, L, D),
    key_mask (B, L) bool or None, rel_embeddings (S, D), slots (``PositionSlots``), query_states.
    Returns the terms, scores and probabilities, each (B, H, L, L).
    """
    raw, value = raw_terms(attention, hidden_states, rel_embeddings, slots, query_states)
    # The sum in the reference path's order (c2c, + c2p, + p2c), then the scale: bit-identical scores.
    total = raw["c2c"]
    for name in ("c2p", "p2c"):
        if name in raw:
            total = total + raw[name]
    scores, probs = attend(attention, total, key_mask, value.dtype)
    terms = {name: mix_logits(attention, term * attention.scale) for name, term in raw.items()}
    return LayerAttention(layer, terms["c2c"], terms.get("c2p"), terms.get("p2c"), scores, probs)


def raw_terms(attention: DisentangledSelfAttention, hidden_states: torch.Tensor, rel_embeddings: torch.Tensor | None,
              slots: Any, query_states: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The unscaled terms the module uses ({"c2c": ..., "c2p": ..., "p2c": ...}, each (B, H, L, L))
    and the values (B, H, L, d), from the module's own projections and the model's term functions."""
    query, key, value = attention.project_qkv(hidden_states, query_states)   # (B, H, L, d) each
    raw = {"c2c": c2c_scores(query, key)}                                     # (B, H, L, L)
    if attention.relative_attention and attention.terms and rel_embeddings is not None:
        rel = attention.pos_dropout(rel_embeddings)                            # (S, D)
        if "c2p" in attention.terms:
            raw["c2p"] = c2p_scores(query, attention.position_keys(rel), slots.index)
        if "p2c" in attention.terms:
            raw["p2c"] = p2c_scores(key, attention.position_queries(rel), slots.index)
    return raw, value


def attend(attention: DisentangledSelfAttention, summed: torch.Tensor, key_mask: torch.Tensor | None,
           dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled summed terms (B, H, L, L) -> (scores: scaled, mixed, padding masked; probs), as the
    model's reference path does it."""
    scores = mix_logits(attention, summed * attention.scale)
    if key_mask is not None:
        # Padding as transformers masks it: a pair is masked where the query or the key is padding.
        pair_mask = key_mask[:, None, None, :] & key_mask[:, None, :, None]   # (B, 1, L, L)
        scores = scores.masked_fill(~pair_mask, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(dtype)                   # fp32 statistics
    probs = attention.dropout(probs)
    if attention.talking_head:
        probs = attention.head_weights_proj(probs.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return scores, probs


def mix_logits(attention: DisentangledSelfAttention, scores: torch.Tensor) -> torch.Tensor:
    """v1 talking heads: mix (B, H, L, L) scores across heads (linear, no bias); identity otherwise."""
    if not attention.talking_head:
        return scores
    return attention.head_logits_proj(scores.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- capture
@dataclass
class _AttentionCall:
    """What one DisentangledSelfAttention call received."""

    hidden_states: torch.Tensor
    key_mask: torch.Tensor | None
    rel_embeddings: torch.Tensor | None
    slots: Any


_FORWARD_SIGNATURE = inspect.signature(DisentangledSelfAttention.forward)


@contextlib.contextmanager
def record_attention_calls(modules: dict[int, DisentangledSelfAttention]) -> Iterator[dict[int, _AttentionCall]]:
    """Within the block, the inputs of each module's encoder call land in the yielded dict under its
    layer index. Calls with ``query_states`` (the Enhanced Mask Decoder re-running the last layer)
    are not recorded. The hooks are removed on exit, whatever happens."""
    calls: dict[int, _AttentionCall] = {}

    def recorder(index: int):
        def hook(module, args, kwargs):
            bound = _FORWARD_SIGNATURE.bind(module, *args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            if given["query_states"] is None:
                calls[index] = _AttentionCall(given["hidden_states"], given["key_mask"], given["rel_embeddings"],
                                              given["slots"])
        return hook

    handles = [module.register_forward_pre_hook(recorder(index), with_kwargs=True)
               for index, module in modules.items()]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off for the call; the caller's train/eval state restored afterwards."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _layer_index(layer: Any, num_layers: int, available: Sequence[int] | None = None) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise InvalidInputError(f"layer must be an int, got {type(layer).__name__}: {layer!r}")
    if not -num_layers <= layer < num_layers:
        raise InvalidInputError(f"layer {layer} is out of range: this model has {num_layers} layers "
                                f"(0 ... {num_layers - 1}, or -1 for the last)")
    index = layer % num_layers
    if available is not None and index not in available:
        raise InvalidInputError(f"layer {layer} was not captured; captured layers: {sorted(available)} "
                                "(pass layers=None to capture all)")
    return index


def _resolve_layers(layers: int | Sequence[int] | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    chosen = [layers] if isinstance(layers, int) else list(layers)
    if not chosen:
        raise InvalidInputError("layers is empty; pass None for every layer or a list of layer indices")
    return sorted({_layer_index(layer, num_layers) for layer in chosen})


def decompose_attention(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        token_type_ids: torch.Tensor | None = None,
                        layers: int | Sequence[int] | None = None) -> AttentionExplanation:
    """``explain_attention`` for inputs that are already token ids: input_ids (B, L) long,
    attention_mask (B, L) (1 = token, default all ones), token_type_ids (B, L) where the model has types.

    Runs the model's encoder once (no gradient, dropout off) with capture hooks on the chosen layers
    (None: all; negative indices count from the end) and returns an ``AttentionExplanation``
    without tokens.
    """
    base = model.base_model
    encoder = base.encoder
    num_layers = len(encoder.layer)
    chosen = _resolve_layers(layers, num_layers)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise InvalidInputError(f"input_ids must be a (batch, sequence) tensor, got {shape}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    modules = {index: encoder.layer[index].attention.self for index in chosen}
    device = next(model.parameters()).device
    with _eval_mode(model), torch.no_grad(), record_attention_calls(modules) as calls:
        # output_attentions: the layers take the reference path, so every layer's input (and so the
        # explanation) is bit-identical to an output_attentions run, whichever path the model is set to.
        base(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
             token_type_ids=None if token_type_ids is None else token_type_ids.to(device), output_attentions=True)
        explained = {index: attention_terms(modules[index], **vars(calls[index]), layer=index) for index in chosen}
    slots = calls[chosen[0]].slots
    buckets = None if slots is None else slots.index + (slots.first - slots.span)     # (L, L): delta(i, j)
    talking = bool(modules[chosen[0]].talking_head)
    return AttentionExplanation(explained, None if buckets is None else buckets.cpu(), input_ids.cpu(),
                                attention_mask.long().cpu(), num_layers, modules[chosen[0]].heads, talking)


def explain_attention(model: torch.nn.Module, texts: str | Sequence[str], tokenizer: Any = None,
                      layers: int | Sequence[int] | None = None, *, max_length: int | None = None) -> AttentionExplanation:
    """Split every chosen layer's attention into content-to-content, content-to-position and
    position-to-content terms for each text.

    model: any fastdeberta model (a task model is explained through its encoder).
    texts: a string or a list of strings (padded together; padding is masked and reported in
        ``attention_mask``). tokenizer: defaults to the model's own.
    layers: None for every layer, an index or a list of indices (negative: from the end).
    max_length: the most tokens (with [CLS]/[SEP]) a text may have; default the model's limit.
        Longer texts are refused rather than silently cut.

    Returns an ``AttentionExplanation``: ``.layers[i].c2c / .c2p / .p2c / .scores / .probs``
    (B, H, L, L), ``.position_buckets`` (L, L), ``.tokens`` and ``.offsets`` per text.
    """
    from ..inference.embed import _check_texts, default_max_length, resolve_tokenizer

    items, _ = _check_texts(texts)
    if not items:
        raise InvalidInputError("texts is empty: pass a string or a non-empty list of strings")
    for i, text in enumerate(items):
        if not text.strip():
            raise InvalidInputError(f"text {i} is empty ({text!r}); there is no attention to explain")
    tokenizer = resolve_tokenizer(model, tokenizer)
    limit = max_length or default_max_length(model, tokenizer)
    with warnings.catch_warnings():          # a text that is too long gets the error below, not a warning
        warnings.simplefilter("ignore", UserWarning)
        encoded = tokenizer(items, padding=True, truncation=False, return_offsets_mapping=True, return_tensors="pt",
                            max_length=limit)
    lengths = encoded["attention_mask"].sum(dim=1).tolist()
    for i, n in enumerate(lengths):
        if n > limit:
            raise InvalidInputError(
                f"text {i} has {n} tokens (with [CLS]/[SEP]) but this model takes at most {limit}; "
                f"shorten it (it starts {items[i][:60]!r})")
    types = encoded.get("token_type_ids") if model.config.type_vocab_size > 0 else None
    explanation = decompose_attention(model, encoded["input_ids"], encoded["attention_mask"], types, layers)
    explanation.texts = items
    explanation.tokens = [tokenizer.convert_ids_to_tokens(ids[:n].tolist())
                          for ids, n in zip(encoded["input_ids"], lengths)]
    explanation.offsets = [[(int(a), int(b)) for a, b in offsets[:n].tolist()]
                           for offsets, n in zip(encoded["offset_mapping"], lengths)]
    return explanation
