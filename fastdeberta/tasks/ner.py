"""Token classification (NER): word-level tags aligned to sub-word tokens, entity-level metrics.

Alignment: each word is tokenized on its own (for SentencePiece this equals tokenizing the
space-joined sentence: pieces never cross a space), so every token knows its word. With
``label_all_tokens=False`` (default, "first sub-token") only a word's first token carries its tag and
the rest get -100 (ignored by the loss); with True every token carries it, ``B-X`` turned into
``I-X`` after the first token. A sentence longer than ``max_length`` keeps its first words; the
words cut off are predicted ``O`` at evaluation (so they count as misses, not as absent).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..training.data import DataError, LabelMap, TaggedSentence, read_tagged
from .base import IGNORE_INDEX, Task, model_outputs, pad_id_of
from .entities import detect_scheme, entity_scores

__all__ = ["TokenClassificationTask", "align_words"]


def _word_pieces(tokenizer: Any, words: list[str]) -> list[list[int]]:
    """Token ids of each word (no special tokens)."""
    if not words:
        return []
    if getattr(tokenizer, "backend", "spm") != "spm":     # byte-level BPE: words inside a sentence carry a space
        words = [words[0]] + [" " + w for w in words[1:]]
    return [list(ids) for ids in tokenizer(words, add_special_tokens=False)["input_ids"]]


def align_words(tokenizer: Any, words: list[str], max_length: int) -> tuple[list[int], list[int | None]]:
    """``(input_ids, word_ids)`` of a pre-split sentence with [CLS]/[SEP]; ``word_ids[t]`` is the index of
    the word token ``t`` belongs to (None for special tokens). Tokens past ``max_length`` are cut.

    Uses the tokenizer's ``is_split_into_words`` / ``word_ids()`` (transformers' API) when it has them.
    """
    if words:
        try:
            enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
            return list(enc["input_ids"]), list(enc.word_ids())
        except TypeError:                          # an older tokenizer without is_split_into_words
            pass
    ids: list[int] = [tokenizer.cls_token_id]
    word_ids: list[int | None] = [None]
    budget = max_length - 2
    for w, pieces in enumerate(_word_pieces(tokenizer, words)):
        for piece in pieces:
            if len(ids) - 1 >= budget:
                break
            ids.append(piece)
            word_ids.append(w)
    ids.append(tokenizer.sep_token_id)
    word_ids.append(None)
    return ids, word_ids


class TokenClassificationTask(Task):
    name = "token-classification"
    model_task = "token-classification"
    pipeline_task = "token-classification"
    metric = "f1"

    def __init__(self, tokens_column: str = "tokens", tags_column: str = "tags", label_all_tokens: bool = False,
                 **_: Any):
        self.tokens_column, self.tags_column = tokens_column, tags_column
        self.label_all_tokens = label_all_tokens
        self.labels: LabelMap | None = None

    def read(self, path: str | os.PathLike, with_labels: bool = True) -> list[TaggedSentence]:
        return read_tagged(path, self.tokens_column, self.tags_column, require_tags=with_labels)

    def label_config(self, examples: list[TaggedSentence]) -> dict[str, Any]:
        names = {tag for ex in examples for tag in ex.tags or []}
        if not names:
            raise DataError("the training data has no tags")
        # "O" first, then entity tags grouped by type (B- before I-): the usual NER label order
        self.labels = LabelMap(sorted(names, key=lambda t: (t != "O", t[2:] if t[1:2] == "-" else t, t)))
        return self.labels.config_fields()

    def use_config(self, config: Any) -> None:
        self.labels = LabelMap.from_config(config)

    def _tag_ids(self, ex: TaggedSentence) -> list[int]:
        assert self.labels is not None and ex.tags is not None
        return [self.labels.encode(tag, f"{ex.where} (word {i + 1}, {ex.tokens[i]!r})") for i, tag in enumerate(ex.tags)]

    def _continuation(self, tag_id: int) -> int:
        """The id of I-X for B-X (label_all_tokens), when the map has it."""
        assert self.labels is not None
        name = self.labels.names[tag_id]
        if name.startswith("B-"):
            return self.labels.label2id.get("I-" + name[2:], tag_id)
        return tag_id

    def features(self, examples: list[TaggedSentence], tokenizer: Any, max_length: int,
                 with_labels: bool = True) -> list[dict[str, Any]]:
        out = []
        for ex in examples:
            ids, word_ids = align_words(tokenizer, ex.tokens, max_length)
            feature: dict[str, Any] = {"input_ids": ids, "token_type_ids": [0] * len(ids), "_word_ids": word_ids}
            if with_labels:
                tags = self._tag_ids(ex)
                labels, previous = [], None
                for w in word_ids:
                    if w is None:
                        labels.append(IGNORE_INDEX)
                    elif w != previous:
                        labels.append(tags[w])
                    else:
                        labels.append(self._continuation(tags[w]) if self.label_all_tokens else IGNORE_INDEX)
                    previous = w
                feature["labels"] = labels
            out.append(feature)
        return out

    def predict_tags(self, logits: list[torch.Tensor], features: list[dict[str, Any]],
                     examples: list[TaggedSentence]) -> list[list[str]]:
        """Word-level tags: the prediction at each word's first token; "O" for words cut off."""
        assert self.labels is not None
        outside = "O" if "O" in self.labels.label2id else self.labels.names[0]
        out = []
        for scores, feature, ex in zip(logits, features, examples):
            tags = [outside] * len(ex.tokens)
            best = scores.argmax(-1).tolist()
            seen = set()
            for t, w in enumerate(feature["_word_ids"]):
                if w is not None and w not in seen:
                    seen.add(w)
                    tags[w] = self.labels.names[best[t]]
            out.append(tags)
        return out

    def evaluate(self, model: Any, tokenizer: Any, examples: list[TaggedSentence], max_length: int,
                 batch_size: int = 32) -> dict[str, float]:
        features = self.features(examples, tokenizer, max_length)
        outputs, loss = model_outputs(model, features, pad_id_of(tokenizer), batch_size, per_token=True)
        predicted = self.predict_tags(outputs["logits"], features, examples)
        gold = [ex.tags or [] for ex in examples]
        scores = entity_scores(gold, predicted, detect_scheme([self.labels.names]) if self.labels else None)
        overall = scores.pop("overall")
        metrics = {"precision": overall["precision"], "recall": overall["recall"], "f1": overall["f1"],
                   "accuracy": overall["accuracy"]}
        for kind, values in scores.items():
            for name in ("precision", "recall", "f1"):
                metrics[f"{kind}_{name}"] = values[name]
        if loss is not None:
            metrics["loss"] = loss
        return metrics
