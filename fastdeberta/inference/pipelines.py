"""Task pipelines with transformers' task names and output formats: ``pipeline(task, model=...)``.

* ``fill-mask``: a list of ``{"score", "token", "token_str", "sequence"}`` dicts sorted by score for a
  text with one mask; a list of such lists (one per mask, in text order) for a text with several
  masks; a list of per-text results for a list of texts. Scores are the softmax over the model's
  whole output vocabulary at the mask position. With several masks each is predicted independently
  from the same forward pass and ``sequence`` is, as in transformers, the whole input with only that
  mask filled, special tokens shown (``[CLS] ... [MASK] ... [SEP]``).
  Unlike transformers: special tokens ([PAD], [CLS], [SEP], [UNK], [MASK]) and the unused rows some
  checkpoints pad their output matrix with are not offered as candidates unless named in
  ``targets`` (their probability mass still counts); ``top_k`` above the number of candidates
  returns them all (transformers raises); a target word is scored by its word-initial piece
  (``"cat"`` -> ``"▁cat"``, the piece the model predicts for a word after a space) where transformers
  takes the bare piece ``"cat"`` (a word-internal continuation) when the vocabulary has one; a
  target written with its marker (``"▁cat"``) or any other exact vocabulary piece is taken as is.
* ``feature-extraction``: per-token features of the last layer, as transformers: for each text a
  nested list of shape (1, L, D) (``return_tensors=True``: a tensor), special tokens included.
* ``sentence-embeddings`` (alias ``embeddings``): one pooled vector per text from :func:`encode`
  (sentence-transformers style); a numpy array (D,) for a text, (N, D) for a list.
* text-classification, token-classification, question-answering, zero-shot-classification: see
  :mod:`fastdeberta.inference.task_pipelines`.

New tasks register with :func:`register_pipeline`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputTypeError, InvalidInputError
from .batching import make_batches
from .embed import _check_texts, default_max_length, encode, resolve_tokenizer

__all__ = ["SUPPORTED_TASKS", "FeatureExtractionPipeline", "FillMaskPipeline", "Pipeline",
           "SentenceEmbeddingPipeline", "pipeline", "register_pipeline"]

TOKENIZER_KWARGS = ("truncation", "max_length")


def pipeline_device(device: Any) -> Any:
    """transformers' pipeline ``device``: -1 = CPU, an int >= 0 = that CUDA device, a name or torch.device."""
    if isinstance(device, bool):
        raise InputTypeError(f"device must be an int, a device name or a torch.device, got {device!r}")
    if isinstance(device, int):
        if device < -1:
            raise InvalidInputError(f"device {device} is not a device: use -1 for the CPU or a CUDA index >= 0")
        return "cpu" if device == -1 else f"cuda:{device}"
    if device is not None and str(device).startswith("meta"):
        # the meta device holds no data: moving a model there discards its weights
        raise InvalidInputError("device 'meta' cannot run a pipeline (it holds no weights); use 'cpu' or 'cuda'")
    return device


def _tokenizer_options(tokenizer_kwargs: dict[str, Any] | None, default_length: int) -> int | None:
    """transformers' ``tokenizer_kwargs`` -> the truncation length (None: no truncation)."""
    options = dict(tokenizer_kwargs or {})
    unknown = [k for k in options if k not in TOKENIZER_KWARGS]
    if unknown:
        raise InvalidInputError(f"tokenizer_kwargs {unknown} are not supported here; accepted: {TOKENIZER_KWARGS}")
    if options.get("truncation", True) is False:
        return None
    length = options.get("max_length", default_length)
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise InvalidInputError(f"tokenizer_kwargs max_length must be an int >= 2, got {length!r}")
    return length


