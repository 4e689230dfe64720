"""Numerical parity with transformers (the reference) for every architecture variant and head, in both
directions of checkpoint exchange, for forward outputs, losses and gradients; plus the Enhanced Mask
Decoder, which transformers does not implement, checked against a composition of transformers' modules.

Tolerances are magnitude-scaled (conftest.assert_close: every element within atol + rtol * max|expected|):
fp32 outputs atol 1e-5, rtol 5e-5; gradients 1e-4; fast vs reference attention 1e-5.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from conftest import (
    LONG,
    SHORT,
    VARIANTS,
    assert_close,
    assert_relative_error,
    embed_dim,
    hf_class,
    hf_model,
    is_v1,
    magnitude_tolerance,
    make_inputs,
    randomize_,
    uses_emd,
    variant,
)

import fastdeberta
from fastdeberta import TASKS, DebertaConfig, DebertaForMaskedLM

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("single_thread")

ATOL = 1e-4

# (id, task, config overrides)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("base", "base", {}),
    ("mlm-legacy", "masked-lm", {"legacy": True}),
    ("mlm-lm_predictions", "masked-lm", {"legacy": False}),
    ("seq-single", "sequence-classification", {"num_labels": 3}),
    ("seq-multilabel", "sequence-classification",
     {"num_labels": 3, "problem_type": "multi_label_classification"}),
    ("seq-regression", "sequence-classification", {"num_labels": 1}),
    ("token", "token-classification", {"num_labels": 5}),
    ("qa", "question-answering", {}),
    ("multiple-choice", "multiple-choice", {}),
]
CASE_IDS = [c[0] for c in CASES]
CHOICES = 2


def skip_unsupported(cfg: dict[str, Any], task: str) -> None:
    if task == "multiple-choice" and is_v1(cfg):
        pytest.skip("transformers has no DebertaForMultipleChoice (v1)")
    if task == "masked-lm" and cfg.get("legacy") is False and embed_dim(cfg) != cfg["hidden_size"]:
        pytest.skip("the lm_predictions MLM head needs embedding_size == hidden_size (in transformers too)")


def make_labels(task: str, cfg: dict[str, Any], inputs: dict[str, torch.Tensor], seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    mask = inputs["attention_mask"]
    B = mask.shape[0]
    if task == "masked-lm":
        labels = inputs["input_ids"].clone()
        keep = torch.rand(labels.shape, generator=gen) < 0.5
        return {"labels": labels.masked_fill(~keep | (mask == 0), -100)}
    if task == "sequence-classification":
        n = cfg["num_labels"]
        if n == 1:
            return {"labels": torch.randn(B, generator=gen)}
        if cfg.get("problem_type") == "multi_label_classification":
            return {"labels": (torch.rand(B, n, generator=gen) < 0.5).float()}
        return {"labels": torch.randint(0, n, (B,), generator=gen)}
    if task == "token-classification":
        labels = torch.randint(0, cfg["num_labels"], mask.shape, generator=gen)
        return {"labels": labels.masked_fill(mask == 0, -100)}
    if task == "question-answering":
        L = mask.shape[1]
        start = torch.randint(0, max(1, L // 2), (B,), generator=gen)
        return {"start_positions": start, "end_positions": torch.clamp(start + 1, max=L // 2)}
    if task == "multiple-choice":
        return {"labels": torch.randint(0, CHOICES, (B,), generator=gen)}
    return {}


def compare(task: str, ours, ref, *, what: str) -> None:
    """Compare outputs over whole tensors, padded positions included (a padded query row attends
    uniformly to every key in both implementations), and the losses."""
    if task == "base":
        assert_close(ours.last_hidden_state, ref.last_hidden_state, what=f"{what} last_hidden_state")
        assert len(ours.hidden_states) == len(ref.hidden_states) == VARIANTS_LAYERS + 1
        for i, (a, b) in enumerate(zip(ours.hidden_states, ref.hidden_states)):
            assert_close(a, b, what=f"{what} hidden_states[{i}]")
        return
    if task == "question-answering":
        assert_close(ours.start_logits, ref.start_logits, what=f"{what} start_logits")
        assert_close(ours.end_logits, ref.end_logits, what=f"{what} end_logits")
        assert_close(ours.loss, ref.loss, what=f"{what} loss")   # its softmax sees padded positions too
        return
    if task in ("masked-lm", "token-classification"):
        assert_close(ours.logits, ref.logits, what=f"{what} logits")
    else:   # pooled heads: one row per sequence / choice
        logits = ours.logits
        if ref.logits.dim() == 1 and logits.shape == (ref.logits.shape[0], 1):
            logits = logits.view(-1)   # transformers returns regression logits flattened when labels are given
        assert_close(logits, ref.logits, what=f"{what} logits")
    assert ref.loss is not None and ours.loss is not None
    assert_close(ours.loss, ref.loss, what=f"{what} loss")


VARIANTS_LAYERS = 2


def task_inputs(cfg, task, length, *, pad=True, seed=0):
    inputs = make_inputs(cfg, length, seed=seed, pad=pad, choices=CHOICES if task == "multiple-choice" else None)
    return inputs, make_labels(task, cfg, inputs, seed=seed + 1)


# ----------------------------------------------------------------------------------------------------
# transformers saves -> fastdeberta loads


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_transformers_checkpoint_loads_with_same_outputs(variant_name, case, tmp_path):
    _, task, overrides = case
    cfg = variant(variant_name, **overrides)
    skip_unsupported(cfg, task)
    hf = hf_model(cfg, task)
    hf.save_pretrained(tmp_path)

    ours = fastdeberta.from_pretrained(tmp_path, task=task)
    assert isinstance(ours, TASKS[task])
    if task == "masked-lm":
        # transformers' MLM has no EMD and drops the absolute table when saving: no EMD here either.
        assert ours.enhanced_mask_decoder is False
        assert ours.head_layout == ("legacy" if cfg["legacy"] else "lm_predictions")

    runs = [(SHORT, True), (LONG, True)]
    if task == "question-answering":
        runs.append((LONG, False))    # the QA loss sees every position: compare it without padding
    for length, pad in runs:
        inputs, labels = task_inputs(cfg, task, length, pad=pad)
        with torch.no_grad():
            ref = hf(**inputs, **labels, output_hidden_states=True)
        for impl in ("fast", "reference"):
            ours.set_attention_implementation(impl)
            with torch.no_grad():
                out = ours(**inputs, **labels, output_hidden_states=True)
            compare(task, out, ref, what=f"{variant_name}/{task}/L={length}/pad={pad}/{impl}")


def test_attention_probabilities_match_transformers(variant_name, tmp_path):
    cfg = variant(variant_name)
    hf = hf_model(cfg, "base")
    hf.save_pretrained(tmp_path)
    ours = fastdeberta.from_pretrained(tmp_path, task="base", attention="reference")
    for length in (SHORT, LONG):
        inputs = make_inputs(cfg, length)
        with torch.no_grad():
            ref = hf(**inputs, output_attentions=True)
            out = ours(**inputs, output_attentions=True)
        assert len(out.attentions) == len(ref.attentions) == 2
        for a, b in zip(out.attentions, ref.attentions):
            assert_close(a, b, what=f"{variant_name} attentions")   # padded query rows too (uniform)


# ----------------------------------------------------------------------------------------------------
# fastdeberta saves -> transformers loads


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_fastdeberta_checkpoint_loads_in_transformers(variant_name, case, tmp_path):
    _, task, overrides = case
    cfg = variant(variant_name, **overrides)
    skip_unsupported(cfg, task)
    config = DebertaConfig.from_dict(cfg)
    if task == "masked-lm":
        model = DebertaForMaskedLM(config, head_layout="legacy" if cfg["legacy"] else "lm_predictions",
                                   enhanced_mask_decoder=False)
    else:
        model = TASKS[task](config)
    ours = randomize_(model, seed=3).eval()
    ours.save_pretrained(tmp_path)

    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == [hf_class(cfg, task).__name__]

    hf, info = hf_class(cfg, task).from_pretrained(tmp_path, output_loading_info=True)
    hf.eval()
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    assert hf.config.num_labels == getattr(ours, "num_labels", hf.config.num_labels)

    inputs, labels = task_inputs(cfg, task, LONG, pad=True)
    with torch.no_grad():
        ref = hf(**inputs, **labels, output_hidden_states=True)
        out = ours(**inputs, **labels, output_hidden_states=True)
    compare(task, out, ref, what=f"{variant_name}/{task} saved by fastdeberta")


# ----------------------------------------------------------------------------------------------------
# gradients


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("task", ["masked-lm", "sequence-classification"])
def test_gradients_match_transformers(variant_name, task, tmp_path):
    cfg = variant(variant_name, num_labels=3)
    hf = hf_model(cfg, task)
    hf.save_pretrained(tmp_path)
    ours = fastdeberta.from_pretrained(tmp_path, task=task)
    inputs, labels = task_inputs(cfg, task, LONG)

    hf.train()
    hf.zero_grad()
    hf(**inputs, **labels).loss.backward()
    ref = _grads(hf)
    if "cls.predictions.decoder.weight" in ref:   # tied to the word embeddings; counted once here
        ref.setdefault("deberta.embeddings.word_embeddings.weight", ref.pop("cls.predictions.decoder.weight"))

    ours.train()
    for impl in ("fast", "reference"):
        ours.set_attention_implementation(impl)
        ours.zero_grad(set_to_none=True)
        ours(**inputs, **labels).loss.backward()
        params = dict(ours.named_parameters())
        no_grad = [n for n, p in params.items() if p.grad is None]
        assert not no_grad, f"{impl}: parameters without gradient: {no_grad}"
        grads = _grads(ours)
        assert set(grads) == set(ref), (sorted(set(grads) ^ set(ref)))
        for name, g in grads.items():
            assert_close(g, ref[name], atol=1e-4, rtol=1e-4, what=f"{variant_name}/{task}/{impl} grad {name}")
        assert any(float(g.abs().max()) > 0 for n, g in grads.items() if ".encoder.layer.0." in n)


# ----------------------------------------------------------------------------------------------------
# Enhanced Mask Decoder


EMD_VARIANTS = [n for n, c in VARIANTS.items() if uses_emd(c)]


def _emd_reference(hf, inputs, absolute_table: torch.Tensor, layout: str) -> torch.Tensor:
    """EMD computed from transformers' own modules: h = input of the last layer; queries = h + absolute
    positions (projected to hidden size); the last layer applied twice; then the MLM head."""
    mask = inputs["attention_mask"]
    L = mask.shape[1]
    out = hf.deberta(**inputs, output_hidden_states=True)
    h = out.hidden_states[-2]
    encoder = hf.deberta.encoder
    ext_mask = encoder.get_attention_mask(mask)
    rel = encoder.get_rel_pos(h)
    rel_embeddings = encoder.get_rel_embedding()
    absolute = absolute_table[:L].unsqueeze(0)
    proj = hf.deberta.embeddings.embed_proj
    if proj is not None:
        absolute = proj(absolute)
    query = h + absolute
    last = encoder.layer[-1]
    for _ in range(2):
        query = last(h, ext_mask, query_states=query, relative_pos=rel, rel_embeddings=rel_embeddings)[0]
    if layout == "lm_predictions":
        return hf.lm_predictions(query, hf.deberta.embeddings.word_embeddings)
    return hf.cls(query)


def _write_emd_checkpoint(hf, folder, seed=5) -> torch.Tensor:
    from safetensors.torch import save_file

    cfg = hf.config
    table = torch.randn(cfg.max_position_embeddings, getattr(cfg, "embedding_size", None) or cfg.hidden_size,
                        generator=torch.Generator().manual_seed(seed))
    state = {k: v.detach().contiguous().clone() for k, v in hf.state_dict().items()}
    state["deberta.embeddings.position_embeddings.weight"] = table
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    hf.config.save_pretrained(folder)
    return table


@pytest.mark.parametrize("name", [n for n in EMD_VARIANTS if not is_v1(VARIANTS[n])])
def test_enhanced_mask_decoder_matches_transformers_modules(name, tmp_path):
    cfg = variant(name)
    layout = "lm_predictions" if embed_dim(cfg) == cfg["hidden_size"] else "legacy"
    cfg["legacy"] = layout == "legacy"
    hf = hf_model(cfg, "masked-lm")
    table = _write_emd_checkpoint(hf, tmp_path)

    ours = fastdeberta.from_pretrained(tmp_path, task="masked-lm")
    assert ours.enhanced_mask_decoder is True
    assert ours.head_layout == layout
    for length in (SHORT, LONG):
        inputs = make_inputs(cfg, length)
        with torch.no_grad():
            expected = _emd_reference(hf, inputs, table, layout)
            plain = hf(**inputs).logits
        assert float((expected - plain).abs().max()) > 1e-2, "EMD should change the logits"
        for impl in ("fast", "reference"):
            ours.set_attention_implementation(impl)
            with torch.no_grad():
                got = ours(**inputs).logits
            assert_close(got, expected, what=f"{name} EMD L={length} {impl}")


@pytest.mark.parametrize("name", [n for n in EMD_VARIANTS if is_v1(VARIANTS[n])])
def test_enhanced_mask_decoder_v1(name, tmp_path):
    """transformers' v1 layer cannot take batched ``query_states`` (it calls ``.t()`` on a 3-D tensor), so
    the v1 EMD is checked in two steps: (1) fastdeberta's split q/k/v projection used for separate queries
    equals the fused in_proj path when the queries are the hidden states (so it is the same layer), and
    (2) the EMD logits equal the composition of the last layer applied twice on h + absolute positions,
    where h = transformers' hidden_states[-2] for the same weights."""
    cfg = variant(name, legacy=False)
    hf = hf_model(cfg, "masked-lm")
    table = _write_emd_checkpoint(hf, tmp_path)
    ours = fastdeberta.from_pretrained(tmp_path, task="masked-lm", attention="reference")
    assert ours.enhanced_mask_decoder is True

    inputs = make_inputs(cfg, LONG)
    mask = inputs["attention_mask"].bool()
    enc = ours.deberta.encoder
    last = enc.layer[-1]
    with torch.no_grad():
        h_ref = hf.deberta(**inputs, output_hidden_states=True).hidden_states[-2]
        out = ours.deberta(**inputs, output_hidden_states=True)
        assert_close(out.hidden_states[-2], h_ref, what="v1 hidden_states[-2]")
        h = out.hidden_states[-2]
        state = enc.prepare(h, mask)
        fused, _ = last(h, state.key_mask, state.rel_embeddings, state.slots)
        split, _ = last(h, state.key_mask, state.rel_embeddings, state.slots, query_states=h.clone())
        assert_close(split, fused, atol=1e-5, rtol=1e-5, what="v1 query_states projection")

        query = h + table[: h.shape[1]].unsqueeze(0)
        for _ in range(2):
            query, _ = last(h, state.key_mask, state.rel_embeddings, state.slots, query_states=query)
        expected = hf.lm_predictions(query, hf.deberta.embeddings.word_embeddings)
        got = ours(**inputs).logits
        plain = hf(**inputs).logits
    assert_close(got, expected, what="v1 EMD")
    assert float((got - plain).abs().max()) > 1e-2


