"""Per-head numbers that answer questions about an ``AttentionExplanation``.

Every statistic is taken over the real (query, key) pairs only: padding is excluded, and a batch of
several texts is pooled (each real query row counts once).

* ``term_shares``: the share of each term in the score variance *within each query row* -- the
  softmax ignores anything constant along a row, so only the variation across keys decides where a
  head looks. With s = c2c + c2p + p2c and every quantity centred per row,
  share(t) = sum cov(t, s) / sum var(s); the shares add up to 1 (a term that works against the
  others has a negative share, and the others then exceed 1 together).
* ``positional_share``: share(c2p) + share(p2c): near 1, the head attends by relative position;
  near 0, by content.
* ``distance_profile``: the attention mass per key offset (key bucket minus query, DeBERTa's
  -delta(i, j): -1 = the previous token), averaged over query rows.
* ``special_token_mass``: attention mass on [CLS], on [SEP] and on punctuation tokens.
* ``entropy``: mean entropy of the attention rows, in nats and divided by log(number of keys).
* ``order_sensitivity``: two texts with the same tokens in another order (e.g. reordered words):
  the attention of each head, tokens aligned, compared as total variation distance (0: the head
  attends to the same tokens whatever their order; 1: to entirely different ones); also per term,
  for the attention each term alone would give.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InvalidInputError
from .decompose import TERMS, AttentionExplanation, LayerAttention

__all__ = ["distance_profile", "entropy", "key_offsets", "order_sensitivity", "positional_share",
           "special_token_mass", "summarize", "term_attention", "term_shares", "uniform_distance_profile"]

# A head "attends mostly" to a token kind / "is positional" from this share on.
MOSTLY = 0.5


def _pair_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) -> (B, 1, L, L) bool: query and key are both real tokens."""
    real = attention_mask.bool()
    return real[:, None, :, None] & real[:, None, None, :]


def _row_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) -> (B, 1, L) bool: real query rows."""
    return attention_mask.bool()[:, None, :]


def term_shares(layer: LayerAttention, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """{term: (H,) share of the within-row score variance}; the shares of a head add up to 1."""
    pair = _pair_mask(attention_mask).to(layer.c2c.device)
    weight = pair.double()
    keys = weight.sum(dim=-1, keepdim=True).clamp_min(1.0)                     # (B, 1, L, 1)
    centred = {}
    for name, term in layer.terms.items():
        term = term.double().masked_fill(~pair, 0.0)
        centred[name] = (term - term.sum(dim=-1, keepdim=True) / keys) * weight   # (B, H, L, L)
    total = sum(centred.values())
    variance = (total * total).sum(dim=(0, 2, 3))                             # (H,)
    return {name: ((c * total).sum(dim=(0, 2, 3)) / variance.clamp_min(1e-30)).float()
            for name, c in centred.items()}


def positional_share(shares: dict[str, torch.Tensor]) -> torch.Tensor:
    """(H,) share(c2p) + share(p2c) (zeros for a model without position terms)."""
    return sum((shares[name] for name in ("c2p", "p2c") if name in shares), torch.zeros_like(shares["c2c"]))


def key_offsets(explanation: AttentionExplanation) -> torch.Tensor:
    """(L, L) long: key offset from the query as the position terms see it (bucketed, clipped:
    -delta(i, j)); plain j - i for a model without relative attention."""
    if explanation.position_buckets is not None:
        return -explanation.position_buckets
    ids = torch.arange(explanation.input_ids.shape[1])
    return ids[None, :] - ids[:, None]


def distance_profile(layer: LayerAttention, offsets: torch.Tensor,
                     attention_mask: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Attention mass per key offset: (the offsets present, sorted; (H, K) mean mass per query row)."""
    return _mass_by_offset(layer.probs.float().cpu(), offsets, attention_mask)


