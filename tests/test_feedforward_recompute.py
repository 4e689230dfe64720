"""The feed-forward block recomputing its activation in backward (model/feedforward.py) against the plain
modules: same outputs and gradients, fewer saved bytes, and the plain path wherever it must be kept."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from fastdeberta import DebertaModel
from fastdeberta.config import preset_config
from fastdeberta.model.encoder import DebertaLayer
from fastdeberta.model.feedforward import RECOMPUTABLE, act_linear
from fastdeberta.model.layers import ACTIVATIONS

pytestmark = pytest.mark.usefixtures("one_thread")

# Tolerance on gradients (relative to each gradient's largest magnitude). The recomputing backward runs
# the operations autograd runs for the plain modules, so on the CPU the gradients come out bitwise equal;
# the tolerance leaves room only for a BLAS that picks a different kernel for the same product.
GRAD_RTOL = 1e-6
HIDDEN, INTERMEDIATE = 32, 128


def config(act: str = "gelu", dropout: float = 0.0):
    return preset_config("deberta-v3-xsmall", vocab_size=300, hidden_size=HIDDEN, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=INTERMEDIATE, position_buckets=32,
                         hidden_act=act, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


def precision(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def assert_same_grad(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    assert ours.dtype == theirs.dtype, f"{what}: gradient dtype {ours.dtype}, reference {theirs.dtype}"
    scale = float(theirs.float().abs().max())
    error = float((ours.float() - theirs.float()).abs().max())
    assert error <= GRAD_RTOL * scale, f"{what}: max error {error:.3g} > {GRAD_RTOL} x {scale:.3g}"


# ----------------------------------------------------------------------------------------------------
# the function alone


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("name", sorted(RECOMPUTABLE))
def test_act_linear_equals_activation_then_linear(name, bf16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, HIDDEN, generator=g, requires_grad=True)
    first, second = nn.Linear(HIDDEN, INTERMEDIATE), nn.Linear(INTERMEDIATE, HIDDEN)
    grad = torch.randn(3, 7, HIDDEN, generator=g)
    results = []
    for fast in (True, False):
        with precision(bf16):
            pre = first(x)                                                   # bf16 under autocast
            out = act_linear(pre, second, name) if fast else second(ACTIVATIONS[name](pre))
        grads = torch.autograd.grad(out, (x, *first.parameters(), *second.parameters()), grad.to(out.dtype))
        results.append((out, grads))
    (ours, ours_grads), (theirs, theirs_grads) = results
    assert ours.dtype == theirs.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert torch.equal(ours, theirs)
    for what, a, b in zip(["x", "w1", "b1", "w2", "b2"], ours_grads, theirs_grads):
        assert_same_grad(a, b, what)


def test_act_linear_refuses_an_activation_without_recomputing_backward():
    with pytest.raises(ValueError, match="'relu'.*supported"):
        act_linear(torch.randn(2, 4), nn.Linear(4, 3), "relu")


# ----------------------------------------------------------------------------------------------------
# the encoder layer and the model


def layer_pair(act: str = "gelu", dropout: float = 0.0) -> tuple[DebertaLayer, DebertaLayer]:
    """(recomputing layer, plain layer) with the same weights, in training mode."""
    torch.manual_seed(0)
    fast = DebertaLayer(config(act, dropout)).train()
    plain = DebertaLayer(config(act, dropout)).train()
    plain.load_state_dict(fast.state_dict())
    plain.recompute_activation = False
    assert fast.uses_recompute() and not plain.uses_recompute()
    return fast, plain


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_feed_forward_block_equals_plain_modules(dropout, bf16):
    g = torch.Generator().manual_seed(1)
    attended = torch.randn(2, 9, HIDDEN, generator=g)
    grad = torch.randn(2, 9, HIDDEN, generator=g)
    results = []
    for layer in layer_pair("gelu", dropout):
        x = attended.clone().requires_grad_(True)
        torch.manual_seed(7)                                                 # same dropout draws
        with precision(bf16):
            out = layer.feed_forward(x)
        out.backward(grad.to(out.dtype))
        results.append((out, x.grad, dict(layer.named_parameters())))
    (ours, ours_dx, ours_params), (theirs, theirs_dx, theirs_params) = results
    assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    assert_same_grad(ours_dx, theirs_dx, "input")
    checked = 0
    for name, param in theirs_params.items():
        if param.grad is not None:          # the attention's parameters are not in this block
            assert_same_grad(ours_params[name].grad, param.grad, name)
            checked += 1
    assert checked == 6                     # intermediate.dense, output.dense, output.LayerNorm: weight, bias
    if dropout:                             # dropout is really on: another seed gives another output
        torch.manual_seed(8)
        with torch.no_grad(), precision(bf16):
            assert not torch.equal(layer.feed_forward(attended), theirs)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_model_training_step_equals_plain_modules(bf16):
    # Whole encoder, dropout on: outputs and every parameter's gradient, recomputing vs plain.
    torch.manual_seed(0)
    model = DebertaModel(config("gelu", dropout=0.2)).train()
    ids = torch.randint(4, 300, (2, 24), generator=torch.Generator().manual_seed(0))

    def step(recompute: bool):
        for layer in model.encoder.layer:
            layer.recompute_activation = recompute
        model.zero_grad(set_to_none=True)
        torch.manual_seed(11)
        with precision(bf16):
            out = model(input_ids=ids).last_hidden_state
        out.float().square().sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    (ours, ours_grads), (theirs, theirs_grads) = step(True), step(False)
    assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    assert ours_grads.keys() == theirs_grads.keys() and len(theirs_grads) > 20
    for name, grad in theirs_grads.items():
        assert_same_grad(ours_grads[name], grad, name)


# ----------------------------------------------------------------------------------------------------
# memory


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn`` runs."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_one_layer_saves_less_by_the_activation_output(bf16):
    batch, length = 4, 16
    hidden_states = torch.randn(batch, length, HIDDEN, requires_grad=True)
    saved = []
    for layer in layer_pair("gelu", dropout=0.1):
        torch.manual_seed(3)

        def forward(layer=layer):
            with precision(bf16):
                return layer(hidden_states, None, None, None)[0]

        saved.append(saved_bytes(forward))
    ours, theirs = saved
    activation_output = batch * length * INTERMEDIATE * (2 if bf16 else 4)     # (B, L, I) in its dtype
    assert theirs - ours == activation_output, f"saved {ours} vs {theirs} bytes"


# ----------------------------------------------------------------------------------------------------
# where the plain modules are kept


@pytest.fixture
def no_recompute(monkeypatch):
    """Make the recomputing path fail loudly if it is taken."""
    def refuse(*args, **kwargs):
        raise AssertionError("the recomputing path was taken")

    monkeypatch.setattr("fastdeberta.model.encoder.act_linear", refuse)


def run_layer(layer: DebertaLayer) -> torch.Tensor:
    x = torch.randn(2, 5, HIDDEN, requires_grad=True)
    return layer(x, None, None, None)[0]


def test_training_takes_the_recomputing_path(no_recompute):
    fast, _ = layer_pair()
    with pytest.raises(AssertionError, match="recomputing path was taken"):
        run_layer(fast)


def test_inference_keeps_the_plain_modules(no_recompute):
    fast, _ = layer_pair()
    run_layer(fast.eval())                                     # eval mode
    with torch.no_grad():
        run_layer(fast.train())                                # training mode without autograd
    with torch.inference_mode():
        run_layer(fast)


@pytest.mark.parametrize("act", ["relu", "quick_gelu", "gelu_fast", "tanh"])
def test_activations_without_recomputing_backward_keep_the_plain_modules(no_recompute, act):
    layer = DebertaLayer(config(act)).train()
    assert not layer.uses_recompute()
    run_layer(layer).sum().backward()


def test_replaced_or_hooked_modules_keep_the_plain_modules(no_recompute):
    class Adapted(nn.Linear):                                  # e.g. a LoRA wrapper around the projection
        pass

    layer = DebertaLayer(config()).train()
    layer.output.dense = Adapted(INTERMEDIATE, HIDDEN)
    run_layer(layer)

    seen = []
    layer = DebertaLayer(config()).train()
    layer.intermediate.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    run_layer(layer)
    assert seen == [torch.Size([2, 5, INTERMEDIATE])]

    layer = DebertaLayer(config()).train()
    layer.intermediate.act = torch.relu                        # swapped after construction
    run_layer(layer)
