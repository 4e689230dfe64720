"""What every fine-tuning task shares: padding features into batches and running a model over them.

A *feature* is one model input row as plain Python lists (``input_ids``, ``token_type_ids``, and
task fields such as ``labels``); a task turns its examples into features, the training loop batches
them with :func:`pad_features`, and evaluation runs the model over them with :func:`model_outputs`
(length-sorted batches, results back in input order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["IGNORE_INDEX", "Task", "model_outputs", "pad_features", "pad_id_of"]

IGNORE_INDEX = -100          # label value the losses skip (sub-tokens, special tokens, padding)

# feature keys padded along the sequence, and the value padding takes
_SEQUENCE_KEYS = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "labels": IGNORE_INDEX}


def pad_id_of(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def _pad_rows(rows: Sequence[Sequence[Any]], value: Any, width: int) -> torch.Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for r, row in enumerate(rows):
        out[r, :len(row)] = torch.as_tensor(list(row), dtype=torch.long)
    return out


def pad_features(features: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Stack features into a batch: sequences right-padded to the longest, other fields as tensors.

    ``input_ids`` is padded with ``pad_id``, masks and token types with 0, token-level ``labels``
    with -100. A feature whose ``input_ids`` is a list of lists (multiple choice: one row per
    choice) gives ``(B, C, L)`` tensors. Float labels (regression, multi-label) stay float.
    """
    first = features[0]
    nested = bool(first["input_ids"]) and isinstance(first["input_ids"][0], list)
    batch: dict[str, torch.Tensor] = {}
    if nested:
        # (B, C, L): flatten choices, pad, fold back
        flat = [dict(input_ids=ids, token_type_ids=types) for f in features
                for ids, types in zip(f["input_ids"], f["token_type_ids"])]
        padded = pad_features(flat, pad_id)
        choices = len(first["input_ids"])
        batch = {k: v.view(len(features), choices, -1) for k, v in padded.items()}
    else:
        width = max(len(f["input_ids"]) for f in features)
        batch["input_ids"] = _pad_rows([f["input_ids"] for f in features], pad_id, width)
        batch["attention_mask"] = _pad_rows([[1] * len(f["input_ids"]) for f in features], 0, width)
        batch["token_type_ids"] = _pad_rows([f.get("token_type_ids") or [0] * len(f["input_ids"])
                                             for f in features], 0, width)
    for key in first:
        if key in ("input_ids", "token_type_ids", "attention_mask") or key.startswith("_"):
            continue
        values = [f[key] for f in features]
        if key == "labels" and isinstance(values[0], list) and not nested and _is_token_level(values, features):
            batch[key] = _pad_rows(values, IGNORE_INDEX, batch["input_ids"].shape[1])
        else:
            batch[key] = torch.tensor(values)
    return batch


def _is_token_level(labels: list, features: Sequence[dict[str, Any]]) -> bool:
    """Token-level labels have one entry per input id (multi-label vectors have one per class)."""
    return all(len(lab) == len(f["input_ids"]) for lab, f in zip(labels, features)) and \
        all(isinstance(x, int) for x in labels[0])


@torch.no_grad()
def model_outputs(model: torch.nn.Module, features: Sequence[dict[str, Any]], pad_id: int,
                  batch_size: int = 32, keys: Sequence[str] = ("logits",), per_token: bool = False,
                  ) -> tuple[dict[str, list[torch.Tensor]], float | None]:
    """Run ``model`` (eval mode, no grad) over ``features`` in length-sorted batches.

    Returns ``(outputs, mean_loss)``: ``outputs[key][i]`` is the float32 CPU output of feature ``i``
    for each name in ``keys`` (``per_token``: cut to the feature's own length, padding dropped);
    ``mean_loss`` the example-weighted mean of the model's loss when features carry labels, else None.
    """
    from ..inference.batching import plan_batches  # here: the inference package imports the task pipelines

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = [_width(f) for f in features]
    out: dict[str, list[Any]] = {k: [None] * len(features) for k in keys}
    loss_sum, loss_count = 0.0, 0
    try:
        for group in plan_batches(lengths, batch_size=batch_size):
            batch = pad_features([features[i] for i in group], pad_id)
            result = model(**{k: v.to(device) for k, v in batch.items()})
            if getattr(result, "loss", None) is not None:
                loss_sum += float(result.loss) * len(group)
                loss_count += len(group)
            for key in keys:
                values = getattr(result, key).float().cpu()
                for row, i in enumerate(group):
                    out[key][i] = values[row, : lengths[i]] if per_token else values[row]
    finally:
        model.train(was_training)
    return out, (loss_sum / loss_count if loss_count else None)


def _width(feature: dict[str, Any]) -> int:
    ids = feature["input_ids"]
    return max(len(r) for r in ids) if ids and isinstance(ids[0], list) else len(ids)


class Task:
    """The interface the CLI and the training loop use; one subclass per task module.

    name: the ``--task`` value; model_task: the head to load; pipeline_task: the pipeline whose output
    format ``predict`` writes; metric: the evaluation metric that picks the best checkpoint.
    """

    name: str = ""
    model_task: str = ""
    pipeline_task: str | None = None
    metric: str = "loss"

    def read(self, path: Any, with_labels: bool = True) -> list[Any]:
        """The examples of a data file (checked; errors name file and line)."""
        raise NotImplementedError

    def label_config(self, examples: list[Any]) -> dict[str, Any]:
        """Config fields for a new head trained on ``examples`` (num_labels, id2label, ...)."""
        raise NotImplementedError

    def use_config(self, config: Any) -> None:
        """Adopt a trained model's label map / problem type (before evaluation or prediction)."""
        raise NotImplementedError

    def features(self, examples: list[Any], tokenizer: Any, max_length: int,
                 with_labels: bool = True) -> list[dict[str, Any]]:
        """Model input rows (lists) for ``examples``; with labels for training."""
        raise NotImplementedError

    def evaluate(self, model: Any, tokenizer: Any, examples: list[Any], max_length: int,
                 batch_size: int = 32) -> dict[str, float]:
        """The task's metrics of ``model`` on labelled ``examples``."""
        raise NotImplementedError