def test_emd_checkpoint_saved_by_fastdeberta(tmp_path):
    """An EMD model round-trips through fastdeberta (still EMD, same logits), and transformers loads the
    same files, ignoring only the absolute table, with the same encoder outputs."""
    cfg = variant("v3", legacy=False)
    model = randomize_(DebertaForMaskedLM(DebertaConfig.from_dict(cfg)), seed=7).eval()
    assert model.enhanced_mask_decoder is True
    model.save_pretrained(tmp_path)
    again = fastdeberta.from_pretrained(tmp_path, task="masked-lm")
    assert again.enhanced_mask_decoder is True
    inputs = make_inputs(cfg, LONG)
    with torch.no_grad():
        assert_close(again(**inputs).logits, model(**inputs).logits, atol=0, rtol=0, what="EMD round trip")
        hf, info = hf_class(cfg, "masked-lm").from_pretrained(tmp_path, output_loading_info=True)
        assert not info["missing_keys"], info
        ref = hf.eval().deberta(**inputs).last_hidden_state
        ours = model.deberta(**inputs).last_hidden_state
    assert_close(ours, ref, what="EMD checkpoint encoder in transformers")


# ----------------------------------------------------------------------------------------------------
# fast vs reference attention


def test_fast_and_reference_attention_agree(variant_name):
    cfg = variant(variant_name)
    model = randomize_(TASKS["base"](DebertaConfig.from_dict(cfg)), seed=11).eval()
    for length in (1, SHORT, LONG):
        inputs = make_inputs(cfg, length, batch=3)
        results = {}
        for impl in ("fast", "reference"):
            model.set_attention_implementation(impl)
            with torch.no_grad():
                results[impl] = model(**inputs, output_hidden_states=True)
        for a, b in zip(results["fast"].hidden_states, results["reference"].hidden_states):
            assert_close(a, b, atol=1e-5, rtol=1e-5, what=f"{variant_name} L={length}")
        # no padding at all: the fast path runs without a mask
        full = make_inputs(cfg, length, pad=False)
        outs = []
        for impl in ("fast", "reference"):
            model.set_attention_implementation(impl)
            with torch.no_grad():
                outs.append(model(**full).last_hidden_state)
        assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5, what=f"{variant_name} L={length} unpadded")

    # output_attentions: probabilities are returned (by the reference path), outputs unchanged
    model.set_attention_implementation("fast")
    inputs = make_inputs(cfg, LONG)
    with torch.no_grad():
        plain = model(**inputs).last_hidden_state
        with_probs = model(**inputs, output_attentions=True)
    assert_close(with_probs.last_hidden_state, plain, atol=1e-5, rtol=1e-5, what="output_attentions")
    assert len(with_probs.attentions) == 2
    for probs in with_probs.attentions:
        assert probs.shape == (3, 4, LONG, LONG)
        if not cfg.get("talking_head"):   # talking heads mix probabilities across heads after the softmax
            assert_close(probs.sum(-1), torch.ones(3, 4, LONG), atol=1e-5, rtol=0, what="rows sum to 1")
            real = inputs["attention_mask"].bool()
            key_pad = (real[:, None, :, None] & ~real[:, None, None, :]).expand_as(probs)   # real query, padded key
            assert float(probs[key_pad].abs().max()) == 0.0
            # as in transformers, a padded query row is fully masked, hence uniform over all keys
            padded_rows = probs.transpose(1, 2)[~real]                                     # (n, H, L)
            assert_close(padded_rows, torch.full_like(padded_rows, 1 / LONG), atol=1e-6, rtol=0,
                         what="padded query rows")