class Pipeline:
    """Base: holds a model (eval mode) and its tokenizer."""

    task: str = ""
    load_task: str | None = None     # the model task to load a checkpoint for

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None):
        if model is None or not hasattr(model, "parameters"):
            raise InputTypeError(
                f"{self.task or 'this'} pipeline needs a model: a folder, a Hub repo id or a loaded fastdeberta "
                f"model, got {type(model).__name__}")
        device = pipeline_device(device)
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
                 batch_size: int = 8, max_length: int | None = None, tokenizer_kwargs: dict[str, Any] | None = None):
        if getattr(model, "task", None) != "masked-lm":
            raise InvalidInputError(
                f"fill-mask needs a masked-LM model, got {type(model).__name__} (task {getattr(model, 'task', None)!r}); "
                "load it with fastdeberta.from_pretrained(path, task='masked-lm') or pass the path instead."
            )
        super().__init__(model, tokenizer, device)
        if self.tokenizer.mask_token_id is None:
            raise InvalidInputError("this tokenizer has no mask token; fill-mask needs one")
        self.top_k = top_k
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer_kwargs = tokenizer_kwargs

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
        """The id of each target: an exact vocabulary piece with its word marker (``"▁cat"``) or a
        special token as is; otherwise the first token of the word as the tokenizer splits it (warns
        when it is split into several)."""
        if isinstance(targets, str):
            targets = [targets]
        elif not isinstance(targets, (list, tuple)):
            raise InputTypeError(f"targets must be a string or a list of strings, got {type(targets).__name__}: "
                                 f"{targets!r}")
        vocab = self.tokenizer.get_vocab()
        special = set(self.tokenizer.all_special_tokens)
        ids: list[int] = []
        for target in targets:
            if not isinstance(target, str):
                raise InputTypeError(f"targets must be strings, got {type(target).__name__}: {target!r}")
            exact = vocab.get(target) if (target in special or target.startswith(("▁", "Ġ"))) else None
            pieces = [exact] if exact is not None else \
                self.tokenizer(target, add_special_tokens=False, truncation=False)["input_ids"]
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
            raise InvalidInputError(f"none of the targets {list(targets)} maps to a token")
        return ids

    # -- running ----------------------------------------------------------------------------------
    def _tokenize(self, texts: list[str], tokenizer_kwargs: dict[str, Any] | None) -> list[list[int]]:
        """Ids of each text; every mask must survive truncation (else an error names the text)."""
        tok = self.tokenizer
        limit = self.max_length or default_max_length(self.model, tok)
        length = _tokenizer_options(tokenizer_kwargs if tokenizer_kwargs is not None else self.tokenizer_kwargs, limit)
        full = [list(map(int, ids)) for ids in tok(texts, truncation=False, padding=False)["input_ids"]]
        sequences = [ids if length is None or len(ids) <= length else
                     list(map(int, tok(text, truncation=True, max_length=length)["input_ids"]))
                     for text, ids in zip(texts, full)]
        for text, whole, kept in zip(texts, full, sequences):
            total, left = whole.count(tok.mask_token_id), kept.count(tok.mask_token_id)
            if total == 0:
                raise InvalidInputError(f"no mask token in {text!r:.200}; write {tok.mask_token!r} where a word "
                                        "should be predicted")
            if left < total:
                raise InvalidInputError(
                    f"{total - left} of the {total} mask tokens in {text!r:.120} lie past the first {length} tokens "
                    f"(the text has {len(whole)}) and would be cut off; shorten or split the text")
        return sequences

    def __call__(self, inputs: str | Sequence[str], top_k: int | None = None,
                 targets: str | Sequence[str] | None = None, batch_size: int | None = None,
                 tokenizer_kwargs: dict[str, Any] | None = None) -> list:
        texts, single = _check_texts(inputs)
        top_k = self.top_k if top_k is None else top_k
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InvalidInputError(f"top_k must be a positive int, got {top_k!r}")
        if not texts:
            return []
        sequences = self._tokenize(texts, tokenizer_kwargs)
        candidate_ids = self.target_ids(targets) if targets is not None else None
        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        results: list[Any] = [None] * len(texts)
        with torch.inference_mode():
            for batch in make_batches(sequences, batch_size=batch_size or self.batch_size, pad_id=pad_id):
                inputs_ = batch.to(self.device)
                logits = self.model(**inputs_.model_inputs()).logits                    # (B, L, V)
                for row, i in enumerate(batch.indices):
                    ids = sequences[i]
                    positions = [p for p, t in enumerate(ids) if t == tok.mask_token_id]
                    probs = logits[row, positions].float().softmax(dim=-1).cpu()          # (M, V)
                    results[i] = [self._top(ids, pos, probs[m], top_k, candidate_ids, len(positions) == 1)
                                  for m, pos in enumerate(positions)]
        outputs = [r[0] if len(r) == 1 else r for r in results]
        return outputs[0] if single else outputs

    def _top(self, ids: list[int], position: int, probs: torch.Tensor, top_k: int,
             candidate_ids: list[int] | None, single_mask: bool) -> list[dict[str, Any]]:
        if candidate_ids is not None:
            cand = torch.tensor(candidate_ids, dtype=torch.long)
            values, order = probs[cand].topk(min(top_k, len(candidate_ids)))
            chosen = cand[order]
        else:
            masked = probs.masked_fill(self._excluded_ids(probs.shape[0]), -1.0)
            values, chosen = masked.topk(min(top_k, int((masked >= 0).sum())))
        pad = self.tokenizer.pad_token_id
        out = []
        for score, token in zip(values.tolist(), chosen.tolist()):
            filled = [t for t in ids if t != pad]
            filled[position] = token
            # transformers: special tokens hidden for one mask, shown for several (so the others stay visible)
            sequence = self.tokenizer.decode(filled, skip_special_tokens=single_mask)
            out.append({"score": float(score), "token": int(token),
                        "token_str": self.tokenizer.decode([token]), "sequence": sequence})
        return out


