"""Task pipelines in transformers' output formats: text classification, token classification (NER),
extractive question answering and zero-shot classification.

* ``text-classification``: ``[{"label", "score"}]``. As in transformers, without ``top_k`` a single
  text gives a one-element list and a list of texts one dict per text; with ``top_k`` (``None`` = all
  labels) a text gives a list of dicts sorted by score, and a list of texts a list of such lists.
  A text pair is ``{"text": ..., "text_pair": ...}``.
* ``token-classification``: a list of entities per text. ``aggregation_strategy="none"``: one dict
  per token ``{entity, score, index, word, start, end}``; ``simple``: adjacent tokens of one type
  grouped into ``{entity_group, score, word, start, end}``; ``first`` / ``average`` / ``max``: tokens
  first merged into words (using the tokens' own SentencePiece word starts, ``▁``) then grouped.
* ``question-answering``: ``{score, start, end, answer}`` (a list of them when ``top_k > 1``).
* ``zero-shot-classification``: ``{sequence, labels, scores}``, labels sorted by score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputTypeError, InvalidInputError
from ..tasks.base import model_outputs, pad_id_of
from ..tasks.classification import default_function, scores_from_logits
from ..tasks.qa import decode_answers, qa_features
from ..tasks.zero_shot import parse_labels, zero_shot_scores
from .embed import _check_texts, default_max_length
from .pipelines import Pipeline

__all__ = ["AGGREGATIONS", "QuestionAnsweringPipeline", "TextClassificationPipeline",
           "TokenClassificationPipeline", "ZeroShotClassificationPipeline"]

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def _check_model(model: Any, task: str, pipeline_task: str) -> None:
    if getattr(model, "task", None) != task:
        raise InvalidInputError(f"{pipeline_task} needs a {task} model, got {type(model).__name__} (task "
                         f"{getattr(model, 'task', None)!r}); load it with fastdeberta.from_pretrained(path, "
                         f"task={task!r}) or pass the path instead")


class _TaskPipeline(Pipeline):
    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None, batch_size: int = 8,
                 max_length: int | None = None):
        _check_model(model, self.load_task or "", self.task)
        super().__init__(model, tokenizer, device)
        self.batch_size = batch_size
        self.max_length = max_length or default_max_length(model, self.tokenizer)

    def _label(self, index: int) -> str:
        id2label = self.model.config.id2label or {}
        return str(id2label.get(index, f"LABEL_{index}"))


class TextClassificationPipeline(_TaskPipeline):
    task = "text-classification"
    load_task = "sequence-classification"

    def __call__(self, inputs: Any, top_k: Any = "legacy", function_to_apply: str | None = None,
                 batch_size: int | None = None) -> list:
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else list(inputs)
        texts, pairs = [], []
        for i, item in enumerate(items):
            if isinstance(item, dict):
                if "text" not in item or not set(item) <= {"text", "text_pair"}:
                    raise InvalidInputError(f"input {i}: a text pair is {{'text': ..., 'text_pair': ...}}, got keys {sorted(item)}")
                texts.append(item["text"])
                pairs.append(item.get("text_pair"))
            else:
                texts.append(item)
                pairs.append(None)
        _check_texts(texts)
        if top_k != "legacy" and top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)
                                                          or top_k < 1):
            raise InvalidInputError(f"top_k must be a positive int or None (all labels), got {top_k!r}")
        function = function_to_apply or default_function(self.model.config)
        scores = self.scores(texts, pairs, function, batch_size)                      # (N, num_labels)
        results = [self._format(row, top_k) for row in scores]
        if top_k == "legacy":   # transformers: a bare string gives a one-element list, a dict (pair) a dict
            return [results[0]] if isinstance(inputs, str) else results[0] if single else results
        return results[0] if single else results

    def scores(self, texts: list[str], pairs: list[str | None], function: str = "softmax",
               batch_size: int | None = None) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.model.config.labels_count)
        has_pairs = any(p is not None for p in pairs)
        enc = self.tokenizer(texts, [p or "" for p in pairs] if has_pairs else None, truncation=True,
                             max_length=self.max_length)
        features = [{"input_ids": ids, "token_type_ids": types}
                    for ids, types in zip(enc["input_ids"], enc["token_type_ids"])]
        outputs, _ = model_outputs(self.model, features, pad_id_of(self.tokenizer), batch_size or self.batch_size)
        return scores_from_logits(torch.stack(outputs["logits"]), function)

    def _format(self, scores: torch.Tensor, top_k: Any) -> Any:
        if top_k == "legacy":
            best = int(scores.argmax())
            return {"label": self._label(best), "score": float(scores[best])}
        ranked = sorted(({"label": self._label(i), "score": float(s)} for i, s in enumerate(scores.tolist())),
                        key=lambda d: d["score"], reverse=True)
        return ranked if top_k is None else ranked[:top_k]


class TokenClassificationPipeline(_TaskPipeline):
    task = "token-classification"
    load_task = "token-classification"

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None, batch_size: int = 8,
                 max_length: int | None = None, aggregation_strategy: str = "none",
                 ignore_labels: Sequence[str] = ("O",), stride: int | None = None):
        super().__init__(model, tokenizer, device, batch_size, max_length)
        self.aggregation_strategy = _check_aggregation(aggregation_strategy)
        self.ignore_labels = list(ignore_labels)
        self.stride = stride

    def __call__(self, inputs: str | Sequence[str], aggregation_strategy: str | None = None,
                 ignore_labels: Sequence[str] | None = None, batch_size: int | None = None,
                 stride: int | None = None) -> list:
        """Entities of each text. ``stride``: texts longer than the model's length are read in windows that
        overlap by ``stride`` tokens (overlapping entities: the longer, then the higher-scored one is kept,
        as in transformers); without it they are truncated."""
        texts, single = _check_texts(inputs)
        strategy = _check_aggregation(aggregation_strategy or self.aggregation_strategy)
        ignore = self.ignore_labels if ignore_labels is None else list(ignore_labels)
        stride = self.stride if stride is None else stride
        if stride is not None and strategy == "none":
            raise InvalidInputError("stride needs an aggregation_strategy other than 'none' (overlapping windows see the "
                             "same tokens twice), as in transformers")
        windows, owner = [], []
        for n, text in enumerate(texts):
            for window in self._windows(text, stride):
                windows.append(window)
                owner.append(n)
        outputs, _ = model_outputs(self.model, [{"input_ids": ids} for ids, _ in windows], pad_id_of(self.tokenizer),
                                   batch_size or self.batch_size, per_token=True)
        found: list[list[dict[str, Any]]] = [[] for _ in texts]
        counts = [0] * len(texts)
        for n, (ids, offsets), logits in zip(owner, windows, outputs["logits"]):
            entities = self._aggregate(self._tokens(texts[n], ids, offsets, logits.softmax(-1)), strategy)
            found[n] += [e for e in entities if e.get("entity", e.get("entity_group")) not in ignore]
            counts[n] += 1
        results = [_merge_overlapping(entities) if count > 1 else entities for entities, count in zip(found, counts)]
        return results[0] if single else results

    def _windows(self, text: str, stride: int | None) -> list[tuple[list[int], list[Any]]]:
        """``(input_ids, offsets)`` of each window of ``text`` ([CLS] ... [SEP]; one truncated window without stride)."""
        if stride is None:
            enc = self.tokenizer(text, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
            return [(list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]])]
        width = self.max_length - 2
        if not isinstance(stride, int) or isinstance(stride, bool) or not 0 <= stride < width:
            raise InvalidInputError(f"stride must be an int in [0, {width}) (the window is max_length - 2 = {width} tokens), "
                             f"got {stride!r}")
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        cls_id, sep_id, edge = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, (0, 0)
        out, start = [], 0
        while True:
            out.append(([cls_id, *ids[start:start + width], sep_id], [edge, *offsets[start:start + width], edge]))
            if start + width >= len(ids):
                return out
            start += width - stride

    def _tokens(self, text: str, ids: list[int], offsets: list[Any], probs: torch.Tensor) -> list[dict[str, Any]]:
        """One record per non-special token: its piece, scores, position and whether it continues a word."""
        specials = set(self.tokenizer.all_special_ids) - {self.tokenizer.unk_token_id}
        word_start = "Ġ" if getattr(self.tokenizer, "backend", "spm") != "spm" else "▁"
        out = []
        for index, (token_id, (start, end)) in enumerate(zip(ids, offsets)):
            if token_id in specials:
                continue
            piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
            if token_id == self.tokenizer.unk_token_id:
                piece = text[start:end]
                continues = start > 0 and not text[start - 1].isspace()
            else:
                continues = bool(out) and not piece.startswith(word_start)
            out.append({"word": piece, "id": int(token_id), "scores": probs[index], "start": int(start),
                        "end": int(end), "index": index, "is_subword": continues})
        return out

    def _aggregate(self, tokens: list[dict[str, Any]], strategy: str) -> list[dict[str, Any]]:
        if strategy in ("none", "simple"):
            entities = [{"entity": self._label(int(t["scores"].argmax())), "score": float(t["scores"].max()),
                         "index": t["index"], "word": t["word"], "start": t["start"], "end": t["end"],
                         "_pieces": [t]} for t in tokens]
        else:
            words: list[list[dict[str, Any]]] = []
            for t in tokens:
                if t["is_subword"] and words:
                    words[-1].append(t)
                else:
                    words.append([t])
            entities = [self._word_entity(w, strategy) for w in words]
        if strategy == "none":
            for e in entities:
                del e["_pieces"]
            return entities
        return self._group(entities)

    def _word_entity(self, pieces: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
        if strategy == "first":
            scores = pieces[0]["scores"]
        elif strategy == "max":
            scores = max(pieces, key=lambda p: float(p["scores"].max()))["scores"]
        else:
            scores = torch.stack([p["scores"] for p in pieces]).mean(0)
        best = int(scores.argmax())
        return {"entity": self._label(best), "score": float(scores[best]), "word": self._text(pieces),
                "start": pieces[0]["start"], "end": pieces[-1]["end"], "_pieces": pieces}

    def _text(self, pieces: list[dict[str, Any]]) -> str:
        to_string = getattr(self.tokenizer, "convert_tokens_to_string", None)
        if to_string is not None:
            return to_string([p["word"] for p in pieces])
        return self.tokenizer.decode([p["id"] for p in pieces]).strip()

    def _group(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Adjacent entities of one type (a B- tag starts a new group) -> one entity_group each."""
        groups: list[list[dict[str, Any]]] = []
        for e in entities:
            prefix, kind = _tag(e["entity"])
            if groups and prefix != "B" and _tag(groups[-1][-1]["entity"])[1] == kind:
                groups[-1].append(e)
            else:
                groups.append([e])
        return [{"entity_group": _tag(g[0]["entity"])[1], "score": sum(e["score"] for e in g) / len(g),
                 "word": self._text([p for e in g for p in e["_pieces"]]), "start": g[0]["start"],
                 "end": g[-1]["end"]} for g in groups]