def test_fast_and_reference_attention_agree_bf16(variant_name):
    cfg = variant(variant_name)
    model = randomize_(TASKS["base"](DebertaConfig.from_dict(cfg)), seed=12).eval()
    inputs = make_inputs(cfg, LONG)
    with torch.no_grad():
        fp32 = model(**inputs).last_hidden_state
        model.to(torch.bfloat16)
        outs = {}
        for impl in ("fast", "reference"):
            model.set_attention_implementation(impl)
            outs[impl] = model(**inputs).last_hidden_state
    for impl, out in outs.items():
        assert out.dtype == torch.bfloat16
        assert torch.isfinite(out).all(), f"{impl}: non-finite values in bf16"
        # transformers' own bf16 error on these weights is 1.3-2.5 % (relative norm), up to 0.15 per element
        assert_relative_error(out, fp32, rel=0.05, max_abs=0.5, what=f"{variant_name} bf16 {impl}")
    assert_relative_error(outs["fast"], outs["reference"], rel=0.05, max_abs=0.5,
                          what=f"{variant_name} bf16 fast vs reference")


@pytest.mark.parametrize("name,overrides", [
    ("v3", {}),                                            # bucketed: gather path
    ("v1-base", {"max_position_embeddings": 256}),          # span >= L: diagonal (strided) path
    ("v2-rel", {"max_position_embeddings": 256}),
])
def test_fast_attention_query_blocks(name, overrides):
    """Long inputs are processed in query blocks; force small blocks and compare with the reference."""
    cfg = variant(name, **overrides)
    model = randomize_(TASKS["base"](DebertaConfig.from_dict(cfg)), seed=13).eval()
    layers = [layer.attention.self for layer in model.encoder.layer]
    if not hasattr(layers[0], "block_elements"):
        pytest.skip("attention has no block_elements knob")
    inputs = make_inputs(cfg, 150, batch=2)
    with torch.no_grad():
        model.set_attention_implementation("reference")
        ref = model(**inputs).last_hidden_state
        model.set_attention_implementation("fast")
        for layer in layers:
            layer.block_elements = 1      # -> blocks of 64 query rows
        got = model(**inputs).last_hidden_state
    assert_close(got, ref, atol=1e-5, rtol=1e-5, what=f"{name} blocked fast attention")


