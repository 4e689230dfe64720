"""The fast attention path against the reference equations: long inputs in query blocks, gradients,
gradient checkpointing, torch.compile without graph breaks, torch.export, reduced precision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastdeberta import DebertaForMaskedLM, DebertaModel
from fastdeberta.config import preset_config
from fastdeberta.model.positions import position_slots, relative_positions
from fastdeberta.quantize import quantize_int8

VOCAB = 300


def tiny(**overrides):
    base = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=128, max_position_embeddings=512, position_buckets=32,
                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(overrides)
    return preset_config("deberta-v3-xsmall", **base)


V1 = dict(model_type="deberta", position_buckets=-1, share_att_key=False, norm_rel_ebd="none")
VARIANTS = {"v3-buckets": {}, "v1-diagonal": V1, "v2-separate-proj": dict(share_att_key=False)}


def batch(length: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (2, length), generator=g)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, length // 3:] = 0
    return ids, mask


def run(model, ids, mask, impl, block_elements=None):
    model.set_attention_implementation(impl)
    for layer in model.base_model.encoder.layer:
        attn = layer.attention.self
        attn.block_elements = block_elements or type(attn).block_elements
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights)[mask.bool()].sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("length", [40, 300])
def test_fast_blocked_matches_reference_with_gradients(variant, length):
    torch.manual_seed(0)
    model = DebertaModel(tiny(**VARIANTS[variant])).train()
    ids, mask = batch(length)
    # Force query blocks of 64 rows so the blocked path runs at these small sizes.
    fast, fast_grads = run(model, ids, mask, "fast", block_elements=2 * 4 * 64 * length)
    ref, ref_grads = run(model, ids, mask, "reference")
    keep = mask.bool()
    assert (fast - ref)[keep].abs().max() < 1e-5
    assert fast_grads.keys() == ref_grads.keys()
    assert len(ref_grads) == len(list(model.parameters())), "every parameter must get a gradient"
    for name, g in ref_grads.items():
        # relative to the largest entry; absolute floor for gradients that are zero in exact
        # arithmetic (e.g. the c2p key bias shifts every score of a row equally)
        assert (fast_grads[name] - g).abs().max() <= 1e-4 * g.abs().max() + 1e-7, name


def set_attention(model, **attrs):
    for layer in model.base_model.encoder.layer:
        for name, value in attrs.items():
            setattr(layer.attention.self, name, value)


def forward(model, ids, mask, impl):
    model.set_attention_implementation(impl)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("variant", sorted(VARIANTS) + ["c2p-only", "p2c-only"])
@pytest.mark.parametrize("block_elements", [1 << 24, 2 * 4 * 32 * 400])
def test_band_path_for_long_inputs_matches_reference(variant, block_elements):
    # Small tables (max_position 64) make distances saturate after ~63, so 400 tokens take the
    # band + far-field path; the small block budget also splits the queries into blocks.
    extra = {"c2p-only": dict(pos_att_type=["c2p"]), "p2c-only": dict(pos_att_type=["p2c"])}.get(variant, {})
    overrides = dict(VARIANTS.get(variant, {}), max_position_embeddings=64, position_buckets=16, **extra)
    if overrides.get("model_type") == "deberta":
        overrides.update(max_relative_positions=48, position_buckets=-1)
    torch.manual_seed(0)
    model = DebertaModel(tiny(**overrides)).eval()
    ids, mask = batch(400)
    slots = model.encoder.position_slots(400, torch.device("cpu"))
    assert slots.reach is not None and slots.reach < 100
    set_attention(model, band_min_factor=0.0, band_tile=32, block_elements=block_elements)
    fast = forward(model, ids, mask, "fast")
    set_attention(model, band_min_factor=1e9)                     # the tiled path, same model
    tiled = forward(model, ids, mask, "fast")
    ref = forward(model, ids, mask, "reference")
    keep = mask.bool()
    assert (fast - ref)[keep].abs().max() < 1e-5
    assert (tiled - ref)[keep].abs().max() < 1e-5


@pytest.mark.parametrize("length", [1, 2, 3, 7, 8, 29])
@pytest.mark.parametrize("tile", [2, 7, 64])
def test_tiles_that_do_not_divide_the_length(length, tile):
    torch.manual_seed(0)
    model = DebertaModel(tiny()).eval()
    ids, mask = batch(length)
    set_attention(model, tile=tile)
    keep = mask.bool()
    assert (forward(model, ids, mask, "fast") - forward(model, ids, mask, "reference"))[keep].abs().max() < 1e-5


def test_training_after_inference_on_the_same_model():
    # Position indices cached under inference_mode must not leak into a later backward pass.
    torch.manual_seed(0)
    model = DebertaModel(tiny())
    ids, mask = batch(40)
    with torch.inference_mode():
        model.eval()(input_ids=ids, attention_mask=mask)
    model.train()
    model(input_ids=ids, attention_mask=mask).last_hidden_state.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_diagonal_and_gather_slots_are_both_exercised():
    # v3 buckets of 32: identity up to distance 16, so 40 tokens need the gather path and 10 do not.
    assert position_slots(10, span=32, buckets=32, max_position=512).diagonal
    assert not position_slots(40, span=32, buckets=32, max_position=512).diagonal
    slots = position_slots(40, span=32, buckets=32, max_position=512)
    rel = relative_positions(40, 40, buckets=32, max_position=512)
    assert torch.equal(slots.index + slots.first, torch.clamp(rel + 32, 0, 63))
    assert slots.count == int(slots.index.max()) + 1


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = DebertaModel(tiny()).train()
    ids, mask = batch(50)
    _, plain = run(model, ids, mask, "fast")
    model.gradient_checkpointing_enable()
    _, ckpt = run(model, ids, mask, "fast")
    model.gradient_checkpointing_disable()
    for name, g in plain.items():
        assert torch.allclose(ckpt[name], g, atol=1e-6, rtol=1e-5), name


def test_long_input_runs_in_blocks():
    torch.manual_seed(0)
    model = DebertaModel(tiny(num_hidden_layers=1)).eval()
    ids = torch.randint(4, VOCAB, (1, 4096))
    with torch.inference_mode():
        out = model(input_ids=ids).last_hidden_state
        # the first 200 tokens attend to all 4096: compare one block against the reference path
        model.set_attention_implementation("reference")
        ref = model(input_ids=ids[:, :600]).last_hidden_state
        model.set_attention_implementation("fast")
        short = model(input_ids=ids[:, :600]).last_hidden_state
    assert out.shape == (1, 4096, 64) and torch.isfinite(out).all()
    assert (short - ref).abs().max() < 1e-5


def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    model = DebertaModel(tiny()).eval()
    ids, mask = batch(40)
    with torch.no_grad():
        eager = model(input_ids=ids, attention_mask=mask).last_hidden_state
        compiled = torch.compile(model, fullgraph=True)(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (compiled - eager)[mask.bool()].abs().max() < 1e-4


def test_torch_export_base_model():
    torch.manual_seed(0)
    model = DebertaModel(tiny()).eval()
    ids, mask = batch(40)
    program = torch.export.export(model, (), {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        exported = program.module()(input_ids=ids, attention_mask=mask).last_hidden_state
        eager = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (exported - eager)[mask.bool()].abs().max() < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_has_no_nan_and_tracks_fp32(dtype):
    torch.manual_seed(0)
    model = DebertaForMaskedLM(tiny()).eval()
    # Large embeddings push pre-LayerNorm activations far past fp16's range for squares.
    with torch.no_grad():
        model.deberta.embeddings.word_embeddings.weight.mul_(300.0)
    ids, mask = batch(60)
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask).logits
        low = model.to(dtype)(input_ids=ids, attention_mask=mask).logits.float()
    assert torch.isfinite(low).all()
    keep = mask.bool()
    cos = F.cosine_similarity(low[keep], ref[keep], dim=-1)
    assert cos.min() > 0.98


def test_int8_quantisation_tracks_fp32():
    torch.manual_seed(0)
    model = DebertaModel(tiny(hidden_size=128, intermediate_size=256)).eval()
    int8 = quantize_int8(model)
    assert any("quantized" in type(m).__module__ for m in int8.modules())
    assert not any("quantized" in type(m).__module__ for m in model.modules()), "original left untouched"
    ids, mask = batch(50)
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = int8(input_ids=ids, attention_mask=mask).last_hidden_state
    cos = F.cosine_similarity(out[mask.bool()], ref[mask.bool()], dim=-1)
    assert cos.min() > 0.99


@pytest.mark.parametrize("length", [40, 400])
def test_reused_inference_buffers_give_the_same_result(length):
    # Under no_grad the encoder hands every layer the same scratch buffers for the bias and the
    # position tables; with autograd on, each layer allocates its own. Both must agree, across
    # layers, query blocks (small block budget) and the band path (400 tokens, max_position 64).
    torch.manual_seed(0)
    model = DebertaModel(tiny(num_hidden_layers=3, max_position_embeddings=64, position_buckets=16)).eval()
    set_attention(model, band_min_factor=0.0, band_tile=32, block_elements=2 * 4 * 32 * length)
    ids, mask = batch(length)
    with torch.no_grad():
        reused = model(input_ids=ids, attention_mask=mask).last_hidden_state
        again = model(input_ids=ids.flip(1), attention_mask=mask).last_hidden_state   # stale data?
        reused_again = model(input_ids=ids, attention_mask=mask).last_hidden_state
    fresh = model(input_ids=ids, attention_mask=mask).last_hidden_state.detach()
    keep = mask.bool()
    assert (reused - fresh)[keep].abs().max() < 1e-5
    assert torch.equal(reused, reused_again) and not torch.equal(again, reused)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_training_attention_with_dropout_matches_reference(variant):
    # In training the fast path computes softmax(q k^T * scale + bias) v itself (SDPA has no CPU kernel
    # with dropout or a bias gradient); its attention dropout must be the reference's: same seed, same
    # dropped entries, same outputs and gradients at real tokens. (v1 here without talking heads.)
    torch.manual_seed(0)
    model = DebertaModel(tiny(**VARIANTS[variant], attention_probs_dropout_prob=0.3)).train()
    ids, mask = batch(40)
    results = {}
    for impl in ("fast", "reference"):
        torch.manual_seed(7)
        results[impl] = run(model, ids, mask, impl)
    (fast, fast_grads), (ref, ref_grads) = results["fast"], results["reference"]
    torch.manual_seed(7)
    model.set_attention_implementation("fast")
    model.eval()
    with torch.no_grad():
        no_dropout = model(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert (fast - no_dropout)[keep].abs().max() > 1e-2, "attention dropout must act in training"
    assert (fast - ref)[keep].abs().max() < 1e-5
    for name, g in ref_grads.items():
        assert (fast_grads[name] - g).abs().max() <= 1e-4 * g.abs().max() + 1e-7, name
