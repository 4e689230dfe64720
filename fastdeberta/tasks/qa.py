"""Extractive question answering: windows over long contexts, answer spans back to characters.

Each (question, context) becomes one or more features ``[CLS] question [SEP] context-window [SEP]``;
windows of the context overlap by ``doc_stride`` tokens (transformers' meaning of the word). A
feature keeps the character offsets of its context tokens, so a span of tokens maps back to a span
of the original context string.

Decoding follows transformers' question-answering pipeline: in each window the start and end logits
get a softmax over the context tokens plus [CLS], a span's score is p(start) * p(end) with
``start <= end < start + max_answer_len``, and the no-answer score is p_cls(start) * p_cls(end)
(its smallest value over the windows). Evaluation uses the same decoding, with the no-answer option
on when the data holds unanswerable questions (SQuAD v2).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import InvalidInputError
from ..training.data import QAExample, read_squad
from .base import Task, model_outputs, pad_id_of
from .squad_metrics import squad_scores

__all__ = ["QuestionAnsweringTask", "decode_answers", "qa_features"]


def qa_features(tokenizer: Any, question: str, context: str, max_length: int = 384, doc_stride: int = 128,
                max_question_len: int = 64) -> list[dict[str, Any]]:
    """The windows of one question. Each feature: input_ids, token_type_ids, ``_offsets`` (character
    span in ``context`` of each token; None outside the context)."""
    q_ids = list(tokenizer(question, add_special_tokens=False)["input_ids"])[:max_question_len]
    enc = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    c_ids, c_offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    window = max_length - len(q_ids) - 3
    if window < 1:
        raise InvalidInputError(f"max_length={max_length} leaves no room for the context after a {len(q_ids)}-token "
                         "question; raise max_length or lower max_question_len")
    if doc_stride >= window:
        raise InvalidInputError(f"doc_stride={doc_stride} must be smaller than the context window ({window} tokens = "
                         f"max_length {max_length} - question - 3 special tokens); lower it")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    head = [cls_id, *q_ids, sep_id]
    features = []
    start = 0
    while True:
        piece = c_ids[start:start + window]
        ids = head + piece + [sep_id]
        features.append({
            "input_ids": ids,
            "token_type_ids": [0] * len(head) + [1] * (len(piece) + 1),
            "_offsets": [None] * len(head) + c_offsets[start:start + window] + [None],
        })
        if start + window >= len(c_ids):
            break
        start += window - doc_stride
    return features


def _token_span(offsets: list[Any], char_start: int, char_end: int) -> tuple[int, int] | None:
    """Token positions of the first and last context token of a character span, when the window holds it all."""
    inside = [t for t, o in enumerate(offsets) if o is not None]
    if not inside or offsets[inside[0]][0] > char_start or offsets[inside[-1]][1] < char_end:
        return None
    first = next(t for t in inside if offsets[t][1] > char_start)
    last = max(t for t in inside if offsets[t][0] < char_end)
    return first, last


def decode_answers(start_logits: list[torch.Tensor], end_logits: list[torch.Tensor], offsets: list[list[Any]],
                   context: str, top_k: int = 1, max_answer_len: int = 15,
                   handle_impossible_answer: bool = False) -> list[dict[str, Any]]:
    """The ``top_k`` best answers ``{score, start, end, answer}`` over the windows of one question."""
    candidates: list[dict[str, Any]] = []
    null_score = None
    for start_row, end_row, window_offsets in zip(start_logits, end_logits, offsets):
        allowed = torch.tensor([o is not None for o in window_offsets])
        allowed[0] = True                                              # [CLS]: the no-answer position
        p_start = start_row.float().masked_fill(~allowed, -10000.0).softmax(-1)
        p_end = end_row.float().masked_fill(~allowed, -10000.0).softmax(-1)
        null = float(p_start[0] * p_end[0])
        null_score = null if null_score is None else min(null_score, null)
        p_start[0] = p_end[0] = 0.0
        p_start = p_start.masked_fill(~allowed, 0.0)
        p_end = p_end.masked_fill(~allowed, 0.0)
        # (L, L) scores of span (s, e): s <= e < s + max_answer_len
        spans = torch.triu(torch.tril(p_start[:, None] * p_end[None, :], max_answer_len - 1))
        k = min(top_k, int((spans > 0).sum()))
        if k == 0:
            continue
        values, flat = spans.flatten().topk(k)
        width = spans.shape[1]
        for score, index in zip(values.tolist(), flat.tolist()):
            s, e = divmod(index, width)
            char_start, char_end = window_offsets[s][0], window_offsets[e][1]
            candidates.append({"score": score, "start": int(char_start), "end": int(char_end),
                               "answer": context[char_start:char_end]})
    if handle_impossible_answer and null_score is not None:
        candidates.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
    candidates.sort(key=lambda c: c["score"], reverse=True)
    seen, out = set(), []
    for c in candidates:                         # overlapping windows can propose the same span twice
        key = (c["start"], c["end"])
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out[:top_k]


class QuestionAnsweringTask(Task):
    name = "question-answering"
    model_task = "question-answering"
    pipeline_task = "question-answering"
    metric = "f1"

    def __init__(self, doc_stride: int = 128, max_answer_len: int = 30, max_question_len: int = 64, **_: Any):
        self.doc_stride, self.max_answer_len, self.max_question_len = doc_stride, max_answer_len, max_question_len

    def read(self, path: str | os.PathLike, with_labels: bool = True) -> list[QAExample]:
        return read_squad(path, require_answers=with_labels)

    def label_config(self, examples: list[QAExample]) -> dict[str, Any]:
        return {"num_labels": 2}

    def use_config(self, config: Any) -> None:
        pass

    def _windows(self, ex: QAExample, tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
        stride = min(self.doc_stride, max(0, (max_length - self.max_question_len - 3) // 2))
        return qa_features(tokenizer, ex.question, ex.context, max_length, stride, self.max_question_len)

    def features(self, examples: list[QAExample], tokenizer: Any, max_length: int,
                 with_labels: bool = True) -> list[dict[str, Any]]:
        """Training features: every window, labelled with the token span of the first answer, or
        [CLS] (position 0) when the question has no answer or the window does not hold it."""
        out = []
        for n, ex in enumerate(examples):
            for feature in self._windows(ex, tokenizer, max_length):
                feature["_example"] = n
                if with_labels:
                    span = None
                    if ex.answers:
                        answer = ex.answers[0]
                        start = answer["answer_start"]
                        span = _token_span(feature["_offsets"], start, start + len(answer["text"]))
                    feature["start_positions"], feature["end_positions"] = span or (0, 0)
                out.append(feature)
        return out

    def predict(self, model: Any, tokenizer: Any, examples: list[QAExample], max_length: int,
                batch_size: int = 32, handle_impossible_answer: bool = False, top_k: int = 1) -> list[list[dict]]:
        features = self.features(examples, tokenizer, max_length, with_labels=False)
        outputs, _ = model_outputs(model, features, pad_id_of(tokenizer), batch_size,
                                   keys=("start_logits", "end_logits"), per_token=True)
        by_example: list[list[int]] = [[] for _ in examples]
        for i, feature in enumerate(features):
            by_example[feature["_example"]].append(i)
        return [decode_answers([outputs["start_logits"][i] for i in rows], [outputs["end_logits"][i] for i in rows],
                               [features[i]["_offsets"] for i in rows], ex.context, top_k, self.max_answer_len,
                               handle_impossible_answer)
                for ex, rows in zip(examples, by_example)]

    def evaluate(self, model: Any, tokenizer: Any, examples: list[QAExample], max_length: int,
                 batch_size: int = 32) -> dict[str, float]:
        impossible = any(ex.is_impossible for ex in examples)
        answers = self.predict(model, tokenizer, examples, max_length, batch_size, handle_impossible_answer=impossible)
        predictions = {ex.id: (best[0]["answer"] if best else "") for ex, best in zip(examples, answers)}
        return squad_scores(predictions, {ex.id: [a["text"] for a in ex.answers] for ex in examples})
