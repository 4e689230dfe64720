"""Task pipelines: ``pipeline("fill-mask", model=...)`` and ``pipeline("feature-extraction", ...)``.

Fill-mask output follows transformers' format: a list of ``{"score", "token", "token_str",
"sequence"}`` dicts sorted by score for a text with one mask; a list of such lists (one per mask, in
text order) for a text with several masks; and a list of per-text results for a list of texts.

Scores are the softmax over the model's whole output vocabulary at the mask position (as in
transformers). Unlike transformers, the special tokens ([PAD], [CLS], [SEP], [UNK], [MASK]) and the
unused rows some checkpoints pad their output matrix with (ids past the tokenizer's vocabulary) are
not offered as candidates, unless named in ``targets``; their probability mass still counts in the
softmax. With several masks, each mask is predicted independently from the same forward pass, and
``sequence`` fills only that mask (the others stay as the mask token).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .batching import make_batches
from .embed import _check_texts, default_max_length, encode, resolve_tokenizer, tokenize_texts

__all__ = ["SUPPORTED_TASKS", "FeatureExtractionPipeline", "FillMaskPipeline", "Pipeline", "pipeline"]


class Pipeline:
    """Base: holds a model (eval mode) and its tokenizer."""

    task: str = ""
    load_task: str | None = None     # the model task to load a checkpoint for

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None):
        if device is not None:
            from ..checkpoint import check_device

            model.to(check_device(device))
        model.eval()
        self.model = model
        self.tokenizer = resolve_tokenizer(model, tokenizer)
        self.device = next(model.parameters()).device

    def __repr__(self) -> str:
        name = getattr(self.model, "name_or_path", None) or type(self.model).__name__
        return f"{type(self).__name__}(task={self.task!r}, model={name!r}, device={str(self.device)!r})"


class FillMaskPipeline(Pipeline):
    task = "fill-mask"
    load_task = "masked-lm"

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None, top_k: int = 5,
                 batch_size: int = 8, max_length: int | None = None):
        if getattr(model, "task", None) != "masked-lm":
            raise ValueError(
                f"fill-mask needs a masked-LM model, got {type(model).__name__} (task {getattr(model, 'task', None)!r}); "
                "load it with fastdeberta.from_pretrained(path, task='masked-lm') or pass the path instead."
            )
        super().__init__(model, tokenizer, device)
        if self.tokenizer.mask_token_id is None:
            raise ValueError("this tokenizer has no mask token; fill-mask needs one")
        self.top_k = top_k
        self.batch_size = batch_size
        self.max_length = max_length

    # -- candidates -------------------------------------------------------------------------------
    def _excluded_ids(self, vocab: int) -> torch.Tensor:
        """Bool (V,) mask of ids that are never offered as candidates (special + past the tokenizer)."""
        excluded = torch.zeros(vocab, dtype=torch.bool)
        for i in self.tokenizer.all_special_ids:
            if 0 <= i < vocab:
                excluded[i] = True
        known = int(self.tokenizer.vocab_size)
        if known < vocab:
            excluded[known:] = True
        return excluded

    def target_ids(self, targets: str | Sequence[str]) -> list[int]:
        """The first token id of each target word (warns when a target is split into several tokens)."""
        if isinstance(targets, str):
            targets = [targets]
        ids: list[int] = []
        for target in targets:
            if not isinstance(target, str):
                raise TypeError(f"targets must be strings, got {type(target).__name__}: {target!r}")
            pieces = self.tokenizer(target, add_special_tokens=False, truncation=False)["input_ids"]
            if not pieces:
                warnings.warn(f"target {target!r} encodes to no token; it is ignored", stacklevel=3)
                continue
            if len(pieces) > 1:
                tokens = self.tokenizer.convert_ids_to_tokens(pieces)
                warnings.warn(
                    f"target {target!r} is split into {len(pieces)} tokens {tokens}; only the first, "
                    f"{tokens[0]!r}, is scored",
                    stacklevel=3,
                )
            if pieces[0] not in ids:
                ids.append(int(pieces[0]))
        if not ids:
            raise ValueError(f"none of the targets {list(targets)} maps to a token")
        return ids

    # -- running ----------------------------------------------------------------------------------
    def __call__(self, inputs: str | Sequence[str], top_k: int | None = None,
                 targets: str | Sequence[str] | None = None, batch_size: int | None = None) -> list:
        texts, single = _check_texts(inputs)
        top_k = self.top_k if top_k is None else top_k
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        tok = self.tokenizer
        mask_id = tok.mask_token_id
        max_length = self.max_length or default_max_length(self.model, tok)
        sequences = tokenize_texts(tok, texts, max_length)
        for text, ids in zip(texts, sequences):
            if mask_id not in ids:
                if tok.mask_token in text:
                    raise ValueError(
                        f"the mask token in {text!r:.200} lies past the first {max_length} tokens and was cut "
                        "off; shorten the text"
                    )
                raise ValueError(f"no mask token in {text!r:.200}; write {tok.mask_token!r} where a word should "
                                 "be predicted")
        if not texts:
            return []
        candidate_ids = self.target_ids(targets) if targets is not None else None

        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        results: list[Any] = [None] * len(texts)
        with torch.inference_mode():
            for batch in make_batches(sequences, batch_size=batch_size or self.batch_size, pad_id=pad_id):
                inputs_ = batch.to(self.device)
                logits = self.model(**inputs_.model_inputs()).logits                    # (B, L, V)
                for row, i in enumerate(batch.indices):
                    ids = sequences[i]
                    positions = [p for p, t in enumerate(ids) if t == mask_id]
                    probs = logits[row, positions].float().softmax(dim=-1).cpu()          # (M, V)
                    results[i] = [self._top(ids, pos, probs[m], top_k, candidate_ids)
                                  for m, pos in enumerate(positions)]
        outputs = [r[0] if len(r) == 1 else r for r in results]
        return outputs[0] if single else outputs

    def _top(self, ids: list[int], position: int, probs: torch.Tensor, top_k: int,
             candidate_ids: list[int] | None) -> list[dict[str, Any]]:
        if candidate_ids is not None:
            cand = torch.tensor(candidate_ids, dtype=torch.long)
            scores = probs[cand]
            k = min(top_k, len(candidate_ids))
            values, order = scores.topk(k)
            chosen = cand[order]
        else:
            masked = probs.masked_fill(self._excluded_ids(probs.shape[0]), -1.0)
            k = min(top_k, int((masked >= 0).sum()))
            values, chosen = masked.topk(k)
        drop = {self.tokenizer.cls_token_id, self.tokenizer.sep_token_id, self.tokenizer.pad_token_id}
        out = []
        for score, token in zip(values.tolist(), chosen.tolist()):
            filled = list(ids)
            filled[position] = token
            sequence = self.tokenizer.decode([t for t in filled if t not in drop])
            out.append({"score": float(score), "token": int(token),
                        "token_str": self.tokenizer.decode([token]), "sequence": sequence})
        return out


class FeatureExtractionPipeline(Pipeline):
    """``fe(texts, pooling="mean", normalize=False, layer=-1, ...)`` -> :func:`encode` result (numpy)."""

    task = "feature-extraction"
    load_task = "base"

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None, **encode_defaults: Any):
        super().__init__(model, tokenizer, device)
        self.encode_defaults = encode_defaults

    def __call__(self, texts: str | Sequence[str], **kwargs: Any):
        options = dict(self.encode_defaults)
        options.update(kwargs)
        options.setdefault("convert_to", "numpy")
        return encode(self.model, texts, tokenizer=self.tokenizer, **options)


SUPPORTED_TASKS: dict[str, type[Pipeline]] = {
    "fill-mask": FillMaskPipeline,
    "feature-extraction": FeatureExtractionPipeline,
    "embeddings": FeatureExtractionPipeline,
}

# keyword arguments that go to the pipeline object; everything else goes to fastdeberta.from_pretrained
_PIPELINE_KWARGS = {
    FillMaskPipeline: ("top_k", "batch_size", "max_length"),
    FeatureExtractionPipeline: ("batch_size", "pooling", "layer", "normalize", "max_length", "max_tokens",
                                "show_progress_bar", "output_value"),
}

PIPELINE_TOKENIZER_HINT = (
    "To use another tokenizer, pass tokenizer=FOLDER_OR_REPO_ID (or a fastdeberta.Tokenizer) to pipeline(); "
    "the model's own tokenizer files are then not read."
)

# keyword arguments that say where to find files (used for the model and for a tokenizer given by name)
_HUB_KWARGS = ("cache_dir", "local_files_only", "token")


def pipeline(task: str, model: Any, tokenizer: Any = None, device: Any = None, dtype: Any = None,
             revision: str | None = None, **kwargs: Any) -> Pipeline:
    """Build a pipeline for ``task`` ("fill-mask", "feature-extraction" or its alias "embeddings").

    ``model`` is a folder, a Hub repo id or an already loaded fastdeberta model; ``tokenizer`` a
    :class:`~fastdeberta.Tokenizer` or a folder / repo id (default: the model's own). Keyword arguments
    that the pipeline understands (``top_k``, ``batch_size``, ``pooling``, ...) become its defaults;
    the rest (``cache_dir``, ``local_files_only``, ``attention``, ...) go to ``fastdeberta.from_pretrained``;
    ``revision``, ``cache_dir``, ``local_files_only`` and ``token`` also apply to a tokenizer given by name.
    """
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"unknown pipeline task {task!r}; supported tasks: {', '.join(SUPPORTED_TASKS)}")
    cls = SUPPORTED_TASKS[task]
    own = {k: kwargs.pop(k) for k in list(kwargs) if k in _PIPELINE_KWARGS[cls]}
    # where to find files on the Hub / in the cache: for the model and for a tokenizer given by name
    hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
    tokenizer_by_name = isinstance(tokenizer, (str, os.PathLike))
    if isinstance(model, (str, os.PathLike)):
        from ..checkpoint import TokenizerLoadError, load_model

        try:
            model = load_model(model, task=cls.load_task, revision=revision, dtype=dtype, device=device,
                               load_tokenizer=tokenizer is None, **kwargs)
        except TokenizerLoadError as err:
            raise err.with_hint(PIPELINE_TOKENIZER_HINT) from err.cause
    else:
        from ..checkpoint import check_dtype

        unused = sorted(k for k in kwargs if not (tokenizer_by_name and k in _HUB_KWARGS))
        if unused:
            raise TypeError(f"unexpected keyword arguments for an already loaded model: {unused}")
        torch_dtype = check_dtype(dtype)
        if isinstance(torch_dtype, torch.dtype):  # "auto" and None keep a loaded model as it is
            model.to(torch_dtype)
    if tokenizer_by_name:
        from ..tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(tokenizer, revision=revision, **hub)
    return cls(model, tokenizer=tokenizer, device=device, **own)
