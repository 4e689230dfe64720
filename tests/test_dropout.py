"""The model's dropout (bool mask kept for backward): bitwise torch's nn.Dropout under exact_dropout(),
and the default faster CPU mask (16-bit lanes of 64-bit draws) with the right statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fastdeberta import DebertaModel
from fastdeberta.config import preset_config
from fastdeberta.model.layers import Dropout, dropout_keep_mask, exact_dropout


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.element_size() == 4 else torch.int16)


def run(module: nn.Module, x: torch.Tensor, seed: int = 5):
    torch.manual_seed(seed)
    out = module(x)
    (grad,) = torch.autograd.grad(out, x, torch.linspace(-2, 2, out.numel()).view(out.shape).to(out.dtype))
    return out, grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_bitwise_torch_dropout(dtype, p):
    x = torch.randn(6, 50, 33).to(dtype)
    x[0, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -3.0])
    x.requires_grad_(True)
    with exact_dropout():
        ours = run(Dropout(p).train(), x)
    theirs = run(nn.Dropout(p).train(), x)
    assert torch.equal(bits(ours[0]), bits(theirs[0])), "same draws, same scaling, same NaN/inf/-0 handling"
    assert torch.equal(bits(ours[1]), bits(theirs[1]))
    kept = ours[0] != 0
    assert 0.3 < kept.float().mean() < 0.95                     # it does drop, at about rate p


def test_keeps_a_bool_mask_for_backward():
    x = torch.randn(64, 256, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        Dropout(0.1).train()(x)
    assert [t.dtype for t in saved if t.numel() == x.numel()] == [torch.bool]


def test_eval_and_p0_are_the_identity():
    x = torch.randn(4, 8)
    assert Dropout(0.3).eval()(x) is x
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_model_training_step_equals_torch_dropout():
    # The encoder with our dropout gives the same outputs and gradients as with nn.Dropout everywhere.
    config = preset_config("deberta-v3-xsmall", vocab_size=300, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128, position_buckets=32,
                           hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)
    torch.manual_seed(0)
    model = DebertaModel(config).train()
    ids = torch.randint(4, 300, (2, 40), generator=torch.Generator().manual_seed(0))

    def step():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(11)
        out = model(input_ids=ids).last_hidden_state
        out.square().sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    with exact_dropout():              # the attention's fused softmax-dropout draws as torch too
        ours = step()
        original = Dropout.forward
        Dropout.forward = nn.Dropout.forward
        try:
            theirs = step()
        finally:
            Dropout.forward = original
    assert torch.equal(ours[0], theirs[0])
    for name, grad in theirs[1].items():
        assert torch.equal(ours[1][name], grad), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.0, 0.2])
def test_attention_softmax_dropout_values_equals_torch(dtype, p):
    # The training attention keeps the probabilities and a bool mask instead of the dropped copy;
    # values and gradients must be those of bmm(F.dropout(softmax(scores)), values).
    from fastdeberta.model.attention import _SoftmaxDropoutValues

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 20, 30, generator=g).to(dtype).requires_grad_(True)
    values = torch.randn(6, 30, 8, generator=g).to(dtype).requires_grad_(True)
    grad = torch.randn(6, 20, 8, generator=g).to(dtype)
    torch.manual_seed(3)
    with exact_dropout():
        ours = _SoftmaxDropoutValues.apply(scores, values, p)
    ours_grads = torch.autograd.grad(ours, (scores, values), grad)
    torch.manual_seed(3)
    theirs = torch.bmm(torch.nn.functional.dropout(torch.softmax(scores, -1), p, training=True), values)
    theirs_grads = torch.autograd.grad(theirs, (scores, values), grad)
    assert torch.equal(ours, theirs)
    for a, b in zip(ours_grads, theirs_grads):
        assert a.dtype == b.dtype and torch.allclose(a.float(), b.float(), rtol=1e-6, atol=1e-7)


def test_attention_softmax_dropout_values_keeps_one_probability_tensor():
    from fastdeberta.model.attention import _SoftmaxDropoutValues

    scores = torch.randn(4, 16, 16, requires_grad=True)
    values = torch.randn(4, 16, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        _SoftmaxDropoutValues.apply(scores, values, 0.1)
    square = [t.dtype for t in saved if t.shape == scores.shape]
    assert sorted(map(str, square)) == ["torch.bool", "torch.float32"]     # probabilities + mask only


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_fast_mask_keeps_at_rate_one_minus_p_in_every_lane(p):
    torch.manual_seed(0)
    keep, kept = dropout_keep_mask((1000, 1000), p, torch.device("cpu"))
    assert keep.dtype == torch.bool and keep.shape == (1000, 1000)
    assert kept == pytest.approx(1 - p, abs=1 / 65536)
    sigma = (kept * (1 - kept) / 250_000) ** 0.5
    for lane in range(4):                        # each 16-bit lane of the 64-bit draws
        assert abs(float(keep.view(-1)[lane::4].float().mean()) - kept) < 5 * sigma, lane


def test_fast_mask_has_no_structure_between_neighbours():
    torch.manual_seed(1)
    keep = dropout_keep_mask((2_000_000,), 0.5, torch.device("cpu"))[0].float()
    for lag in (1, 2, 3, 4, 5, 8):               # lanes of one draw and of consecutive draws
        corr = float(torch.corrcoef(torch.stack([keep[:-lag], keep[lag:]]))[0, 1])
        assert abs(corr) < 0.005, lag


def test_fast_dropout_is_unbiased_seeded_and_saves_a_bool_mask():
    x = torch.ones(400, 1000, requires_grad=True)
    torch.manual_seed(7)
    a = Dropout(0.1).train()(x)
    torch.manual_seed(7)
    b = Dropout(0.1).train()(x)
    assert torch.equal(a, b)                                  # the global generator: seeded, resumable
    assert float(a.detach().mean()) == pytest.approx(1.0, abs=0.005)   # E[dropout(x)] = x
    values = sorted(a.detach().unique().tolist())
    assert values == [0.0, pytest.approx(1 / (1 - 6554 / 65536))]
    (grad,) = torch.autograd.grad(a.sum(), x)
    assert torch.equal(grad, a.detach())                      # the same mask and scale in backward
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        saved = []
        Dropout(0.1).train()(x.detach().bfloat16().requires_grad_(True))
    assert [t.dtype for t in saved if t.numel() == x.numel()] == [torch.bool]


def test_fast_and_exact_dropout_differ_only_in_the_draws():
    x = torch.randn(300, 300)
    torch.manual_seed(2)
    fast = Dropout(0.3).train()(x)
    torch.manual_seed(2)
    with exact_dropout():
        exact = Dropout(0.3).train()(x)
    assert not torch.equal(fast, exact)
    for out in (fast, exact):
        kept = out != 0
        assert float(kept.float().mean()) == pytest.approx(0.7, abs=0.01)
        torch.testing.assert_close(out[kept], x[kept] / 0.7, rtol=1e-4, atol=0)


def test_dropout_of_one_gives_zeros():
    from fastdeberta.model.attention import _SoftmaxDropoutValues

    x = torch.randn(4, 8)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    out = _SoftmaxDropoutValues.apply(torch.randn(2, 3, 5), torch.randn(2, 5, 4), 1.0)
    assert torch.equal(out, torch.zeros_like(out))
