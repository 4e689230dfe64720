"""Multiple choice: a question (or context) and N candidate answers; the label is the right one's index.

Data: a question column plus either a ``choices`` column holding a list, or several choice columns
(``choice_columns=["ending0", "ending1", ...]``); the label column holds the index of the right
choice (0-based). Each choice becomes the text pair ``(question, choice)``; the model scores all N
and a softmax over them picks one. Prediction format: ``{"label": index, "score": p, "scores": [...]}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..training.data import DataError, Row, read_rows, require_columns
from .base import Task, model_outputs, pad_id_of
from .metrics import accuracy

__all__ = ["ChoiceExample", "MultipleChoiceTask"]


@dataclass
class ChoiceExample:
    question: str
    choices: list[str]
    label: int | None
    where: str


class MultipleChoiceTask(Task):
    name = "multiple-choice"
    model_task = "multiple-choice"
    pipeline_task = None
    metric = "accuracy"

    def __init__(self, question_column: str = "question", choices_column: str = "choices",
                 choice_columns: list[str] | None = None, label_column: str = "label", **_: Any):
        self.question_column, self.choices_column = question_column, choices_column
        self.choice_columns = list(choice_columns or [])
        self.label_column = label_column

    def read(self, path: str | os.PathLike, with_labels: bool = True) -> list[ChoiceExample]:
        rows = read_rows(path)
        needed = [self.question_column, *(self.choice_columns or [self.choices_column])]
        options = {self.question_column: "--question-column", self.choices_column: "--choice-columns",
                   self.label_column: "--label-column"}
        require_columns(rows, needed + ([self.label_column] if with_labels else []), path, options)
        examples = [self._example(row, with_labels) for row in rows]
        counts = {len(ex.choices) for ex in examples}
        if len(counts) > 1:
            first = next(ex for ex in examples if len(ex.choices) != len(examples[0].choices))
            raise DataError(f"{first.where}: {len(first.choices)} choices, but {examples[0].where} has "
                            f"{len(examples[0].choices)}; every question needs the same number of choices")
        return examples

    def _example(self, row: Row, with_labels: bool) -> ChoiceExample:
        question = row[self.question_column]
        if self.choice_columns:
            choices = [row[c] for c in self.choice_columns]
        else:
            choices = row[self.choices_column]
            if not isinstance(choices, list):
                raise DataError(f"{row.where}: column {self.choices_column!r} must hold a list of choices, found "
                                f"{choices!r:.60}; for one column per choice pass --choice-columns A,B,...")
        if not isinstance(question, str) or not all(isinstance(c, str) for c in choices) or len(choices) < 2:
            raise DataError(f"{row.where}: a question (text) and at least two choices (texts) are needed, found "
                            f"{question!r:.40} and {choices!r:.60}")
        label = None
        if with_labels:
            raw = row[self.label_column]
            try:
                label = int(raw)
            except (TypeError, ValueError):
                label = -1
            if label < 0 or label >= len(choices) or isinstance(raw, bool) or str(raw).strip() != str(label):
                raise DataError(f"{row.where}: label {raw!r} is not the index of one of the {len(choices)} choices "
                                f"(0 to {len(choices) - 1})")
        return ChoiceExample(question, list(choices), label, row.where)

    def label_config(self, examples: list[ChoiceExample]) -> dict[str, Any]:
        return {}

    def use_config(self, config: Any) -> None:
        pass

    def features(self, examples: list[ChoiceExample], tokenizer: Any, max_length: int,
                 with_labels: bool = True) -> list[dict[str, Any]]:
        out = []
        for ex in examples:
            enc = tokenizer([ex.question] * len(ex.choices), ex.choices, truncation=True, max_length=max_length)
            feature: dict[str, Any] = {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]}
            if with_labels:
                feature["labels"] = ex.label
            out.append(feature)
        return out

    def probabilities(self, model: Any, tokenizer: Any, examples: list[ChoiceExample], max_length: int,
                      batch_size: int = 8, with_labels: bool = False) -> tuple[torch.Tensor, float | None]:
        features = self.features(examples, tokenizer, max_length, with_labels=with_labels)
        outputs, loss = model_outputs(model, features, pad_id_of(tokenizer), batch_size)
        return torch.stack(outputs["logits"]).softmax(-1), loss                     # (N, C)

    def evaluate(self, model: Any, tokenizer: Any, examples: list[ChoiceExample], max_length: int,
                 batch_size: int = 8) -> dict[str, float]:
        probs, loss = self.probabilities(model, tokenizer, examples, max_length, batch_size, with_labels=True)
        metrics = {"accuracy": accuracy([ex.label for ex in examples], probs.argmax(-1).tolist())}
        if loss is not None:
            metrics["loss"] = loss
        return metrics

    def predict(self, model: Any, tokenizer: Any, examples: list[ChoiceExample], max_length: int,
                batch_size: int = 8) -> list[dict[str, Any]]:
        probs, _ = self.probabilities(model, tokenizer, examples, max_length, batch_size)
        return [{"label": int(p.argmax()), "score": float(p.max()), "scores": p.tolist()} for p in probs]