def _merge_overlapping(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities from overlapping windows, sorted by start; of two that overlap, the longer (then the
    higher-scored) one stays (transformers' rule)."""
    if not entities:
        return entities
    ordered = sorted(entities, key=lambda e: e["start"])
    kept, current = [], ordered[0]
    for entity in ordered[1:]:
        if current["start"] <= entity["start"] < current["end"]:
            longer = entity["end"] - entity["start"] - (current["end"] - current["start"])
            if longer > 0 or (longer == 0 and entity["score"] > current["score"]):
                current = entity
        else:
            kept.append(current)
            current = entity
    kept.append(current)
    return kept


def _tag(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _check_aggregation(strategy: str) -> str:
    value = str(getattr(strategy, "value", strategy)).lower()
    if value not in AGGREGATIONS:
        raise InvalidInputError(f"aggregation_strategy must be one of {AGGREGATIONS}, got {strategy!r}")
    return value


class QuestionAnsweringPipeline(_TaskPipeline):
    task = "question-answering"
    load_task = "question-answering"

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None, batch_size: int = 8,
                 max_length: int | None = None, doc_stride: int = 128, max_answer_len: int = 15,
                 max_question_len: int = 64, top_k: int = 1, handle_impossible_answer: bool = False):
        super().__init__(model, tokenizer, device, batch_size, max_length or 384)
        self.defaults = {"doc_stride": doc_stride, "max_answer_len": max_answer_len,
                         "max_question_len": max_question_len, "top_k": top_k,
                         "handle_impossible_answer": handle_impossible_answer}

    def __call__(self, question: Any = None, context: str | Sequence[str] | None = None, **options: Any) -> Any:
        """``qa(question=..., context=...)``, ``qa({"question", "context"})`` or a list of such dicts."""
        unknown = set(options) - set(self.defaults) - {"batch_size"}
        if unknown:
            raise InputTypeError(f"unexpected options {sorted(unknown)}; known: {sorted(self.defaults)}")
        settings = {**self.defaults, **{k: v for k, v in options.items() if k in self.defaults}}
        pairs, single = _qa_inputs(question, context)
        top_k = settings["top_k"]
        if not isinstance(top_k, int) or top_k < 1:
            raise InvalidInputError(f"top_k must be a positive int, got {top_k!r}")
        features, owner = [], []
        for n, (q, c) in enumerate(pairs):
            for f in qa_features(self.tokenizer, q, c, self.max_length, settings["doc_stride"],
                                 settings["max_question_len"]):
                features.append(f)
                owner.append(n)
        outputs, _ = model_outputs(self.model, features, pad_id_of(self.tokenizer),
                                   options.get("batch_size") or self.batch_size,
                                   keys=("start_logits", "end_logits"), per_token=True)
        windows: list[list[int]] = [[] for _ in pairs]          # feature rows of each question
        for i, n in enumerate(owner):
            windows[n].append(i)
        results = []
        for (_, c), rows in zip(pairs, windows):
            answers = decode_answers([outputs["start_logits"][i] for i in rows], [outputs["end_logits"][i] for i in rows],
                                     [features[i]["_offsets"] for i in rows], c, top_k, settings["max_answer_len"],
                                     settings["handle_impossible_answer"])
            results.append(answers[0] if top_k == 1 and answers else answers)
        return results[0] if single else results


def _qa_inputs(question: Any, context: Any) -> tuple[list[tuple[str, str]], bool]:
    if context is None:
        items = question if isinstance(question, list) else [question]
        if not all(isinstance(x, dict) and {"question", "context"} <= set(x) for x in items):
            raise InvalidInputError("give question=... and context=..., or dicts {'question': ..., 'context': ...}")
        pairs = [(x["question"], x["context"]) for x in items]
        single = not isinstance(question, list)
    else:
        single = isinstance(question, str)
        questions = [question] if single else list(question)
        contexts = [context] * len(questions) if isinstance(context, str) else list(context)
        if len(contexts) != len(questions):
            raise InvalidInputError(f"{len(questions)} questions but {len(contexts)} contexts")
        pairs = list(zip(questions, contexts))
    for q, c in pairs:
        if not isinstance(q, str) or not isinstance(c, str) or not q.strip() or not c.strip():
            raise InvalidInputError(f"question and context must be non-empty strings, got {q!r:.60} and {c!r:.60}")
    return pairs, single


class ZeroShotClassificationPipeline(_TaskPipeline):
    task = "zero-shot-classification"
    load_task = "sequence-classification"

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None, batch_size: int = 8,
                 max_length: int | None = None, hypothesis_template: str = "This example is {}.",
                 multi_label: bool = False):
        super().__init__(model, tokenizer, device, batch_size, max_length)
        from ..tasks.zero_shot import entailment_ids

        entailment_ids(model.config)            # refuse a model without an entailment label now
        self.hypothesis_template, self.multi_label = hypothesis_template, multi_label

    def __call__(self, sequences: str | Sequence[str], candidate_labels: str | Sequence[str] | None = None,
                 hypothesis_template: str | None = None, multi_label: bool | None = None,
                 batch_size: int | None = None) -> Any:
        texts, single = _check_texts(sequences)
        if candidate_labels is None:
            raise InvalidInputError("candidate_labels is required: the names to choose from, e.g. ['sport', 'politics']")
        labels = parse_labels(candidate_labels)
        scores = zero_shot_scores(self.model, self.tokenizer, texts, labels,
                                  hypothesis_template or self.hypothesis_template,
                                  self.multi_label if multi_label is None else multi_label, self.max_length,
                                  batch_size or self.batch_size)
        results = []
        for text, row in zip(texts, scores):
            order = sorted(range(len(labels)), key=lambda k: float(row[k]), reverse=True)
            results.append({"sequence": text, "labels": [labels[k] for k in order],
                            "scores": [float(row[k]) for k in order]})
        return results[0] if single else results


# registered in pipelines.SUPPORTED_TASKS (aliases as in transformers)
TASK_PIPELINES: dict[str, type[Pipeline]] = {
    "text-classification": TextClassificationPipeline,
    "sentiment-analysis": TextClassificationPipeline,
    "token-classification": TokenClassificationPipeline,
    "ner": TokenClassificationPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "zero-shot-classification": ZeroShotClassificationPipeline,
}
TASK_PIPELINE_KWARGS: dict[type[Pipeline], tuple[str, ...]] = {
    TextClassificationPipeline: ("batch_size", "max_length"),
    TokenClassificationPipeline: ("batch_size", "max_length", "aggregation_strategy", "ignore_labels", "stride"),
    QuestionAnsweringPipeline: ("batch_size", "max_length", "doc_stride", "max_answer_len", "max_question_len",
                                "top_k", "handle_impossible_answer"),
    ZeroShotClassificationPipeline: ("batch_size", "max_length", "hypothesis_template", "multi_label"),
}
