"""The served model: what it can do, how its inputs are tokenized and checked, and the batched
forward passes the batching loop runs in the model thread.

Data flows one way: text (or token ids) -> :meth:`Engine.encode_inputs` / :meth:`Engine.encode_pairs`
(token ids, checked against the input limit) -> :class:`~fastdeberta.serve.batcher.Batcher` ->
:meth:`Engine.run_batch` (one padded batch, one result per row) -> the route formats the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..inference.batching import Batch
from ..inference.embed import POOLING, default_max_length, pool, resolve_tokenizer
from .errors import InputTooLarge, InvalidInput, TokenizerError, Unsupported

__all__ = ["CLASSIFY", "EMBED", "TOKENS", "Engine", "class_scores"]

# kinds of batched work (WorkItem.kind): a pooled vector, class logits, or every token's vector
EMBED, CLASSIFY, TOKENS = "embed", "classify", "tokens"

UNLIMITED = 1 << 30   # max_length given to the tokenizer when nothing is cut (so it does not warn)


class Engine:
    """A loaded fastdeberta model (or a model-like object with the same call signature) and its tokenizer.

    Args:
        model: a fastdeberta model; ``model(input_ids=, attention_mask=, token_type_ids=)`` returns
            ``.logits`` (task models) and ``model.base_model`` the encoder (``.last_hidden_state``).
        pooling: how /embed pools token vectors: ``"mean"``, ``"cls"`` or ``"max"``.
        max_input_length: most tokens per input ([CLS]/[SEP] included); default the model's limit.
    """

    def __init__(self, model: Any, *, tokenizer: Any = None, pooling: str = "mean",
                 max_input_length: int | None = None, model_id: str | None = None):
        if pooling not in POOLING:
            raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
        self.model = model
        self.tokenizer = resolve_tokenizer(model, tokenizer)
        self.pooling = pooling
        self.task = getattr(model, "task", "base")
        self.config = getattr(model, "config", None)
        self.model_id = model_id or getattr(model, "name_or_path", None) or type(model).__name__
        limit = default_max_length(getattr(model, "base_model", model), self.tokenizer)
        absolute = bool(getattr(self.config, "position_biased_input", False))
        if max_input_length is None:
            max_input_length = limit
        elif absolute and max_input_length > int(self.config.max_position_embeddings):
            raise ValueError(
                f"--max-input-length {max_input_length} is more than this model's absolute position table "
                f"holds (max_position_embeddings={self.config.max_position_embeddings}); use at most that."
            )
        if max_input_length < 3:
            raise ValueError(f"max_input_length must be at least 3 ([CLS], a token, [SEP]), got {max_input_length}")
        self.max_input_length = int(max_input_length)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        model_vocab = getattr(self.config, "vocab_size", None)
        self.vocab_size = min(len(self.tokenizer), int(model_vocab or len(self.tokenizer)))   # ids the model takes
        self.labels = self._labels()
        self._fill_mask = None
        self._zero_shot = None

    # -- what the model is ------------------------------------------------------------------------
    def _labels(self) -> list[str]:
        if self.task != "sequence-classification":
            return []
        count = int(getattr(self.config, "labels_count", 0) or getattr(self.config, "num_labels", 0))
        id2label = getattr(self.config, "id2label", None) or {}
        return [str(id2label.get(i, f"LABEL_{i}")) for i in range(count)]

    @property
    def dtype(self) -> str:
        try:
            return str(next(self.model.parameters()).dtype).removeprefix("torch.")
        except (AttributeError, StopIteration, TypeError):
            return str(getattr(self.model, "dtype", "float32")).removeprefix("torch.")

    @property
    def model_type(self) -> dict[str, Any]:
        """TEI's ``model_type`` for /info: classifier, reranker (one output) or embedding."""
        if self.task == "sequence-classification":
            classes = {"id2label": {str(i): label for i, label in enumerate(self.labels)},
                       "label2id": {label: i for i, label in enumerate(self.labels)}}
            return {"reranker": classes} if len(self.labels) == 1 else {"classifier": classes}
        return {"embedding": {"pooling": self.pooling}}

    def require_classifier(self, route: str) -> None:
        if self.task != "sequence-classification":
            raise Unsupported(f"{route} needs a sequence-classification model; this server runs a {self.task!r} "
                              f"model ({self.model_id}). Start it with a classifier checkpoint.")

    def require_reranker(self) -> None:
        self.require_classifier("/rerank")
        if len(self.labels) != 1:
            raise Unsupported(f"/rerank needs a cross-encoder with one output score; this classifier has "
                              f"{len(self.labels)} labels {self.labels}. Use /predict for it.")

    def fill_mask_pipeline(self):
        if self.task != "masked-lm":
            raise Unsupported(f"/fill-mask needs a masked-LM model; this server runs a {self.task!r} model "
                              f"({self.model_id}). Start it with a masked-LM checkpoint (--task fill-mask).")
        if self._fill_mask is None:
            from ..inference.pipelines import FillMaskPipeline

            self._fill_mask = FillMaskPipeline(self.model, tokenizer=self.tokenizer,
                                               max_length=self.max_input_length)
        return self._fill_mask

    def zero_shot_pipeline(self):
        self.require_classifier("/zero-shot")
        if self._zero_shot is None:
            from ..inference.pipelines import SUPPORTED_TASKS, pipeline

            if "zero-shot-classification" not in SUPPORTED_TASKS:
                raise Unsupported("zero-shot classification is not available in this fastdeberta version")
            try:
                self._zero_shot = pipeline("zero-shot-classification", model=self.model, tokenizer=self.tokenizer)
            except ValueError as err:   # e.g. no "entailment" label: the model is not an NLI model
                raise Unsupported(f"/zero-shot cannot use this model: {err}") from err
        return self._zero_shot

    # -- tokenization (runs in a tokenization thread) ---------------------------------------------
    def encode_texts(self, texts: Sequence[str], *, truncate: bool, direction: str = "right",
                     add_special_tokens: bool = True) -> list[list[int]]:
        """Token ids of each text ([CLS] ... [SEP]); longer than the limit: cut, or :class:`InputTooLarge`."""
        rows = self._token_ids(texts, add_special_tokens)
        return [self._fit(i, row, truncate, direction, keep_ends=add_special_tokens) for i, row in enumerate(rows)]

    def encode_inputs(self, items: Sequence[str | Sequence[int]], *, truncate: bool,
                      direction: str = "right") -> list[list[int]]:
        """TEI's embedding inputs: a text becomes [CLS] ... [SEP]; a list of token ids is used as given
        (checked against the vocabulary; nothing added, a cut keeps no ends). Same limit as texts."""
        encoded = iter(self._token_ids([x for x in items if isinstance(x, str)], True))
        rows = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                rows.append(self._fit(i, next(encoded), truncate, direction, keep_ends=True))
                continue
            if not item:
                raise InvalidInput(f"input {i} is an empty list of token ids; send at least one id")
            rows.append(self._fit(i, self._check_ids(i, item), truncate, direction, keep_ends=False))
        return rows

    def _token_ids(self, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=add_special_tokens, max_length=UNLIMITED,
                             return_token_type_ids=False, return_attention_mask=False)["input_ids"]
        return [list(map(int, row)) for row in ids]

    def _fit(self, index: int, row: list[int], truncate: bool, direction: str, keep_ends: bool) -> list[int]:
        """``row`` within the input limit: as is, cut when ``truncate``, else :class:`InputTooLarge`."""
        if len(row) <= self.max_input_length:
            return row
        if not truncate:
            raise self._too_long(index, len(row))
        return _cut(row, self.max_input_length, direction, keep_ends=keep_ends)

    def _check_ids(self, index: int, ids: Sequence[int]) -> list[int]:
        row = [int(v) for v in ids]
        bad = next((v for v in row if not 0 <= v < self.vocab_size), None)
        if bad is not None:
            raise TokenizerError(f"input {index}: token id {bad} is out of range for this model's vocabulary of "
                                 f"{self.vocab_size} (ids 0..{self.vocab_size - 1}); send ids from /tokenize")
        return row

    def decode(self, rows: Sequence[Sequence[int]], *, skip_special_tokens: bool) -> list[str]:
        """TEI's /decode: the text of each sequence of token ids."""
        return [self.tokenizer.decode(self._check_ids(i, ids), skip_special_tokens=skip_special_tokens)
                for i, ids in enumerate(rows)]

    def encode_pairs(self, pairs: Sequence[tuple[str, str | None]], *, truncate: bool,
                     direction: str = "right") -> list[tuple[list[int], list[int]]]:
        """(input_ids, token_type_ids) of each text or text pair, checked against the input limit."""
        out: list[tuple[list[int], list[int]]] = []
        for i, (first, second) in enumerate(pairs):
            if second is None:
                ids = self.encode_texts([first], truncate=truncate, direction=direction)[0]
                out.append((ids, [0] * len(ids)))
                continue
            enc = self.tokenizer(first, second, max_length=UNLIMITED, return_attention_mask=False)
            if len(enc["input_ids"]) > self.max_input_length:
                if not truncate:
                    raise self._too_long(i, len(enc["input_ids"]))
                if direction != "right":
                    raise InvalidInput("truncation_direction 'left' is supported for single texts only; "
                                       "a text pair is cut from the right (longest text first)")
                enc = self.tokenizer(first, second, truncation="longest_first", max_length=self.max_input_length,
                                     return_attention_mask=False)
            out.append((list(map(int, enc["input_ids"])), list(map(int, enc["token_type_ids"]))))
        return out

    def _too_long(self, index: int, length: int) -> InputTooLarge:
        return InputTooLarge(
            f"input {index} has {length} tokens, more than the limit of {self.max_input_length} "
            "(--max-input-length); shorten it or send \"truncate\": true to cut it"
        )

    def tokens(self, texts: Sequence[str], *, add_special_tokens: bool) -> list[list[dict[str, Any]]]:
        """TEI's /tokenize: per text, ``{id, text, special, start, stop}`` per token (offsets in characters)."""
        special_ids = set(self.tokenizer.all_special_ids)
        enc = self.tokenizer(list(texts), add_special_tokens=add_special_tokens, max_length=UNLIMITED,
                             return_offsets_mapping=True, return_attention_mask=False,
                             return_token_type_ids=False)
        out = []
        for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
            row = []
            for token_id, (start, stop) in zip(ids, offsets):
                special = int(token_id) in special_ids and start == stop
                piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
                row.append({"id": int(token_id), "text": piece if special else text[start:stop],
                            "special": special, "start": None if special else int(start),
                            "stop": None if special else int(stop)})
            out.append(row)
        return out

    # -- the forward passes (run in the model thread) ---------------------------------------------
    def run_batch(self, kind: str, batch: Batch) -> list[Any]:
        """One padded batch -> one float32 CPU tensor per row: a (D,) vector (embed), (C,) logits (classify)
        or the (n, D) vectors of the row's n real tokens (tokens)."""
        with torch.inference_mode():
            if kind in (EMBED, TOKENS):
                base = getattr(self.model, "base_model", self.model)
                hidden = base(**batch.model_inputs()).last_hidden_state                  # (B, L, D)
                if kind == TOKENS:
                    hidden = hidden.float().cpu()
                    return [hidden[i, :n] for i, n in enumerate(batch.lengths)]          # B x (n_i, D)
                return list(pool(hidden, batch.attention_mask, self.pooling).cpu())      # B x (D,)
            if kind == CLASSIFY:
                logits = self.model(**batch.model_inputs()).logits.float().cpu()        # (B, C)
                return list(logits)
        raise ValueError(f"unknown kind of work {kind!r}")


def _cut(ids: list[int], limit: int, direction: str, keep_ends: bool) -> list[int]:
    """``ids`` cut to ``limit`` tokens from ``direction``, keeping [CLS] and [SEP] when ``keep_ends``."""
    if not keep_ends:
        return ids[:limit] if direction == "right" else ids[-limit:]
    body = limit - 2
    if direction == "right":
        return ids[:1 + body] + ids[-1:]
    return ids[:1] + ids[-1 - body:]


def class_scores(logits: torch.Tensor, raw_scores: bool) -> list[float]:
    """Per-label scores: the logits, or softmax over labels (sigmoid when there is one label)."""
    if raw_scores:
        values = logits
    elif logits.numel() == 1:
        values = logits.sigmoid()
    else:
        values = logits.softmax(dim=-1)
    scores = [float(v) for v in values]
    if any(math.isnan(s) for s in scores):
        raise ValueError("the model produced NaN scores")
    return scores