class FeatureExtractionPipeline(Pipeline):
    """``fe(texts)`` -> per-token last-layer features, transformers' format: (1, L, D) nested lists per
    text (``return_tensors=True``: float32 tensors). Texts are truncated to the model's limit unless
    ``tokenize_kwargs={"truncation": False}``."""

    task = "feature-extraction"
    load_task = "base"

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None, batch_size: int = 8,
                 tokenize_kwargs: dict[str, Any] | None = None, return_tensors: bool = False):
        super().__init__(model, tokenizer, device)
        self.batch_size = batch_size
        self.tokenize_kwargs = tokenize_kwargs
        self.return_tensors = return_tensors

    def __call__(self, inputs: str | Sequence[str], tokenize_kwargs: dict[str, Any] | None = None,
                 return_tensors: bool | None = None, truncation: bool | None = None,
                 batch_size: int | None = None) -> Any:
        texts, single = _check_texts(inputs)
        options = dict(self.tokenize_kwargs or {}, **(tokenize_kwargs or {}))
        if truncation is not None:
            options["truncation"] = truncation
        length = _tokenizer_options(options, default_max_length(self.model, self.tokenizer))
        no_limit = 1 << 30    # truncation=False: the model itself then refuses what it cannot take
        tokens = encode(self.model, texts, tokenizer=self.tokenizer, output_value="token_embeddings",
                        batch_size=batch_size or self.batch_size, max_length=length or no_limit,
                        convert_to="torch") if texts else []
        as_tensors = self.return_tensors if return_tensors is None else return_tensors
        out = [t.unsqueeze(0) if as_tensors else t.unsqueeze(0).tolist() for t in tokens]     # (1, L, D) each
        return out[0] if single else out


class SentenceEmbeddingPipeline(Pipeline):
    """``se(texts, pooling="mean", normalize=False, layer=-1, ...)`` -> :func:`encode` result (numpy)."""

    task = "sentence-embeddings"
    load_task = "base"

    def __init__(self, model: Any, tokenizer: Any = None, device: Any = None, **encode_defaults: Any):
        super().__init__(model, tokenizer, device)
        self.encode_defaults = encode_defaults

    def __call__(self, texts: str | Sequence[str], **kwargs: Any):
        options = dict(self.encode_defaults)
        options.update(kwargs)
        if not any(k in options for k in ("convert_to", "convert_to_numpy", "convert_to_tensor")):
            options["convert_to"] = "numpy"
        return encode(self.model, texts, tokenizer=self.tokenizer, **options)


SUPPORTED_TASKS: dict[str, type[Pipeline]] = {}
# keyword arguments that go to the pipeline object; everything else goes to fastdeberta.from_pretrained
_PIPELINE_KWARGS: dict[type[Pipeline], tuple[str, ...]] = {}


def register_pipeline(task: str, cls: type[Pipeline], kwargs: tuple[str, ...], aliases: tuple[str, ...] = ()) -> None:
    """Make ``pipeline(task)`` (and each alias) build ``cls``; ``kwargs`` are the keywords of
    ``pipeline()`` that go to ``cls`` (the rest go to fastdeberta.from_pretrained)."""
    for name in (task, *aliases):
        SUPPORTED_TASKS[name] = cls
    _PIPELINE_KWARGS[cls] = tuple(kwargs)


register_pipeline("fill-mask", FillMaskPipeline, ("top_k", "batch_size", "max_length", "tokenizer_kwargs"))
register_pipeline("feature-extraction", FeatureExtractionPipeline, ("batch_size", "tokenize_kwargs", "return_tensors"))
register_pipeline("sentence-embeddings", SentenceEmbeddingPipeline,
                  ("batch_size", "pooling", "layer", "normalize", "max_length", "max_tokens", "show_progress_bar",
                   "output_value", "prompt", "prompt_name", "precision", "truncate_dim", "normalize_embeddings"),
                  aliases=("embeddings",))

# the task pipelines (classification, NER, QA, zero-shot) subclass Pipeline, so they load after it
from .task_pipelines import TASK_PIPELINE_KWARGS, TASK_PIPELINES  # noqa: E402

SUPPORTED_TASKS.update(TASK_PIPELINES)
_PIPELINE_KWARGS.update(TASK_PIPELINE_KWARGS)

