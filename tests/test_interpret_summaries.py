"""Per-head summaries (fastdeberta.interpret.summaries) on hand-built attention whose answers are
known in advance, and order sensitivity on a real model (layer 0 of a model without absolute
positions: the content term alone is exactly order-blind, the position terms are not)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import randomize_, variant

from fastdeberta import DebertaConfig, DebertaModel, InvalidInputError
from fastdeberta.interpret import decompose_attention
from fastdeberta.interpret.decompose import AttentionExplanation, LayerAttention
from fastdeberta.interpret.summaries import (
    distance_profile,
    entropy,
    key_offsets,
    order_sensitivity,
    positional_share,
    special_token_mass,
    summarize,
    term_shares,
    uniform_distance_profile,
)


def _layer(c2c, c2p=None, p2c=None, probs=None) -> LayerAttention:
    terms = [t for t in (c2c, c2p, p2c) if t is not None]
    scores = sum(terms)
    return LayerAttention(0, c2c, c2p, p2c, scores, scores.softmax(-1) if probs is None else probs)


def test_term_shares_are_covariance_shares_within_rows():
    row = torch.tensor([1.0, 2.0, 3.0, 6.0])
    c2c = row.expand(1, 1, 4, 4).clone()
    # head 0: c2p equals c2c -> 1/2 each; c2p = -c2c / 2 -> c2c 2, c2p -1 (cov(c, c/2) / var(c/2) = 2)
    shares = term_shares(_layer(c2c, c2p=c2c.clone()), torch.ones(1, 4, dtype=torch.long))
    assert torch.allclose(shares["c2c"], torch.tensor([0.5])) and torch.allclose(shares["c2p"], torch.tensor([0.5]))
    shares = term_shares(_layer(c2c, c2p=-c2c / 2), torch.ones(1, 4, dtype=torch.long))
    assert torch.allclose(shares["c2c"], torch.tensor([2.0])) and torch.allclose(shares["c2p"], torch.tensor([-1.0]))
    # a per-row constant does not move attention: it has no share
    offset = torch.arange(4.0)[:, None].expand(4, 4)[None, None] * 10
    shares = term_shares(_layer(c2c, p2c=offset.clone()), torch.ones(1, 4, dtype=torch.long))
    assert torch.allclose(shares["c2c"], torch.tensor([1.0])) and torch.allclose(shares["p2c"], torch.tensor([0.0]))
    assert torch.allclose(positional_share(shares), torch.tensor([0.0]))


def test_term_shares_ignore_padding():
    c2c = torch.tensor([1.0, 2.0, 3.0, 6.0]).expand(1, 1, 4, 4).clone()
    c2p = c2c.clone()
    c2p[..., 3] = 100.0            # the padded key: must not count
    mask = torch.tensor([[1, 1, 1, 0]])
    shares = term_shares(_layer(c2c, c2p=c2p), mask)
    assert torch.allclose(shares["c2c"], torch.tensor([0.5])) and torch.allclose(shares["c2p"], torch.tensor([0.5]))


def _explanation(probs, tokens=None, buckets=None) -> AttentionExplanation:
    B, H, L, _ = probs.shape
    layer = LayerAttention(0, torch.zeros_like(probs), None, None, torch.zeros_like(probs), probs)
    return AttentionExplanation({0: layer}, buckets, torch.zeros(B, L, dtype=torch.long),
                                torch.ones(B, L, dtype=torch.long), 1, H, tokens=tokens)


def test_distance_profile_entropy_and_special_tokens_of_known_heads():
    L = 5
    previous = torch.zeros(L, L)                  # head 0: every token looks at the one before ([CLS] at itself)
    previous[0, 0] = 1
    previous[torch.arange(1, L), torch.arange(L - 1)] = 1
    to_cls = torch.zeros(L, L)                     # head 1: every token looks at [CLS]
    to_cls[:, 0] = 1
    uniform = torch.full((L, L), 1 / L)            # head 2
    probs = torch.stack([previous, to_cls, uniform])[None]          # (1, 3, L, L)
    tokens = [["[CLS]", "▁Hi", ",", "▁you", "[SEP]"]]
    explanation = _explanation(probs, tokens)
    offsets = key_offsets(explanation)
    values, mass = distance_profile(explanation.layers[0], offsets, explanation.attention_mask)
    assert values == list(range(-(L - 1), L))
    assert mass[0, values.index(-1)] == pytest.approx(4 / 5) and mass[0, values.index(0)] == pytest.approx(1 / 5)
    assert torch.allclose(mass.sum(dim=1), torch.ones(3))
    nats, normalised = entropy(explanation.layers[0], explanation.attention_mask)
    assert nats[0] == pytest.approx(0.0, abs=1e-6) and normalised[2] == pytest.approx(1.0)
    assert nats[2] == pytest.approx(math.log(L))
    masses = special_token_mass(explanation.layers[0], tokens, explanation.attention_mask)
    assert masses["[CLS]"][1] == pytest.approx(1.0)
    assert masses["[CLS]"][0] == pytest.approx(2 / 5)               # [CLS] itself and "▁Hi" look at [CLS]
    assert masses["punctuation"][0] == pytest.approx(1 / 5)         # "▁you" looks at ","
    assert masses["[SEP]"][2] == pytest.approx(1 / 5)
    summary = summarize(explanation)
    assert {"layer": 0, "head": 1, "target": "[CLS]", "mass": 1.0} in summary["special_token_heads"]
    assert summary["layers"][0]["heads"][0]["peak_offset"] == -1


def test_distance_profile_uses_the_buckets():
    # bucketed: every distance past 1 shares one bucket (offset +-2)
    L = 6
    ids = torch.arange(L)
    buckets = (ids[:, None] - ids[None, :]).clamp(-2, 2)
    probs = torch.zeros(1, 1, L, L)
    probs[0, 0, :, 0] = 1                      # everyone looks at token 0
    explanation = _explanation(probs, buckets=buckets)
    values, mass = distance_profile(explanation.layers[0], key_offsets(explanation), explanation.attention_mask)
    assert values == [-2, -1, 0, 1, 2]
    # queries 0, 1 at offsets 0, -1; queries 2..5 all in the far bucket -2
    assert mass[0].tolist() == pytest.approx([4 / 6, 1 / 6, 1 / 6, 0, 0])
    # uniform attention: key counts per bucket (10, 5, 6, 5, 10 of the 36 pairs), the baseline to read against
    values, uniform = uniform_distance_profile(key_offsets(explanation), explanation.attention_mask)
    assert uniform.tolist() == pytest.approx([10 / 36, 5 / 36, 6 / 36, 5 / 36, 10 / 36])


def test_order_sensitivity_separates_content_from_position():
    config = DebertaConfig.from_dict(variant("v3"))
    model = randomize_(DebertaModel(config)).eval()
    ids = torch.tensor([[1, 10, 11, 12, 13, 14, 15, 2]])
    reordered = torch.tensor([[1, 14, 12, 15, 10, 13, 11, 2]])
    first, second = decompose_attention(model, ids), decompose_attention(model, reordered)
    result = order_sensitivity(first, second)
    assert result["aligned"] == 8 and result["unaligned_first"] == []
    layer0 = result["layers"][0]
    assert float(layer0["c2c"].max()) < 1e-5             # content alone: the same attention in any order
    assert float(layer0["c2p"].min()) > 1e-3 and float(layer0["attention"].min()) > 1e-3
    same = order_sensitivity(first, decompose_attention(model, ids))
    assert float(same["layers"][1]["attention"].max()) < 1e-6
    with pytest.raises(InvalidInputError, match="share 0 token"):
        order_sensitivity(first, decompose_attention(model, torch.tensor([[20, 21, 22]])))
