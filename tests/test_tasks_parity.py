"""One optimisation step of every task head equals transformers': same weights, same batch -> same loss
and the same gradient for every parameter (fp32; loss to 1e-5, gradients to 1e-4 of their largest entry)."""

from __future__ import annotations

import pytest
import torch
from conftest import hf_model, make_inputs, variant

from fastdeberta import TASKS, DebertaConfig
from fastdeberta.tasks import pad_features

CASES = {
    # name: (model task, config overrides, labels builder)
    "single-label": ("sequence-classification", dict(num_labels=3), lambda g: {"labels": torch.tensor([0, 2, 1])}),
    "multi-label": ("sequence-classification", dict(num_labels=3, problem_type="multi_label_classification"),
                    lambda g: {"labels": torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])}),
    "regression": ("sequence-classification", dict(num_labels=1, problem_type="regression"),
                   lambda g: {"labels": torch.tensor([0.5, -1.0, 2.25])}),
    "token": ("token-classification", dict(num_labels=5),
              lambda g: {"labels": torch.randint(0, 5, (3, 9), generator=g).index_fill_(1, torch.tensor([0, 8]), -100)}),
    "qa": ("question-answering", {}, lambda g: {"start_positions": torch.tensor([1, 3, 0]),
                                                "end_positions": torch.tensor([2, 5, 0])}),
    "choice": ("multiple-choice", {}, lambda g: {"labels": torch.tensor([1, 0, 2])}),
}


def _pair(case: str):
    task, overrides, labels = CASES[case]
    cfg = variant("v3", **overrides)
    ours = TASKS[task](DebertaConfig.from_dict(cfg))
    theirs = hf_model(cfg, task)
    ours.load_state_dict(theirs.state_dict(), strict=True)      # the same key names: no conversion
    batch = make_inputs(cfg, 9, choices=3 if task == "multiple-choice" else None)
    batch.update(labels(torch.Generator().manual_seed(0)))
    return ours.train(), theirs.train(), batch


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_step_matches_transformers(case, single_thread):
    ours, theirs, batch = _pair(case)
    loss_ours = ours(**batch).loss
    loss_theirs = theirs(**batch).loss
    torch.testing.assert_close(loss_ours, loss_theirs, rtol=1e-5, atol=1e-6)
    loss_ours.backward()
    loss_theirs.backward()
    params_theirs = dict(theirs.named_parameters())
    checked = 0
    for name, p in ours.named_parameters():
        q = params_theirs[name]
        if q.grad is None:
            assert p.grad is None or not p.grad.any(), name
            continue
        # fp32 sums in another order: tolerance relative to the largest gradient entry of the tensor
        scale = float(q.grad.abs().max())
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4 * scale + 1e-6,
                                   msg=lambda m, n=name: f"{n}: {m}")
        checked += 1
    assert checked > 20


def test_collated_features_give_the_model_inputs_transformers_expects(single_thread):
    """pad_features (what the training loop batches with) pads ids with the pad id, masks with 0 and
    token labels with -100, so the loss ignores the padding exactly as transformers' collator does."""
    features = [{"input_ids": [1, 5, 6, 2], "token_type_ids": [0, 0, 0, 0], "labels": [-100, 3, 1, -100]},
                {"input_ids": [1, 7, 2], "token_type_ids": [0, 0, 0], "labels": [-100, 4, -100]}]
    batch = pad_features(features, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 5, 6, 2], [1, 7, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 3, 1, -100], [-100, 4, -100, -100]]
    choice = pad_features([{"input_ids": [[1, 5, 2], [1, 6, 7, 2]], "token_type_ids": [[0, 0, 0], [0, 0, 1, 1]],
                            "labels": 1}], pad_id=0)
    assert choice["input_ids"].shape == (1, 2, 4) and choice["labels"].tolist() == [1]
    assert choice["attention_mask"].tolist() == [[[1, 1, 1, 0], [1, 1, 1, 1]]]
    regression = pad_features([{"input_ids": [1, 2], "labels": 0.5}, {"input_ids": [1, 2], "labels": 1.5}])
    assert regression["labels"].dtype == torch.float32
