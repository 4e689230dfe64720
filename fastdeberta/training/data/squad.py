"""Extractive question answering data: SQuAD v1.1 / v2.0 JSON, or JSON Lines in the ``datasets`` form.

SQuAD JSON: ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question", "answers":
[{"text", "answer_start"}], "is_impossible"}]}]}]}``. JSON Lines: one question per line with
``id``, ``question``, ``context`` and ``answers: {"text": [...], "answer_start": [...]}`` (empty
lists for an unanswerable question). Each answer's text must appear in the context at its start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .readers import DataError, _check_file, read_rows

__all__ = ["QAExample", "read_squad"]


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[dict[str, Any]] = field(default_factory=list)   # [{"text", "answer_start"}]; [] = impossible
    where: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers


def read_squad(path: str | os.PathLike, require_answers: bool = True) -> list[QAExample]:
    """Questions with their contexts and gold answers, in file order."""
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".jsonl":
        examples = [_from_row(row.data, row.where, require_answers) for row in read_rows(path)]
    elif path.suffix.lower() == ".json":
        examples = _read_squad_json(path, require_answers)
    else:
        raise DataError(f"unsupported question-answering file type {path.suffix or '(none)'!r} for {path}; use "
                        "SQuAD .json or .jsonl")
    if not examples:
        raise DataError(f"{path} holds no questions")
    seen: dict[str, str] = {}
    for ex in examples:
        if ex.id in seen:
            raise DataError(f"{ex.where}: question id {ex.id!r} also used at {seen[ex.id]}; ids must be unique")
        seen[ex.id] = ex.where
    return examples


def _read_squad_json(path: Path, require_answers: bool) -> list[QAExample]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{path}: not SQuAD JSON: expected an object with a 'data' list of articles")
    examples = []
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise DataError(f"{path}: data[{a}].paragraphs[{p}] has no 'context' string")
            for q, qa in enumerate(paragraph.get("qas", [])):
                where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                answers = [] if qa.get("is_impossible") else qa.get("answers")
                row = {"id": qa.get("id"), "question": qa.get("question"), "context": context,
                       "answers": answers}
                examples.append(_from_row(row, where, require_answers))
    return examples


def _from_row(row: dict[str, Any], where: str, require_answers: bool) -> QAExample:
    for name in ("question", "context"):
        if not isinstance(row.get(name), str):
            raise DataError(f"{where}: field {name!r} must be a string (fields: {sorted(row)})")
    qid = row.get("id")
    if qid is None:
        raise DataError(f"{where}: a question needs an 'id'")
    answers = row.get("answers")
    if answers is None:
        if require_answers:
            raise DataError(f"{where}: no 'answers' field; give [] (or {{'text': [], 'answer_start': []}}) for an "
                            "unanswerable question")
        answers = []
    if isinstance(answers, dict):                      # the `datasets` layout: parallel lists
        texts, starts = answers.get("text", []), answers.get("answer_start", [])
        if len(texts) != len(starts):
            raise DataError(f"{where}: answers has {len(texts)} texts but {len(starts)} answer_start values")
        answers = [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]
    context = row["context"]
    checked = []
    for answer in answers:
        text, start = answer.get("text"), answer.get("answer_start")
        if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
            raise DataError(f"{where}: each answer needs 'text' (string) and 'answer_start' (int), found {answer!r:.80}")
        if context[start:start + len(text)] != text:
            raise DataError(f"{where} (id {qid!r}): answer {text!r:.60} is not at answer_start {start} of the "
                            f"context (found {context[start:start + len(text)]!r:.60}); fix answer_start")
        checked.append({"text": text, "answer_start": start})
    return QAExample(str(qid), row["question"], context, checked, where)