# ----------------------------------------------------------------------------------------------------
# the tolerance itself


@pytest.mark.parametrize("variant_name", ["v3", "v2-xlarge-style"])
def test_tolerance_rejects_a_wrong_position_bucket(variant_name):
    """Negative control for assert_close's magnitude-scaled rule: the same weights and inputs with the
    log-bucket function given half the buckets (every distance past 4 lands in a wrong bucket) must
    fail it by a wide margin, where the correct model passes."""
    from fastdeberta.model.positions import PositionSlots

    cfg = variant(variant_name)
    ours = randomize_(DebertaForMaskedLM(DebertaConfig.from_dict(cfg), enhanced_mask_decoder=False), seed=3).eval()
    hf = hf_model(cfg, "masked-lm", seed=3)
    hf.load_state_dict(ours.state_dict(), strict=False)
    inputs = make_inputs(cfg, LONG)
    encoder = ours.deberta.encoder
    with torch.no_grad():
        expected = hf(**inputs).logits
        assert_close(ours(**inputs).logits, expected, what="correct model")

        def wrong_buckets(length, device):
            return PositionSlots(length, span=encoder.span, buckets=encoder.buckets // 2,
                                 max_position=encoder.max_relative, device=device)

        encoder.position_slots = wrong_buckets
        try:
            wrong = ours(**inputs).logits
        finally:
            del encoder.position_slots
    with pytest.raises(AssertionError, match="differ by more than"):
        assert_close(wrong, expected, what="wrong buckets")
    # and not marginally: the error is over 100x the allowed one
    diff = float((wrong - expected).abs().max())
    assert diff > 100 * magnitude_tolerance(expected, atol=1e-5, rtol=5e-5)
