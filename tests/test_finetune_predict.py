"""predict for question answering and multiple choice: one JSON line per input record, in input order,
in the pipeline format; the task comes from the checkpoint's architecture when there is no finetune.json."""

from __future__ import annotations

import json

import finetune_fixtures as ff
import pytest
import torch

from fastdeberta import TASKS
from fastdeberta.cli.main import main


def _saved(tmp_path, task: str):
    torch.manual_seed(0)
    model = TASKS[task](ff.tiny_config(num_labels=2))
    model.tokenizer = ff.tokenizer()
    folder = tmp_path / task
    model.save_pretrained(folder)
    return folder


def test_question_answering_predictions_in_input_order(tmp_path, single_thread):
    folder = _saved(tmp_path, "question-answering")
    rows = ff.qa_rows(5)
    data = ff.write_jsonl(tmp_path / "q.jsonl", rows)
    out = tmp_path / "answers.jsonl"
    assert main(["predict", "--model", str(folder), "--input", str(data), "--output", str(out)]) == 0
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["id"] for a in answers] == [r["id"] for r in rows]
    for answer, row in zip(answers, rows):
        assert set(answer) == {"id", "score", "start", "end", "answer"}
        assert answer["answer"] == row["context"][answer["start"]:answer["end"]]
        assert 0.0 <= answer["score"] <= 1.0
    assert main(["predict", "--model", str(folder), "--input", str(data), "--output", str(out), "--top-k", "2",
                 "--handle-impossible-answer"]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) == {"id", "answers"} and len(first["answers"]) == 2


def test_multiple_choice_predictions(tmp_path, single_thread):
    folder = _saved(tmp_path, "multiple-choice")
    rows = ff.choice_rows(4)
    data = ff.write_jsonl(tmp_path / "c.jsonl", [{k: v for k, v in r.items() if k != "label"} for r in rows])
    out = tmp_path / "choices.jsonl"
    assert main(["predict", "--model", str(folder), "--input", str(data), "--output", str(out)]) == 0
    predictions = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(predictions) == 4
    for p in predictions:
        assert set(p) == {"label", "score", "scores"} and len(p["scores"]) == 3
        assert p["score"] == pytest.approx(max(p["scores"])) and p["label"] == p["scores"].index(max(p["scores"]))
        assert sum(p["scores"]) == pytest.approx(1.0, abs=1e-5)
