"""Fuzz: random tensors and arguments for model forward. A call either returns outputs of the right
shape -- finite for finite inputs, equal between the fast and the reference attention -- or raises
InvalidInputError / InputTypeError with a message."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import MAX_POSITIONS, VARIANTS, VOCAB, randomize_, variant
from fuzz_support import documented_outcome, fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st

from fastdeberta import TASKS, DebertaConfig, InputTypeError, InvalidInputError

pytestmark = pytest.mark.usefixtures("single_thread")   # tiny models: one thread is fastest

ID_DTYPES = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.float32, torch.bool]


@functools.cache
def _model(name: str, task: str):
    torch.manual_seed(0)
    return randomize_(TASKS[task](DebertaConfig.from_dict(variant(name)))).eval()


def _container(tensor: torch.Tensor, kind: str):
    return {"tensor": tensor, "list": tensor.tolist(), "numpy": tensor.numpy()}[kind]


@st.composite
def forward_calls(draw):
    name = draw(st.sampled_from(sorted(VARIANTS)))
    task = draw(st.sampled_from(["base", "masked-lm", "sequence-classification", "token-classification"]))
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, MAX_POSITIONS + 4))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    low, high = draw(st.sampled_from([(4, VOCAB), (4, VOCAB), (-3, VOCAB), (4, VOCAB + 3)]))
    ids = torch.randint(low, high, (batch, length), generator=gen)
    args: dict = {}
    if draw(st.booleans()):
        mask = (torch.rand(batch, length, generator=gen) > draw(st.sampled_from([0.0, 0.3, 1.0]))).long()
        args["attention_mask"] = _container(mask.to(draw(st.sampled_from([torch.long, torch.bool, torch.float32]))),
                                            draw(st.sampled_from(["tensor"] * 5 + ["list"])))
    if draw(st.integers(0, 3)) == 0:
        types = torch.randint(draw(st.sampled_from([0, -1])), draw(st.sampled_from([2, 3])), (batch, length),
                              generator=gen)
        args["token_type_ids"] = types
    if draw(st.integers(0, 3)) == 0:
        shift = draw(st.sampled_from([0, 0, -1, 5]))
        args["position_ids"] = (torch.arange(length) + shift).unsqueeze(0).expand(
            draw(st.sampled_from([1, batch])), length)
    if draw(st.integers(0, 4)) == 0:
        embeds = torch.randn(batch, length, _model(name, "base").config.embed_dim, generator=gen)
        args["inputs_embeds"] = _container(embeds, draw(st.sampled_from(["tensor", "tensor", "numpy"])))
    else:
        odd = draw(st.integers(0, 3)) == 0          # a quarter of the calls: another dtype or container
        args["input_ids"] = _container(ids.to(draw(st.sampled_from(ID_DTYPES)) if odd else torch.int64),
                                       draw(st.sampled_from(["tensor", "list", "numpy"])) if odd else "tensor")
    if task != "base" and draw(st.booleans()):
        classes = VOCAB if task == "masked-lm" else 2
        shape = (batch,) if task == "sequence-classification" else (batch, length)
        args["labels"] = torch.randint(draw(st.sampled_from([0, -1])), classes + draw(st.sampled_from([0, 2])), shape,
                                       generator=gen)
    return name, task, args


def _finite_inputs(args: dict) -> bool:
    embeds = args.get("inputs_embeds")
    return embeds is None or bool(np.isfinite(np.asarray(embeds)).all())


@fuzz_settings(examples=80)
@given(forward_calls())
def test_random_forward_arguments(call):
    name, task, args = call
    model = _model(name, task)
    with torch.no_grad():
        out, error = documented_outcome(lambda: model(**args))
    event(type(error).__name__ if error is not None else "result")
    if error is not None:
        assert isinstance(error, (InvalidInputError, InputTypeError)), type(error)
        return
    batch, length = np.asarray(args.get("input_ids", args.get("inputs_embeds"))).shape[:2]
    logits = out.last_hidden_state if task == "base" else out.logits
    expected = {"base": (batch, length, 32), "masked-lm": (batch, length, VOCAB),
                "sequence-classification": (batch, 2), "token-classification": (batch, length, 2)}[task]
    assert tuple(logits.shape) == expected
    if _finite_inputs(args):
        assert torch.isfinite(logits).all()
        if out_loss := getattr(out, "loss", None):
            assert torch.isfinite(out_loss) or not (args["labels"] >= 0).any()
    model.set_attention_implementation("reference")
    try:
        with torch.no_grad():
            reference = model(**args)
    finally:
        model.set_attention_implementation("fast")
    ref_logits = reference.last_hidden_state if task == "base" else reference.logits
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4 * float(ref_logits.abs().max()) + 1e-5)


@fuzz_settings(examples=30)
@given(st.sampled_from(sorted(VARIANTS)), st.integers(1, 3), st.integers(2, 12), st.data())
def test_nan_anywhere_in_padding_stays_in_padding(name, batch, length, data):
    model = _model(name, "base")
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    embeds = torch.randn(batch, length, model.config.embed_dim, generator=gen)
    keep = data.draw(st.lists(st.integers(1, length), min_size=batch, max_size=batch))
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row, n in enumerate(keep):
        mask[row, :n] = 1
    poison = data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30]))
    embeds[mask == 0] = poison
    with torch.no_grad():
        out = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    assert torch.isfinite(out[mask.bool()]).all()
