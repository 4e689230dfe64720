"""Shared factories for the model tests: tiny DeBERTa configs covering every architecture variant,
random (but deterministic) weights, padded inputs and reference models from transformers.

transformers is used only as a numerical reference; it is imported lazily so that test files that do
not need it (and other test modules in this folder) do not pay for it.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

# The suite checks bf16 numerics on every CPU, including ones without native bf16 where loading with
# dtype="bfloat16" otherwise falls back to float32 (tests of that fallback unset this themselves).
os.environ.setdefault("FASTDEBERTA_FORCE_BF16", "1")

# ----------------------------------------------------------------------------------------------------
# tiny configs (config.json form, exactly as a checkpoint would carry them)

VOCAB = 300
FIRST_ID = 4          # ids 0..3 are special tokens; random ids are drawn from [FIRST_ID, VOCAB)
MAX_POSITIONS = 64

_COMMON: dict[str, Any] = dict(
    vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pooler_dropout=0.0,
    max_position_embeddings=MAX_POSITIONS, layer_norm_eps=1e-7, pad_token_id=0, initializer_range=0.02,
)


def _v1(**kw: Any) -> dict[str, Any]:
    return dict(_COMMON, model_type="deberta", **kw)


def _v2(**kw: Any) -> dict[str, Any]:
    return dict(_COMMON, model_type="deberta-v2", **kw)


# name -> config.json dict. Together these cover every switch of the architecture.
VARIANTS: dict[str, dict[str, Any]] = {
    # v1 (fused in_proj + q_bias/v_bias, pos_proj / pos_q_proj)
    "v1-base": _v1(relative_attention=True, pos_att_type="c2p|p2c", position_biased_input=False,
                   max_relative_positions=-1, type_vocab_size=0),
    "v1-c2p-abs-types": _v1(relative_attention=True, pos_att_type=["c2p"], position_biased_input=True,
                            max_relative_positions=12, type_vocab_size=2),
    "v1-p2c-talking-emb": _v1(relative_attention=True, pos_att_type="p2c", talking_head=True,
                              embedding_size=24, position_biased_input=True, type_vocab_size=2),
    "v1-talking-both": _v1(relative_attention=True, pos_att_type="c2p|p2c", talking_head=True,
                           position_biased_input=False, max_relative_positions=12, type_vocab_size=0),
    "v1-norel": _v1(relative_attention=False, position_biased_input=True, type_vocab_size=2),
    # v2
    "v2-rel": _v2(relative_attention=True, position_buckets=-1, max_relative_positions=-1, share_att_key=False,
                  norm_rel_ebd="none", pos_att_type="p2c|c2p", position_biased_input=True, type_vocab_size=2),
    "v2-xlarge-style": _v2(relative_attention=True, position_buckets=8, max_relative_positions=32,
                           share_att_key=True, norm_rel_ebd="layer_norm", conv_kernel_size=3, conv_act="gelu",
                           conv_groups=2, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                           type_vocab_size=0),
    "v2-maxrel-c2p-conv-emb": _v2(relative_attention=True, max_relative_positions=12, share_att_key=False,
                                  norm_rel_ebd="none", pos_att_type="c2p", conv_kernel_size=3, conv_act="tanh",
                                  conv_groups=1, embedding_size=24, type_vocab_size=2,
                                  position_biased_input=True),
    "v2-p2c-bucket-emb": _v2(relative_attention=True, position_buckets=8, max_relative_positions=-1,
                             share_att_key=False, norm_rel_ebd="layer_norm", pos_att_type="p2c",
                             embedding_size=48, position_biased_input=False, type_vocab_size=2),
    # v3: 256 buckets / 512 positions scaled down to 16 / 64
    "v3": _v2(relative_attention=True, position_buckets=16, max_relative_positions=-1, share_att_key=True,
              norm_rel_ebd="layer_norm", pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0),
    # no relative attention: a plain BERT-like encoder
    "v2-norel": _v2(relative_attention=False, position_biased_input=True, type_vocab_size=2),
}

# Lengths below and above the bucket midpoint (buckets 8 / 16 -> mid 4 / 8) and the relative span 12:
# the short one runs the diagonal (strided) fast path wherever the slots allow, the long one the gather path.
SHORT, LONG = 4, 21


def variant(name: str, **overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(VARIANTS[name])
    data.update(overrides)
    return data


def is_v1(cfg: dict[str, Any]) -> bool:
    return cfg["model_type"] == "deberta"


def embed_dim(cfg: dict[str, Any]) -> int:
    return cfg.get("embedding_size") or cfg["hidden_size"]


def uses_emd(cfg: dict[str, Any]) -> bool:
    return bool(cfg.get("relative_attention")) and not cfg.get("position_biased_input", True)


def v2_names() -> list[str]:
    return [n for n, c in VARIANTS.items() if not is_v1(c)]


# ----------------------------------------------------------------------------------------------------
# weights


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter a deterministic random value large enough that all terms matter
    (the default 0.02 init makes attention nearly uniform and hides position-term bugs)."""
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for name, p in sorted(model.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
        if id(p) in seen:
            continue
        seen.add(id(p))
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        if name.endswith("LayerNorm.weight"):
            value = 1.0 + 0.2 * noise
        elif p.dim() == 1:
            value = 0.1 * noise
        elif "embeddings" in name:
            value = noise
        else:
            value = noise / max(1.0, p.shape[-1] ** 0.5) * 1.5
        p.copy_(value.to(p.dtype))
    return model


# ----------------------------------------------------------------------------------------------------
# inputs


def make_inputs(cfg: dict[str, Any], length: int, *, batch: int = 3, seed: int = 0, pad: bool = True,
                choices: int | None = None) -> dict[str, torch.Tensor]:
    """input_ids in [FIRST_ID, vocab), attention_mask with zeros at the end of some rows (pad id 0 there),
    token_type_ids when the config has token types. ``choices``: shape (batch, choices, length)."""
    gen = torch.Generator().manual_seed(seed)
    rows = batch * (choices or 1)
    ids = torch.randint(FIRST_ID, cfg["vocab_size"], (rows, length), generator=gen)
    mask = torch.ones(rows, length, dtype=torch.long)
    if pad:
        for r in range(1, rows):
            n_pad = [0, 2, length // 2][r % 3] if length > 2 else 0
            if n_pad:
                mask[r, length - n_pad:] = 0
    ids = ids.masked_fill(mask == 0, cfg.get("pad_token_id") or 0)
    out = {"input_ids": ids, "attention_mask": mask}
    if cfg.get("type_vocab_size", 0) > 0:
        types = torch.zeros(rows, length, dtype=torch.long)
        types[:, length // 2:] = 1
        out["token_type_ids"] = types * mask
    if choices:
        out = {k: v.view(batch, choices, length) for k, v in out.items()}
    return out


# ----------------------------------------------------------------------------------------------------
# transformers reference models

HF_CLASS_SUFFIX = {
    "base": "Model",
    "masked-lm": "ForMaskedLM",
    "sequence-classification": "ForSequenceClassification",
    "token-classification": "ForTokenClassification",
    "question-answering": "ForQuestionAnswering",
    "multiple-choice": "ForMultipleChoice",
}


def hf_config(cfg: dict[str, Any]):
    import transformers

    cls = transformers.DebertaConfig if is_v1(cfg) else transformers.DebertaV2Config
    data = {k: v for k, v in cfg.items() if k != "model_type"}
    return cls(**data)


def hf_class(cfg: dict[str, Any], task: str):
    import transformers

    return getattr(transformers, ("Deberta" if is_v1(cfg) else "DebertaV2") + HF_CLASS_SUFFIX[task])


def hf_model(cfg: dict[str, Any], task: str, *, seed: int = 0):
    """A transformers model for ``task`` with random weights, in eval mode."""
    model = hf_class(cfg, task)(hf_config(cfg))
    randomize_(model, seed)
    return model.eval()


# ----------------------------------------------------------------------------------------------------
# comparisons


def magnitude_tolerance(expected: torch.Tensor, *, atol: float, rtol: float) -> float:
    """The allowed error for every element of a tensor: ``atol + rtol * max|expected|``."""
    scale = float(expected.detach().float().abs().max()) if expected.numel() else 0.0
    return atol + rtol * scale


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float = 1e-5, rtol: float = 5e-5,
                 what: str = "") -> None:
    """Magnitude-scaled comparison: every element within ``atol + rtol * max|expected|``.

    Why the scale is the tensor's largest magnitude, not each element's own value: the fp32 rounding
    error of a matmul / softmax / LayerNorm chain is proportional to the size of the terms summed, i.e.
    to the scale of the whole tensor. An element near zero that results from cancelling large terms
    carries the error of those terms, so an elementwise relative tolerance fails there whenever two
    SIMD code paths (AVX2 vs AVX-512) round differently -- the v1 talking-head MLM logit on Zen 5 was
    0.116 in a tensor whose largest logit is 23, off by 1.27e-4. A blanket larger absolute tolerance
    would instead be too loose for small tensors.

    Measured over the whole parity suite (Zen 5, AVX-512): the largest error is 7.4e-6 * max|expected|,
    so rtol=5e-5 leaves ~7x headroom. A real bug is orders of magnitude above it: a deliberately wrong
    position bucket moves the outputs by ~1e-1 * max|expected| (test_parity.py::
    test_tolerance_rejects_a_wrong_position_bucket). ``atol`` only covers all-zero tensors.
    Non-finite values must match exactly (NaN where NaN, inf where inf).
    """
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, b = actual.detach().float(), expected.detach().float()
    finite_a, finite_b = torch.isfinite(a), torch.isfinite(b)
    assert torch.equal(finite_a, finite_b), f"{what}: non-finite values at different positions"
    assert torch.equal(a[~finite_a].nan_to_num(0.0), b[~finite_b].nan_to_num(0.0)) and torch.equal(
        a[~finite_a].isnan(), b[~finite_b].isnan()), f"{what}: non-finite values differ"
    if not bool(finite_b.any()):
        return
    tol = magnitude_tolerance(b[finite_b], atol=atol, rtol=rtol)
    diff = (a - b).abs().masked_fill(~finite_b, 0.0)
    worst = int(diff.argmax())
    err = float(diff.flatten()[worst])
    if err > tol:
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape))
        bad = int((diff > tol).sum())
        raise AssertionError(
            f"{what}: {bad} of {diff.numel()} elements differ by more than {tol:.3g} "
            f"(= {atol:g} + {rtol:g} * max|expected| {float(b[finite_b].abs().max()):.3g}); worst {err:.3g} at "
            f"{index}: {float(a.flatten()[worst]):.6g} vs {float(b.flatten()[worst]):.6g}")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_relative_error(actual: torch.Tensor, expected: torch.Tensor, *, rel: float, max_abs: float,
                          what: str = "") -> None:
    """Low-precision comparison: relative Frobenius error below ``rel`` and no element off by ``max_abs``."""
    diff = (actual.float() - expected.float())
    ratio = float(diff.norm() / expected.float().norm().clamp_min(1e-12))
    worst = float(diff.abs().max())
    assert ratio < rel and worst < max_abs, f"{what}: relative error {ratio:.4f} (< {rel}), max abs {worst:.4f} (< {max_abs})"