PIPELINE_TOKENIZER_HINT = (
    "To use another tokenizer, pass tokenizer=FOLDER_OR_REPO_ID (or a fastdeberta.Tokenizer) to pipeline(); "
    "the model's own tokenizer files are then not read."
)

# keyword arguments that say where to find files (used for the model and for a tokenizer given by name)
_HUB_KWARGS = ("cache_dir", "local_files_only", "token")


def _check_pipeline_kwargs(task: str, cls: type[Pipeline], kwargs: dict[str, Any], loading: bool) -> None:
    """Refuse keywords that neither the pipeline nor (when it loads the model) from_pretrained knows."""
    from dataclasses import fields

    from ..compat import CONFIG_ATTRIBUTES, LOAD_KEYWORDS, check_known_keywords
    from ..config import DebertaConfig

    own = list(_PIPELINE_KWARGS[cls])
    known = own + list(_HUB_KWARGS)
    accepted = f"The {task} pipeline takes {', '.join(own)}"
    if loading:
        known += [k for k in LOAD_KEYWORDS if k != "task"] + list(CONFIG_ATTRIBUTES)
        known += [f.name for f in fields(DebertaConfig) if f.name != "extra"]
        accepted += ("; other keywords go to fastdeberta.from_pretrained: loading options (dtype/torch_dtype, "
                     "device_map, attn_implementation, cache_dir, ...) or config fields (e.g. num_labels)")
    check_known_keywords(kwargs, known, f"pipeline({task!r})", accepted)


# tasks the shipped model (fastdeberta/deberta-v3-tiny-en) serves when no model is given: its generator
# for fill-mask, its discriminator for features and sentence embeddings
SHIPPED_MODEL_TASKS = ("fill-mask", "feature-extraction", "sentence-embeddings", "embeddings")


def pipeline(task: str, model: Any = None, tokenizer: Any = None, device: Any = None, dtype: Any = None,
             revision: str | None = None, torch_dtype: Any = None, **kwargs: Any) -> Pipeline:
    """Build a pipeline for ``task`` (see :data:`SUPPORTED_TASKS`).

    ``model`` is a folder, a Hub repo id or an already loaded fastdeberta model; ``tokenizer`` a
    :class:`~fastdeberta.Tokenizer` or a folder / repo id (default: the model's own). ``device`` as in
    transformers: -1 (CPU), a CUDA index, a name or a torch.device; ``torch_dtype`` is an alias of
    ``dtype``. Keyword arguments the pipeline understands (``top_k``, ``batch_size``, ...) become its
    defaults; the rest (``cache_dir``, ``local_files_only``, ``attn_implementation``, config fields, ...)
    go to ``fastdeberta.from_pretrained``; an unknown keyword is an error naming the closest known one.
    """
    if task not in SUPPORTED_TASKS:
        raise InvalidInputError(f"unknown pipeline task {task!r}; supported tasks: {', '.join(SUPPORTED_TASKS)}")
    cls = SUPPORTED_TASKS[task]
    if model is None:
        from ..shipped import DEFAULT_MODEL

        if task not in SHIPPED_MODEL_TASKS:
            raise InputTypeError(
                f"pipeline({task!r}) needs model=: a checkpoint folder, a Hub repo id or a loaded fastdeberta "
                f"model (the shipped default model {DEFAULT_MODEL} has no trained head for {task!r}; it is the "
                f"default for {', '.join(SHIPPED_MODEL_TASKS)})")
        model = DEFAULT_MODEL
    if torch_dtype is not None:
        if dtype is not None and dtype != torch_dtype:
            raise InvalidInputError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass one of them")
        dtype = torch_dtype
    device = pipeline_device(device)
    loading = isinstance(model, (str, os.PathLike))
    _check_pipeline_kwargs(task, cls, kwargs, loading)
    own = {k: kwargs.pop(k) for k in list(kwargs) if k in _PIPELINE_KWARGS[cls]}
    hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
    tokenizer_by_name = isinstance(tokenizer, (str, os.PathLike))
    if loading:
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
            raise InputTypeError(f"unexpected keyword arguments for an already loaded model: {unused}")
        if not hasattr(model, "parameters"):
            raise InputTypeError(f"model must be a folder, a Hub repo id or a loaded fastdeberta model, got "
                                 f"{type(model).__name__}: {model!r:.80}")
        torch_dtype_ = check_dtype(dtype)
        if isinstance(torch_dtype_, torch.dtype):  # "auto" and None keep a loaded model as it is
            model.to(torch_dtype_)
    if tokenizer_by_name:
        from ..tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(tokenizer, revision=revision, **hub)
    return cls(model, tokenizer=tokenizer, device=device, **own)
