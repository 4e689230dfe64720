"""Sequence classification: single-label, multi-label, regression; one text or a text pair.

The kind of problem comes from the training labels unless given (``problem_type``): lists of
names -> multi-label; numbers with a fractional part -> regression; anything else -> one class per
row. Metrics: accuracy and macro-F1 (single label), micro/macro-F1 and subset accuracy
(multi-label, sigmoid > 0.5), Pearson / Spearman / MSE (regression); plus the mean loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidInputError
from ..training.data import DataError, LabelMap, Row, label_name, read_rows, require_columns
from .base import Task, model_outputs, pad_id_of
from .metrics import accuracy, macro_f1, multilabel_scores, pearson, spearman

__all__ = ["PROBLEM_TYPES", "ClassificationExample", "SequenceClassificationTask", "scores_from_logits"]

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


@dataclass
class ClassificationExample:
    text: str
    text_pair: str | None
    label: Any          # raw value from the file: a name, a list of names, a number; None when absent
    where: str


def scores_from_logits(logits: torch.Tensor, function: str) -> torch.Tensor:
    """"softmax" / "sigmoid" / "none" over the last dimension (float32)."""
    logits = logits.float()
    if function == "softmax":
        return logits.softmax(-1)
    if function == "sigmoid":
        return logits.sigmoid()
    if function == "none":
        return logits
    raise InvalidInputError(f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {function!r}")


def default_function(config: Any) -> str:
    """transformers' default: none for regression, sigmoid for multi-label or one label, else softmax."""
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or config.labels_count == 1:
        return "sigmoid"
    return "softmax"


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


class SequenceClassificationTask(Task):
    name = "sequence-classification"
    model_task = "sequence-classification"
    pipeline_task = "text-classification"

    def __init__(self, text_column: str = "text", text_pair_column: str = "text_pair", label_column: str = "label",
                 problem_type: str | None = None, **_: Any):
        if problem_type not in (None, *PROBLEM_TYPES):
            raise InvalidInputError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")
        self.text_column, self.pair_column, self.label_column = text_column, text_pair_column, label_column
        self.problem_type = problem_type
        self.labels: LabelMap | None = None

    @property
    def metric(self) -> str:  # type: ignore[override]
        return {"regression": "pearson", "multi_label_classification": "micro_f1"}.get(self.problem_type or "",
                                                                                         "accuracy")

    # -- data ---------------------------------------------------------------------------------------
    def read(self, path: str | os.PathLike, with_labels: bool = True) -> list[ClassificationExample]:
        rows = read_rows(path)
        options = {self.text_column: "--text-column", self.label_column: "--label-column"}
        require_columns(rows, [self.text_column] + ([self.label_column] if with_labels else []), path, options)
        return [self._example(row, with_labels) for row in rows]

    def _example(self, row: Row, with_labels: bool) -> ClassificationExample:
        text = row[self.text_column]
        pair = row.get(self.pair_column)
        for name, value in ((self.text_column, text), (self.pair_column, pair)):
            if value is not None and not isinstance(value, str):
                raise DataError(f"{row.where}: column {name!r} holds a {type(value).__name__}, not text: {value!r:.60}")
        return ClassificationExample(text, pair or None, row.get(self.label_column) if with_labels else None,
                                     row.where)

    def label_config(self, examples: list[ClassificationExample]) -> dict[str, Any]:
        """Config fields for a new head trained on ``examples``: problem_type and the label map."""
        kind = self.problem_type or self._infer_problem_type(examples)
        self.problem_type = kind
        if kind == "regression":
            for ex in examples:
                if _as_float(ex.label) is None:
                    raise DataError(f"{ex.where}: regression label {ex.label!r} is not a number")
            self.labels = None
            return {"problem_type": kind, "num_labels": 1, "id2label": {0: "LABEL_0"}, "label2id": {"LABEL_0": 0}}
        if kind == "multi_label_classification":
            names = [label_name(v, ex.where) for ex in examples for v in self._label_list(ex)]
        else:
            names = [label_name(ex.label, ex.where) for ex in examples]
        self.labels = LabelMap.from_values(names)
        if len(self.labels) < 2 and kind == "single_label_classification":
            raise DataError(f"the training data has a single label {self.labels.names}; classification needs "
                            "at least two (for numbers to predict, pass --problem-type regression)")
        return {"problem_type": kind, **self.labels.config_fields()}

    def _infer_problem_type(self, examples: list[ClassificationExample]) -> str:
        values = [ex.label for ex in examples]
        if any(isinstance(v, list) for v in values):
            return "multi_label_classification"
        numbers = [_as_float(v) for v in values]
        if all(n is not None for n in numbers) and any(not n.is_integer() for n in numbers):  # type: ignore[union-attr]
            return "regression"
        return "single_label_classification"

    def use_config(self, config: Any) -> None:
        """Take the problem type and label map of a trained model (evaluation, prediction)."""
        self.problem_type = config.problem_type or ("regression" if config.labels_count == 1
                                                    else "single_label_classification")
        self.labels = LabelMap.from_config(config) if self.problem_type != "regression" else None

    def _label_list(self, ex: ClassificationExample) -> list[Any]:
        if not isinstance(ex.label, list):
            raise DataError(f"{ex.where}: a multi-label example needs a list of labels, found {ex.label!r:.60}")
        return ex.label

    def _target(self, ex: ClassificationExample) -> Any:
        if self.problem_type == "regression":
            value = _as_float(ex.label)
            if value is None:
                raise DataError(f"{ex.where}: regression label {ex.label!r} is not a number")
            return value
        assert self.labels is not None
        if self.problem_type == "multi_label_classification":
            target = [0.0] * len(self.labels)
            for name in self._label_list(ex):
                target[self.labels.encode(label_name(name, ex.where), ex.where)] = 1.0
            return target
        return self.labels.encode(label_name(ex.label, ex.where), ex.where)

    # -- features -----------------------------------------------------------------------------------
    def features(self, examples: list[ClassificationExample], tokenizer: Any, max_length: int,
                 with_labels: bool = True) -> list[dict[str, Any]]:
        if not examples:
            return []
        texts = [ex.text for ex in examples]
        pairs = [ex.text_pair or "" for ex in examples] if any(ex.text_pair for ex in examples) else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        out = []
        for i, ex in enumerate(examples):
            feature = {"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i]}
            if with_labels:
                feature["labels"] = self._target(ex)
            out.append(feature)
        return out

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, model: Any, tokenizer: Any, examples: list[ClassificationExample], max_length: int,
                 batch_size: int = 32) -> dict[str, float]:
        features = self.features(examples, tokenizer, max_length)
        outputs, loss = model_outputs(model, features, pad_id_of(tokenizer), batch_size)
        logits = torch.stack(outputs["logits"])                                     # (N, num_labels)
        metrics = self.metrics(logits, [f["labels"] for f in features])
        if loss is not None:
            metrics["loss"] = loss
        return metrics

    def metrics(self, logits: torch.Tensor, targets: list[Any]) -> dict[str, float]:
        if self.problem_type == "regression":
            predicted = logits.view(-1).tolist()
            gold = [float(t) for t in targets]
            mse = sum((p - g) ** 2 for p, g in zip(predicted, gold)) / len(gold)
            return {"pearson": pearson(predicted, gold), "spearman": spearman(predicted, gold), "mse": mse}
        if self.problem_type == "multi_label_classification":
            return multilabel_scores(torch.tensor(targets), logits.sigmoid() > 0.5)
        predicted = logits.argmax(-1).tolist()
        return {"accuracy": accuracy(targets, predicted), "macro_f1": macro_f1(targets, predicted)}