def valid_positions(mask: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the non-padded positions."""
    return mask.reshape(-1, mask.shape[-1]).bool()


def write_config(folder: Path, cfg: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")


# ----------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def single_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cache_only_hub(monkeypatch):
    """huggingface_hub left online (HF_HUB_OFFLINE unset), with ``snapshot_download`` wrapped so that a
    call that may use the network fails the test. Returns the ``local_files_only`` flag of every call."""
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    real = huggingface_hub.snapshot_download
    flags: list[bool] = []

    def cache_only(*args, **kwargs):
        flags.append(kwargs.get("local_files_only", False))
        if not flags[-1]:
            raise AssertionError(f"snapshot_download may use the network here: {args} {kwargs}")
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cache_only)
    return flags


@pytest.fixture(params=sorted(VARIANTS))
def variant_name(request) -> str:
    """Every variant name."""
    return request.param


@pytest.fixture
def tiny_config():
    """Factory: ``tiny_config(name, **overrides)`` -> config.json dict."""
    return variant


@pytest.fixture
def saved_fast_model(tmp_path):
    """Factory: ``saved_fast_model(name, task="base", **config_overrides)`` -> (folder, model).
    A fastdeberta model with random weights written with ``save_pretrained``."""
    from fastdeberta import TASKS, DebertaConfig

    def make(name: str = "v3", task: str = "base", seed: int = 0, **overrides: Any):
        config = DebertaConfig.from_dict(variant(name, **overrides))
        model = randomize_(TASKS[task](config), seed).eval()
        folder = tmp_path / f"{name}-{task}-{seed}"
        model.save_pretrained(folder)
        return folder, model

    return make
