"""Task preprocessing by hand: problem-type detection, text pairs, word -> sub-token label alignment,
QA answer spans -> token positions, multiple-choice columns."""

from __future__ import annotations

import json

import finetune_fixtures as ff
import pytest

from fastdeberta.tasks import (
    IGNORE_INDEX,
    MultipleChoiceTask,
    QuestionAnsweringTask,
    SequenceClassificationTask,
    TokenClassificationTask,
)
from fastdeberta.training.data import DataError


def _jsonl(tmp_path, rows, name="d.jsonl"):
    return ff.write_jsonl(tmp_path / name, rows)


@pytest.mark.parametrize("labels, kind, config", [
    (["pos", "neg", "pos"], "single_label_classification", {"neg": 0, "pos": 1}),
    ([3, 1, 2], "single_label_classification", {"1": 0, "2": 1, "3": 2}),
    ([0.5, 1.25, -2.0], "regression", {"LABEL_0": 0}),
    ([["a", "b"], ["b"], []], "multi_label_classification", {"a": 0, "b": 1}),
])
def test_problem_type_comes_from_the_labels(tmp_path, labels, kind, config):
    task = SequenceClassificationTask()
    examples = task.read(_jsonl(tmp_path, [{"text": f"t{i}", "label": v} for i, v in enumerate(labels)]))
    fields = task.label_config(examples)
    assert fields["problem_type"] == kind and fields["label2id"] == config
    features = task.features(examples, ff.tokenizer(), 16)
    if kind == "multi_label_classification":
        assert [f["labels"] for f in features] == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    elif kind == "regression":
        assert [f["labels"] for f in features] == labels


def test_text_pairs_get_segment_ids_and_missing_pairs_work(tmp_path):
    task = SequenceClassificationTask()
    examples = task.read(_jsonl(tmp_path, [{"text": "free software", "text_pair": "you may copy", "label": "a"},
                                           {"text": "the file", "label": "b"}]))
    task.label_config(examples)
    first, second = task.features(examples, ff.tokenizer(), 32)
    tok = ff.tokenizer()
    assert first["input_ids"] == tok("free software", "you may copy")["input_ids"]
    assert set(first["token_type_ids"]) == {0, 1} and first["token_type_ids"][-1] == 1
    assert second["input_ids"] == tok("the file", "")["input_ids"]


def test_word_labels_align_to_first_or_all_sub_tokens(tmp_path):
    rows = [{"tokens": ["Alice", "may", "copy", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}]
    path = _jsonl(tmp_path, rows)
    tok = ff.tokenizer()
    pieces = [len(tok(w, add_special_tokens=False)["input_ids"]) for w in rows[0]["tokens"]]
    assert pieces[0] > 1 and pieces[3] > 1          # multi-piece names make the alignment matter
    first = TokenClassificationTask()
    examples = first.read(path)
    first.label_config(examples)
    assert first.labels.names == ["O", "B-LOC", "B-PER"]
    (feature,) = first.features(examples, tok, 32)
    ids = {n: i for i, n in enumerate(first.labels.names)}
    per, loc, o = ids["B-PER"], ids["B-LOC"], ids["O"]
    expected = [IGNORE_INDEX]                                                      # [CLS]
    for tag, count in zip((per, o, o, loc), pieces):
        expected += [tag] + [IGNORE_INDEX] * (count - 1)                            # first piece of each word
    expected += [IGNORE_INDEX]                                                     # [SEP]
    assert feature["labels"] == expected
    every = TokenClassificationTask(label_all_tokens=True)
    rows[0]["tags"] = ["B-PER", "O", "O", "I-PER"]
    rows.append({"tokens": ["x"], "tags": ["I-PER"]})
    examples = every.read(_jsonl(tmp_path, rows, "e.jsonl"))
    every.label_config(examples)
    (feature, _) = every.features(examples, tok, 32)
    b, i = every.labels.label2id["B-PER"], every.labels.label2id["I-PER"]
    assert feature["labels"][1:1 + pieces[0]] == [b] + [i] * (pieces[0] - 1)     # B- then I- on continuations


def test_unknown_tag_at_evaluation_names_line_and_word(tmp_path):
    task = TokenClassificationTask()
    task.label_config(task.read(_jsonl(tmp_path, [{"tokens": ["a"], "tags": ["B-PER"]}, {"tokens": ["b"], "tags": ["O"]}])))
    bad = task.read(_jsonl(tmp_path, [{"tokens": ["a", "Rome"], "tags": ["O", "B-LOC"]}], "bad.jsonl"))
    with pytest.raises(DataError, match=r"bad\.jsonl:1 \(word 2, 'Rome'\): label 'B-LOC' is not one the model knows"):
        task.features(bad, ff.tokenizer(), 32)


def test_qa_answer_spans_become_token_positions(tmp_path):
    rows = ff.qa_rows(6) + [{"id": "none", "question": "what ?", "context": "free software is free",
                            "answers": {"text": [], "answer_start": []}}]
    task = QuestionAnsweringTask(doc_stride=4)
    examples = task.read(_jsonl(tmp_path, rows))
    tok = ff.tokenizer()
    features = task.features(examples, tok, 24)
    assert len(features) > len(examples)                   # short windows: some contexts need several
    for f in features:
        ex = examples[f["_example"]]
        s, e = f["start_positions"], f["end_positions"]
        if (s, e) == (0, 0):
            answer = ex.answers[0] if ex.answers else None
            if answer:   # the window does not hold the whole answer
                offsets = [o for o in f["_offsets"] if o is not None]
                a0, a1 = answer["answer_start"], answer["answer_start"] + len(answer["text"])
                assert not (offsets[0][0] <= a0 and offsets[-1][1] >= a1)
            continue
        span = ex.context[f["_offsets"][s][0]:f["_offsets"][e][1]]
        assert span == ex.answers[0]["text"]
    assert any(f["start_positions"] > 0 for f in features)


def test_multiple_choice_columns_and_bad_label(tmp_path):
    rows = [{"q": "free software", "a": "yes", "b": "no", "label": 1}]
    task = MultipleChoiceTask(question_column="q", choice_columns=["a", "b"])
    (example,) = task.read(_jsonl(tmp_path, rows))
    assert example.choices == ["yes", "no"] and example.label == 1
    (feature,) = task.features([example], ff.tokenizer(), 16)
    assert len(feature["input_ids"]) == 2 and feature["labels"] == 1
    rows[0]["label"] = 2
    with pytest.raises(DataError, match=r"d\.jsonl:1: label 2 is not the index of one of the 2 choices"):
        task.read(_jsonl(tmp_path, rows))
    (tmp_path / "uneven.jsonl").write_text(json.dumps({"question": "q", "choices": ["a", "b"], "label": 0}) + "\n"
                                           + json.dumps({"question": "q", "choices": ["a", "b", "c"], "label": 0}) + "\n")
    with pytest.raises(DataError, match=r"uneven\.jsonl:2: 3 choices, but .*uneven\.jsonl:1 has 2"):
        MultipleChoiceTask().read(tmp_path / "uneven.jsonl")