def uniform_distance_profile(offsets: torch.Tensor, attention_mask: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The profile of a head attending uniformly to every real key: the baseline a profile is read
    against (outer buckets gather many distances, so they hold more mass even under uniform attention)."""
    pair = _pair_mask(attention_mask)
    uniform = pair.float() / pair.sum(dim=-1, keepdim=True).clamp_min(1)      # (B, 1, L, L)
    values, mass = _mass_by_offset(uniform, offsets, attention_mask)
    return values, mass[0]


def _mass_by_offset(probs: torch.Tensor, offsets: torch.Tensor,
                    attention_mask: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    pair = _pair_mask(attention_mask)                                          # (B, 1, L, L)
    probs = probs.masked_fill(~pair, 0.0)                                      # (B, H, L, L)
    values = sorted(set(offsets[pair.any(dim=0)[0]].tolist()))                 # offsets of real pairs
    position = torch.searchsorted(torch.as_tensor(values), offsets).clamp(max=len(values) - 1)   # (L, L)
    summed = probs.sum(dim=0).flatten(1)                                       # (H, L * L)
    mass = torch.zeros(probs.shape[1], len(values)).index_add_(1, position.flatten(), summed)
    rows = _row_mask(attention_mask).sum().clamp_min(1)
    return values, mass / rows


def _is_punctuation(token: str) -> bool:
    text = token.lstrip("\u2581\u0120#")        # SentencePiece / byte-level BPE word markers, WordPiece "##"
    return bool(text) and all(unicodedata.category(c).startswith(("P", "S")) for c in text)


def special_token_mass(layer: LayerAttention, tokens: Sequence[Sequence[str]],
                       attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"[CLS]", "[SEP]", "punctuation": (H,) mean attention mass on those keys per query row}."""
    kinds = {"[CLS]": lambda t: t == "[CLS]", "[SEP]": lambda t: t == "[SEP]", "punctuation": _is_punctuation}
    pair = _pair_mask(attention_mask)
    probs = layer.probs.float().cpu().masked_fill(~pair, 0.0)
    rows = _row_mask(attention_mask).sum().clamp_min(1)
    out = {}
    for kind, test in kinds.items():
        keys = torch.zeros(attention_mask.shape, dtype=torch.bool)             # (B, L)
        for b, row in enumerate(tokens):
            keys[b, :len(row)] = torch.as_tensor([test(t) for t in row], dtype=torch.bool)
        out[kind] = (probs * keys[:, None, None, :]).sum(dim=(0, 2, 3)) / rows
    return out


def entropy(layer: LayerAttention, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(H,) mean row entropy in nats, and the same divided by log(keys in the row) (0 = one key, 1 = uniform)."""
    pair = _pair_mask(attention_mask)
    probs = layer.probs.double().cpu().clamp_min(0.0).masked_fill(~pair, 0.0)
    per_row = -(probs * probs.clamp_min(1e-300).log()).sum(dim=-1)            # (B, H, L)
    keys = pair.sum(dim=-1).double()                                           # (B, 1, L)
    rows = _row_mask(attention_mask)
    normalised = per_row / keys.clamp_min(2).log()
    count = rows.sum().clamp_min(1)
    mean = lambda x: (x * rows).sum(dim=(0, 2)) / count                        # noqa: E731
    return mean(per_row).float(), mean(normalised).float()


def term_attention(term: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The attention one term alone would give: softmax over the real keys of each row, (B, H, L, L)."""
    pair = _pair_mask(attention_mask).to(term.device)
    return torch.softmax(term.float().masked_fill(~pair, float("-inf")), dim=-1).nan_to_num(0.0)


# ----------------------------------------------------------------------------- comparing two inputs
def _align(first: Sequence[Any], second: Sequence[Any]) -> list[tuple[int, int]]:
    """Pairs (i, j): the k-th occurrence of a token in ``first`` with its k-th occurrence in ``second``."""
    where: dict[Any, list[int]] = {}
    for j, token in enumerate(second):
        where.setdefault(token, []).append(j)
    used: dict[Any, int] = {}
    pairs = []
    for i, token in enumerate(first):
        k = used.get(token, 0)
        if k < len(where.get(token, ())):
            pairs.append((i, where[token][k]))
            used[token] = k + 1
    return pairs


def _tokens_of(explanation: AttentionExplanation, index: int) -> list[Any]:
    n = explanation.lengths[index]
    if explanation.tokens is not None:
        return list(explanation.tokens[index])
    return explanation.input_ids[index, :n].tolist()


def order_sensitivity(first: AttentionExplanation, second: AttentionExplanation, *, index_first: int = 0,
                      index_second: int = 0) -> dict[str, Any]:
    """How much each head's attention changes between two inputs with the same tokens in another order.

    Tokens are aligned by identity (the k-th occurrence of a token with its k-th occurrence); for each
    aligned query, the attention over the aligned keys is compared as total variation distance,
    averaged over queries. Returns {"aligned": n, "unaligned_first": [...], "unaligned_second": [...],
    "layers": {layer: {"attention": (H,), "c2c": (H,), ...}}} where each term's entry compares the
    attention that term alone gives.
    """
    tokens_a, tokens_b = _tokens_of(first, index_first), _tokens_of(second, index_second)
    pairs = _align(tokens_a, tokens_b)
    if len(pairs) < 2:
        raise InvalidInputError(f"the two inputs share {len(pairs)} token(s); order sensitivity compares the "
                                "same tokens in two orders (e.g. a sentence and its words reordered)")
    common = sorted(set(first.layers) & set(second.layers))
    if not common:
        raise InvalidInputError("the two explanations have no captured layer in common")
    ia = torch.as_tensor([i for i, _ in pairs])
    ib = torch.as_tensor([j for _, j in pairs])

    def aligned(matrix: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        picked = matrix[0][:, order][:, :, order].float().cpu()               # (H, n, n)
        return picked / picked.sum(dim=-1, keepdim=True).clamp_min(1e-12)     # renormalise over aligned keys

    mask_a = first.attention_mask[index_first:index_first + 1]
    mask_b = second.attention_mask[index_second:index_second + 1]
    layers = {}
    for number in common:
        la, lb = first.layers[number].select(index_first), second.layers[number].select(index_second)
        matrices = {"attention": (la.probs, lb.probs)}
        for name in TERMS:
            ta, tb = getattr(la, name), getattr(lb, name)
            if ta is not None and tb is not None:
                matrices[name] = (term_attention(ta, mask_a), term_attention(tb, mask_b))
        layers[number] = {name: 0.5 * (aligned(a, ia) - aligned(b, ib)).abs().sum(dim=-1).mean(dim=-1)
                          for name, (a, b) in matrices.items()}
    aligned_a, aligned_b = {i for i, _ in pairs}, {j for _, j in pairs}
    return {"aligned": len(pairs),
            "unaligned_first": [t for i, t in enumerate(tokens_a) if i not in aligned_a],
            "unaligned_second": [t for j, t in enumerate(tokens_b) if j not in aligned_b],
            "layers": layers}


# ----------------------------------------------------------------------------- one JSON document
def _r(value: float) -> float:
    return round(float(value), 4) if math.isfinite(float(value)) else None


def summarize(explanation: AttentionExplanation, compare: AttentionExplanation | None = None) -> dict[str, Any]:
    """Every summary above for every captured layer and head, as a JSON-ready dict.

    compare: an explanation of the same text with another word order: adds "order_sensitivity".
    """
    mask = explanation.attention_mask
    offsets = key_offsets(explanation)
    layers, positional, special = [], [], []
    for number, layer in explanation.layers.items():
        shares = term_shares(layer, mask)
        pos_share = positional_share(shares)
        nats, normalised = entropy(layer, mask)
        values, profile = distance_profile(layer, offsets, mask)
        masses = special_token_mass(layer, explanation.tokens, mask) if explanation.tokens is not None else {}
        heads = []
        for h in range(layer.probs.shape[1]):
            head = {"head": h, "share": {name: _r(s[h]) for name, s in shares.items()},
                    "positional_share": _r(pos_share[h]), "entropy": _r(nats[h]),
                    "normalized_entropy": _r(normalised[h]),
                    "peak_offset": values[int(profile[h].argmax())], "distance_profile": [_r(x) for x in profile[h]],
                    "special_mass": {kind: _r(m[h]) for kind, m in masses.items()}}
            heads.append(head)
            if pos_share[h] >= MOSTLY:
                positional.append({"layer": number, "head": h, "positional_share": _r(pos_share[h]),
                                   "peak_offset": head["peak_offset"]})
            for kind, m in masses.items():
                if m[h] >= MOSTLY:
                    special.append({"layer": number, "head": h, "target": kind, "mass": _r(m[h])})
        layers.append({"layer": number, "mean_share": {name: _r(s.mean()) for name, s in shares.items()},
                       "heads": heads})
    positional.sort(key=lambda x: -x["positional_share"])
    summary: dict[str, Any] = {
        "model": {"layers": explanation.num_layers, "heads": explanation.num_heads,
                  "terms": list(explanation.term_names), "talking_head": explanation.talking_head},
        "texts": explanation.texts, "tokens": explanation.tokens,
        "distance_offsets": values,
        "distance_uniform": [_r(x) for x in uniform_distance_profile(offsets, mask)[1]],
        "layers": layers,
        "positional_heads": positional,
        "special_token_heads": special,
        "definitions": {
            "share": "share of the within-row variance of the pre-softmax score explained by each term "
                     "(cov(term, score) / var(score), per query row, pooled); shares add up to 1",
            "positional_share": "share of c2p + share of p2c; >= 0.5 lists the head in positional_heads",
            "distance_profile": "mean attention mass per key offset (distance_offsets: key minus query, "
                                "bucketed as the model does; -1 = previous token); distance_uniform: the same "
                                "for uniform attention, the baseline to read it against",
            "special_mass": "mean attention mass on [CLS], [SEP] and punctuation keys; >= 0.5 lists the head "
                            "in special_token_heads",
            "entropy": "mean row entropy in nats; normalized_entropy divides by log(number of keys)",
        },
    }
    if compare is not None:
        result = order_sensitivity(explanation, compare)
        summary["order_sensitivity"] = {
            "compared_text": compare.texts[0] if compare.texts else None, "aligned_tokens": result["aligned"],
            "unaligned": [result["unaligned_first"], result["unaligned_second"]],
            "definition": "total variation distance between the head's attention on the two inputs, tokens "
                          "aligned (0 = same attention whatever the order, 1 = entirely different); per term: "
                          "the attention that term alone gives",
            "layers": [{"layer": number, **{name: [_r(x) for x in values_] for name, values_ in per.items()}}
                       for number, per in result["layers"].items()],
        }
    return summary
