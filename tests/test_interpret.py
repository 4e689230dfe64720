"""Attention decomposition (fastdeberta.interpret): exact reconstruction of the model's own
pre-softmax scores and of transformers' attention probabilities for every config variant, position
buckets, term ablation, bertviz export and bad input.

Tolerances: scores and probs against our own reference path: bit-identical (torch.equal), padded
positions included; probs against transformers: atol = rtol = 1e-4 (fp32, as in test_parity);
the three terms against their sum: atol 1e-5.
"""

from __future__ import annotations

import pytest
import torch
from conftest import LONG, VARIANTS, assert_close, hf_model, make_inputs, valid_positions, variant

import fastdeberta
from fastdeberta.interpret import decompose_attention, switch_off_terms
from fastdeberta.model.attention import DisentangledSelfAttention


def _saved_pair(name: str, folder):
    """(transformers model, the same weights loaded by fastdeberta), both in eval mode."""
    cfg = variant(name)
    hf = hf_model(cfg, "base")
    hf.save_pretrained(folder)
    return cfg, hf, fastdeberta.from_pretrained(folder, task="base", attention="reference")


def _own_pre_softmax_scores(model, inputs, monkeypatch) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The scores the model's reference path hands to softmax (one per layer), recorded by wrapping
    torch.softmax for the duration of one forward, and its output_attentions."""
    recorded: list[torch.Tensor] = []
    real_softmax = torch.softmax

    def recording_softmax(x, *args, **kwargs):
        recorded.append(x.detach().clone())
        return real_softmax(x, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch, "softmax", recording_softmax)
        with torch.no_grad():
            out = model(**inputs, output_attentions=True)
    return recorded, out.attentions


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_scores_and_probs_reconstruct_the_model_and_transformers(name, tmp_path, single_thread, monkeypatch):
    cfg, hf, ours = _saved_pair(name, tmp_path)
    inputs = make_inputs(cfg, LONG)
    own_scores, own_probs = _own_pre_softmax_scores(ours, inputs, monkeypatch)
    with torch.no_grad():
        hf_probs = hf(**inputs, output_attentions=True).attentions
    ours.set_attention_implementation("fast")          # the explanation does not depend on the path in use
    explanation = decompose_attention(ours, **inputs)

    valid = valid_positions(inputs["attention_mask"])                   # (B, L) real tokens
    pair = valid[:, None, :, None] & valid[:, None, None, :]            # (B, 1, L, L) real pairs
    expected_terms = {"c2c"} | (set(ours.config.attention_terms) if cfg["relative_attention"] else set())
    assert len(explanation.layers) == len(own_scores) == 2
    for i, layer in explanation.layers.items():
        # whole tensors, padded positions included (padded query rows are masked like transformers)
        assert torch.equal(layer.scores, own_scores[i]), f"{name} layer {i}: scores differ"
        assert torch.equal(layer.probs, own_probs[i]), f"{name} layer {i}: probs differ"
        assert_close(layer.probs, hf_probs[i], what=f"{name} layer {i} probs vs transformers")
        assert set(layer.terms) == expected_terms, f"{name}: terms {set(layer.terms)}"
        for absent in {"c2p", "p2c"} - expected_terms:
            assert getattr(layer, absent) is None
        summed = sum(layer.terms.values())
        assert_close(summed.masked_select(pair), layer.scores.masked_select(pair.expand_as(layer.scores)),
                     atol=1e-5, rtol=1e-5, what=f"{name} layer {i}: c2c + c2p + p2c vs scores")
        assert layer.scores.shape == (3, ours.config.num_attention_heads, LONG, LONG)
    # no hook is left behind: a model that is not being explained pays nothing
    for module in ours.modules():
        if isinstance(module, DisentangledSelfAttention):
            assert not module._forward_pre_hooks and not module._forward_hooks


def test_position_buckets_match_transformers_bucketing(tmp_path):
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    _, _, ours = _saved_pair("v3", tmp_path)
    inputs = make_inputs(variant("v3"), LONG)
    buckets = decompose_attention(ours, **inputs).position_buckets
    span = ours.config.relative_span
    ids = torch.arange(LONG)
    distance = ids[:, None] - ids[None, :]
    expected = make_log_bucket_position(distance, ours.config.position_buckets, ours.config.max_position_embeddings)
    assert torch.equal(buckets, expected.long().clamp(-span, span - 1))
    assert buckets[5, 4] == 1 and buckets[4, 5] == -1       # key just before / after the query


def test_position_buckets_without_relative_attention_are_none(tmp_path):
    _, _, ours = _saved_pair("v2-norel", tmp_path)
    explanation = decompose_attention(ours, **make_inputs(variant("v2-norel"), 6))
    assert explanation.position_buckets is None
    assert explanation[0].c2p is None and explanation[0].p2c is None


def test_layer_selection_and_errors(tmp_path):
    _, _, ours = _saved_pair("v3", tmp_path)
    inputs = make_inputs(variant("v3"), 6)
    explanation = decompose_attention(ours, **inputs, layers=[-1])
    assert list(explanation.layers) == [1]
    assert explanation[-1] is explanation.layers[1]
    with pytest.raises(fastdeberta.InvalidInputError, match="layer 0 was not captured"):
        explanation[0]
    with pytest.raises(fastdeberta.InvalidInputError, match="layer 2 is out of range: this model has 2 layers"):
        decompose_attention(ours, **inputs, layers=[2])
    with pytest.raises(fastdeberta.InvalidInputError, match="layers is empty"):
        decompose_attention(ours, **inputs, layers=[])


def test_explanation_keeps_the_callers_training_mode(tmp_path):
    _, _, ours = _saved_pair("v3", tmp_path)
    ours.train()
    decompose_attention(ours, **make_inputs(variant("v3"), 6))
    assert all(module.training for module in ours.modules())


def test_switch_off_terms_changes_only_inside_the_block(tmp_path):
    cfg, _, ours = _saved_pair("v3", tmp_path)
    inputs = make_inputs(cfg, 9)
    valid = valid_positions(inputs["attention_mask"])
    with torch.no_grad():
        before = ours(**inputs).last_hidden_state
        with switch_off_terms(ours, []):            # nothing off: the reference equations, same output
            same = ours(**inputs).last_hidden_state
        with switch_off_terms(ours, ["c2p", "p2c"]):
            no_position = ours(**inputs).last_hidden_state
        after = ours(**inputs).last_hidden_state
    assert_close(same[valid], before[valid], atol=1e-5, rtol=1e-5, what="no term off")
    assert torch.equal(after, before)
    assert (no_position[valid] - before[valid]).abs().max() > 1e-2

    # without position terms, layer 0 of a model with no absolute positions is permutation-equivariant
    ids = inputs["input_ids"][:1]
    order = torch.randperm(ids.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), switch_off_terms(ours, ["c2p", "p2c"]):
        plain = ours(input_ids=ids, output_hidden_states=True).hidden_states[1]
        shuffled = ours(input_ids=ids[:, order], output_hidden_states=True).hidden_states[1]
    assert_close(shuffled[0], plain[0, order], atol=1e-5, rtol=1e-5, what="c2c-only layer 0 under permutation")
    with pytest.raises(fastdeberta.InvalidInputError, match="unknown attention term"):
        with switch_off_terms(ours, ["c2x"]):
            pass


def test_bertviz_export_format(tmp_path):
    cfg, _, ours = _saved_pair("v3", tmp_path)
    inputs = make_inputs(cfg, 8)
    explanation = decompose_attention(ours, **inputs)
    n = int(inputs["attention_mask"][2].sum())                # a padded row
    attention, tokens = explanation.to_bertviz(2)
    assert len(attention) == 2 and len(tokens) == n
    for layer, probs in zip(explanation.layers.values(), attention):
        assert probs.shape == (1, 4, n, n) and probs.dtype == torch.float32
        assert torch.equal(probs[0], layer.probs[2, :, :n, :n])
        assert_close(probs.sum(-1), torch.ones(1, 4, n), atol=1e-5, rtol=0, what="rows sum to 1")
    with pytest.raises(fastdeberta.InvalidInputError, match="index 3 is out of range"):
        explanation.to_bertviz(3)
