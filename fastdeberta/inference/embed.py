"""Sentence and token embeddings from any DeBERTa model, the way sentence-transformers' ``encode`` works.

``encode(model, texts)`` tokenizes (truncating to ``model.max_seq_length``), runs the base encoder in
length-sorted, dynamically padded batches under ``torch.inference_mode()`` and pools the hidden
states of one layer into one vector per text. Results come back in input order and do not depend on
``batch_size``, ``max_tokens`` or the order of the inputs (up to float rounding).

Pooling (padding is always excluded):

* ``"mean"``: average over every real token, *including* ``[CLS]`` and ``[SEP]`` (and a prompt) -- the
  tokens sentence-transformers' mean pooling averages (it uses the attention mask);
* ``"cls"``: the hidden state of the first token (``[CLS]``);
* ``"max"``: element-wise maximum over every real token, special tokens included.

After pooling, as in sentence-transformers: ``truncate_dim`` keeps the first dimensions (Matryoshka),
then ``normalize`` scales to unit length, then ``precision`` quantises (:func:`quantize_embeddings`).

Task models (masked-LM, classifiers, ...) are encoded through their ``base_model``, so a masked-LM
checkpoint's Enhanced Mask Decoder and any head are not involved: the vectors come from the encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputTypeError, InvalidInputError
from .batching import make_batches

__all__ = ["POOLING", "PRECISIONS", "SIMILARITY_FUNCTIONS", "encode", "pool", "quantize_embeddings", "similarity",
           "tokenize_texts"]

POOLING = ("mean", "cls", "max")
OUTPUT_VALUES = ("sentence_embedding", "token_embeddings", None)
CONVERT_TO = ("numpy", "torch")
PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")
PROGRESS_MIN_BATCHES = 10   # show_progress_bar=None shows a bar only above this many batches


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """(B, L, D) hidden states + (B, L) mask -> (B, D), computed in float32, padding excluded."""
    if pooling not in POOLING:
        raise InvalidInputError(f"pooling must be one of {POOLING}, got {pooling!r}")
    hidden = hidden.float()
    mask = attention_mask.to(hidden.device).bool()
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _check_texts(texts: Any) -> tuple[list[str], bool]:
    """``texts`` as a list of str and whether one str was given; anything else is an InputTypeError."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)):
        raise InputTypeError("texts must be a str or a list of str, got bytes; decode it first")
    if isinstance(texts, (Mapping, set, frozenset)):   # iterating would embed a dict's keys, a set in random order
        raise InputTypeError(f"texts must be a str or a list of str, got a {type(texts).__name__}; pass "
                             "list(...) of the strings to embed (e.g. list(d.values()))")
    try:
        items = list(texts)
    except TypeError:
        raise InputTypeError(f"texts must be a str or a list of str, got {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InputTypeError(f"texts[{i}] is a {type(t).__name__}, not a str: {t!r:.80}")
    return items, False


def default_max_length(model: Any, tokenizer: Any) -> int:
    """The tokenizer's ``model_max_length``, capped by the absolute position table when the model
    adds absolute positions at the input (v1-style ``position_biased_input``) or in its Enhanced Mask
    Decoder."""
    limit = int(getattr(tokenizer, "model_max_length", 512) or 512)
    config = getattr(model, "config", None)
    absolute = getattr(config, "position_biased_input", False) or getattr(model, "enhanced_mask_decoder", False)
    if config is not None and absolute:
        limit = min(limit, int(config.max_position_embeddings))
    return limit


def resolve_tokenizer(model: Any, tokenizer: Any = None) -> Any:
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tok is None:
        raise InvalidInputError(
            "this model has no tokenizer: its folder holds no vocabulary files (spm.model, vocab.json + "
            "merges.txt, tokenizer.json). Pass tokenizer=fastdeberta.Tokenizer.from_pretrained(...)."
        )
    return tok


def tokenize_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text with [CLS]/[SEP], truncated to ``max_length``; no padding."""
    if not texts:
        return []
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False, return_tensors=None)
    return [list(map(int, ids)) for ids in enc["input_ids"]]


# ----------------------------------------------------------------------------- post-processing
def quantize_embeddings(embeddings: Any, precision: str, ranges: np.ndarray | None = None,
                        calibration_embeddings: np.ndarray | None = None) -> np.ndarray:
    """(N, D) float embeddings -> ``precision``, with sentence-transformers' semantics.

    * ``"int8"`` / ``"uint8"``: each dimension's range [min, max] (``ranges``, shape (2, D); else from
      ``calibration_embeddings``; else from ``embeddings`` themselves, which needs more than one row)
      is cut into 255 equal steps; uint8 holds the step index 0..255, int8 the index - 128.
    * ``"binary"`` / ``"ubinary"``: one bit per dimension (value > 0), packed 8 to a byte -> (N, ceil(D/8));
      ubinary as uint8, binary as int8 (the byte - 128).
    * ``"float32"``: unchanged (as float32).
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    values = embeddings.detach().float().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
    if values.dtype in (np.int8, np.uint8):
        raise InputTypeError(f"embeddings to quantize must be floats, got {values.dtype}")
    values = values.astype(np.float32, copy=False)
    if precision == "float32":
        return values
    if precision in ("binary", "ubinary"):
        packed = np.packbits(values > 0, axis=-1)
        return packed if precision == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)
    if ranges is None:
        calibration = values if calibration_embeddings is None else _as_matrix(calibration_embeddings)
        if calibration.ndim == 1 or calibration.shape[0] < 2:
            raise InvalidInputError(
                f"{precision} quantisation needs each dimension's range, and one embedding does not give one: "
                "pass ranges=(2, D) array or calibration_embeddings=(N, D) embeddings of representative texts")
        ranges = np.vstack((calibration.min(axis=0), calibration.max(axis=0)))
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, values.shape[-1]):
        raise InvalidInputError(f"ranges must have shape (2, {values.shape[-1]}) (min row, max row), "
                                f"got {ranges.shape}")
    steps = (ranges[1] - ranges[0]) / 255
    steps = np.where(steps == 0, 1, steps)
    index = np.clip(np.floor((values - ranges[0]) / steps), 0, 255)
    return index.astype(np.uint8) if precision == "uint8" else (index - 128).astype(np.int8)


def _as_matrix(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def _as_tensor(values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        out = values
    elif isinstance(values, np.ndarray):
        out = torch.from_numpy(values)
    else:
        out = torch.as_tensor(np.asarray(values))
    if not out.is_floating_point():
        out = out.float()
    return out.unsqueeze(0) if out.dim() == 1 else out


def similarity(embeddings1: Any, embeddings2: Any, fn: str = "cosine", *, pairwise: bool = False) -> torch.Tensor:
    """Scores between (N, D) and (M, D) embeddings -> (N, M) (or (N,) row by row with ``pairwise``).

    ``fn``: "cosine", "dot" (inner product), "euclidean" / "manhattan" (the negated L2 / L1 distance,
    so that larger is more similar), as sentence-transformers computes them."""
    if fn not in SIMILARITY_FUNCTIONS:
        raise InvalidInputError(f"similarity function must be one of {SIMILARITY_FUNCTIONS}, got {fn!r}")
    a, b = _as_tensor(embeddings1), _as_tensor(embeddings2)
    if a.shape[-1] != b.shape[-1]:
        raise InvalidInputError(f"embeddings have different sizes: {tuple(a.shape)} and {tuple(b.shape)}")
    if pairwise and a.shape != b.shape:
        raise InvalidInputError(f"pairwise similarity needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if fn == "cosine":
        a, b = (torch.nn.functional.normalize(x, p=2, dim=-1) for x in (a, b))
    if fn in ("cosine", "dot"):
        return (a * b).sum(dim=-1) if pairwise else a @ b.transpose(0, 1)
    p = 2.0 if fn == "euclidean" else 1.0
    if pairwise:
        return -torch.linalg.vector_norm(a - b, ord=p, dim=-1)
    return -torch.cdist(a, b, p=p)


def truncate_embeddings(vectors: torch.Tensor, truncate_dim: int | None) -> torch.Tensor:
    """(..., D) -> (..., truncate_dim): the first dimensions (Matryoshka-trained models keep meaning)."""
    return vectors if truncate_dim is None else vectors[..., :truncate_dim]


# ----------------------------------------------------------------------------- argument resolution
def _resolve_device(model: torch.nn.Module, device: Any) -> torch.device:
    current = next(model.parameters()).device
    if device is None:
        return current
    from ..checkpoint import check_device

    target = check_device(device)
    if target.type == "meta":
        raise InvalidInputError("device 'meta' holds no data, so nothing can be computed there; use 'cpu' or 'cuda'")
    if target.type != current.type or (target.index is not None and target != current):
        model.to(target)
    return next(model.parameters()).device


def _output_kind(convert_to: str | None, convert_to_numpy: bool | None, convert_to_tensor: bool | None) -> str:
    """"numpy" / "torch" (fastdeberta's convert_to: always (N, D)), else sentence-transformers' flags:
    "tensor" (stacked), "list" (a list of tensors, convert_to_numpy=False) or "st-numpy" (default)."""
    if convert_to is not None:
        if convert_to not in CONVERT_TO:
            raise InvalidInputError(f"convert_to must be one of {CONVERT_TO}, got {convert_to!r}")
        return convert_to
    if convert_to_tensor:
        return "tensor"
    if convert_to_numpy is False:
        return "list"
    return "st-numpy"


def _resolve_prompt(model: Any, prompt: str | None, prompt_name: str | None) -> str:
    """The prompt text to prepend: ``prompt``, else ``model.prompts[prompt_name]``, else the default prompt."""
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InputTypeError(f"prompt must be a str, got {type(prompt).__name__}: {prompt!r:.80}")
        return prompt
    prompts = getattr(model, "prompts", None) or {}
    if prompt_name is not None:
        if prompt_name not in prompts:
            raise InvalidInputError(f"prompt_name {prompt_name!r} is not one of this model's prompts "
                                    f"{sorted(prompts)}; set model.prompts[{prompt_name!r}] = '...' or pass prompt=")
        return prompts[prompt_name]
    default = getattr(model, "default_prompt_name", None)
    return prompts.get(default, "") if default else ""


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {choices}, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInputError(f"{name} must be a positive int, got {value!r}")


# ----------------------------------------------------------------------------- encode
def encode(
    model: Any,
    texts: str | Sequence[str] | None = None,
    batch_size: int = 32,
    pooling: str | None = None,
    layer: int = -1,
    normalize: bool | None = None,
    convert_to: str | None = None,
    show_progress_bar: bool | None = None,
    max_length: int | None = None,
    max_tokens: int | None = None,
    device: Any = None,
    output_value: str | None = "sentence_embedding",
    *,
    tokenizer: Any = None,
    convert_to_numpy: bool | None = None,
    convert_to_tensor: bool | None = None,
    normalize_embeddings: bool | None = None,
    prompt: str | None = None,
    prompt_name: str | None = None,
    precision: str = "float32",
    truncate_dim: int | None = None,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
    sentences: str | Sequence[str] | None = None,
    inputs: str | Sequence[str] | None = None,
) -> Any:
    """Embed ``texts`` with ``model`` (any fastdeberta model; its ``base_model`` is run).

    Args:
        texts: one string (returns one vector) or a sequence of strings (``sentences=`` and ``inputs=``,
            sentence-transformers' names, are accepted too). ``""`` encodes as ``[CLS] [SEP]``.
        batch_size: rows per forward pass.
        pooling: ``"mean"`` (padding excluded, [CLS]/[SEP] included), ``"cls"`` or ``"max"``; default
            ``model.pooling`` (read from a sentence-transformers folder), else "mean".
        layer: which hidden state to pool: an index into ``hidden_states`` = (embeddings output,
            layer 1, ..., layer N); ``-1`` is the last layer, ``0`` the embeddings.
        normalize: L2-normalise each vector (alias ``normalize_embeddings``); default
            ``model.normalize_embeddings`` (True when its sentence-transformers folder has a Normalize).
        convert_to: fastdeberta's output choice: ``"numpy"`` (float32 array) or ``"torch"`` (CPU tensor),
            always ``(N, D)`` (``(0, D)`` for no texts). Without it, sentence-transformers' flags decide:
            default a numpy array, ``convert_to_tensor=True`` a tensor, ``convert_to_numpy=False`` a list
            of 1-D tensors; no texts give ``np.array([])`` / ``torch.tensor([])`` / ``[]`` as there.
        show_progress_bar: a tqdm bar on stderr; None shows it only for more than
            ``PROGRESS_MIN_BATCHES`` batches.
        max_length: truncate each text (prompt included) to this many tokens ([CLS]/[SEP] included);
            default ``model.max_seq_length``.
        max_tokens: also cap each batch at this many padded tokens (rows x longest row).
        device: run on this device (the model is moved there and stays, as in sentence-transformers;
            if the run fails the model goes back); default the model's device.
        output_value: ``"sentence_embedding"``; ``"token_embeddings"`` (one ``(L_i, D)`` tensor per text,
            padding removed, special tokens kept; numpy arrays with ``convert_to="numpy"``); or None (one
            dict per text: input_ids, attention_mask, token_embeddings, sentence_embedding).
        prompt / prompt_name: text prepended to every input (``prompt_name`` looks it up in
            ``model.prompts``; without either, ``model.default_prompt_name``'s prompt, if any). Prompt
            tokens are pooled too (sentence-transformers' ``include_prompt=True``).
        precision: "float32", "int8", "uint8", "binary" or "ubinary" (:func:`quantize_embeddings`);
            int8/uint8 ranges come from ``ranges``, else ``calibration_embeddings``, else this call's texts.
        truncate_dim: keep the first dimensions (before normalising); default ``model.truncate_dim``.
        tokenizer: overrides ``model.tokenizer``.
    """
    texts = _one_of_aliases(texts, sentences, inputs)
    _check_choice("output_value", output_value, OUTPUT_VALUES)
    _check_choice("precision", precision, PRECISIONS)
    if precision != "float32" and output_value != "sentence_embedding":
        raise InvalidInputError(f"precision={precision!r} quantises sentence embeddings; it cannot be combined "
                                f"with output_value={output_value!r}")
    pooling = pooling if pooling is not None else getattr(model, "pooling", "mean")
    _check_choice("pooling", pooling, POOLING)
    explicit_normalize = bool(normalize) or bool(normalize_embeddings)
    if normalize is None and normalize_embeddings is None:
        normalize = bool(getattr(model, "normalize_embeddings", False))
    else:
        normalize = explicit_normalize
    truncate_dim = truncate_dim if truncate_dim is not None else getattr(model, "truncate_dim", None)
    for name, value in (("batch_size", batch_size), ("truncate_dim", truncate_dim), ("max_length", max_length),
                        ("max_tokens", max_tokens)):
        _check_positive(name, value)
    kind = _output_kind(convert_to, convert_to_numpy, convert_to_tensor)
    items, single = _check_texts(texts)
    prefix = _resolve_prompt(model, prompt, prompt_name)
    if prefix:
        if getattr(model, "include_prompt", True) is False:
            raise InvalidInputError("this model's sentence-transformers Pooling excludes prompt tokens "
                                    "(include_prompt=false), which fastdeberta's encode does not support; "
                                    "encode without a prompt or use sentence-transformers for it")
        items = [prefix + t for t in items]

    base = model.base_model if hasattr(model, "base_model") else model
    n_states = base.config.num_hidden_layers + 1
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n_states <= layer < n_states:
        raise InvalidInputError(
            f"layer must be an int in [{-n_states}, {n_states - 1}] (0 = embeddings output, "
            f"{n_states - 1} or -1 = last layer), got {layer!r}"
        )
    tok = resolve_tokenizer(model, tokenizer)
    if max_length is None:
        own = getattr(model, "_max_seq_length", None)
        max_length = own if own is not None else default_max_length(base, tok)

    sequences = tokenize_texts(tok, items, max_length)
    original_device = next(base.parameters()).device
    device_ = _resolve_device(model, device)
    try:
        rows = _run(base, tok, sequences, layer, n_states, pooling, device_, batch_size, max_tokens,
                    show_progress_bar, with_tokens=output_value != "sentence_embedding")
    except BaseException:
        if device_ != original_device:   # a failed call leaves the caller's model where it was
            model.to(original_device)
        raise

    if output_value == "sentence_embedding":
        vectors = [truncate_embeddings(r["sentence_embedding"], truncate_dim) for r in rows]
        if normalize:
            vectors = [torch.nn.functional.normalize(v, p=2, dim=-1) for v in vectors]
        return _sentence_output(vectors, kind, single, precision, ranges, calibration_embeddings,
                                truncate_dim or base.config.hidden_size)
    if output_value == "token_embeddings":
        out = [r["token_embeddings"] for r in rows]
        if explicit_normalize:
            out = [torch.nn.functional.normalize(t, p=2, dim=-1) for t in out]
        if kind == "numpy":
            out = [t.numpy() for t in out]
        return out[0] if single else out
    for r in rows:   # output_value None: every feature of each text
        r["sentence_embedding"] = truncate_embeddings(r["sentence_embedding"], truncate_dim)
    return rows[0] if single else rows


def _one_of_aliases(texts: Any, sentences: Any, inputs: Any) -> Any:
    given = [(name, value) for name, value in (("texts", texts), ("sentences", sentences), ("inputs", inputs))
             if value is not None]
    if len(given) > 1:
        raise InputTypeError(f"pass the texts once: got {' and '.join(n for n, _ in given)}")
    if not given:
        raise InputTypeError("encode() needs the texts to embed (texts=, or sentences= / inputs= as in "
                             "sentence-transformers)")
    return given[0][1]


def _run(base: Any, tok: Any, sequences: list[list[int]], layer: int, n_states: int, pooling: str,
         device: torch.device, batch_size: int, max_tokens: int | None, show_progress_bar: bool | None,
         with_tokens: bool) -> list[dict[str, torch.Tensor]]:
    """Forward every sequence; per text a dict of CPU float32 tensors (input order)."""
    from tqdm.auto import tqdm

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    want_all = layer % n_states != n_states - 1
    batches = list(make_batches(sequences, batch_size=batch_size, max_tokens=max_tokens, pad_id=pad_id))
    show = len(batches) > PROGRESS_MIN_BATCHES if show_progress_bar is None else bool(show_progress_bar)
    rows: list[Any] = [None] * len(sequences)
    was_training = base.training
    base.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(sequences), desc="encode", unit="text", disable=not show) as bar:
            for batch in batches:
                inputs = batch.to(device)
                out = base(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                           token_type_ids=inputs.token_type_ids, output_hidden_states=want_all)
                hidden = out.hidden_states[layer] if want_all else out.last_hidden_state      # (B, L, D)
                vectors = pool(hidden, inputs.attention_mask, pooling).cpu()                  # (B, D)
                tokens = hidden.float().cpu() if with_tokens else None
                for row, (i, n) in enumerate(zip(batch.indices, batch.lengths)):
                    rows[i] = {"sentence_embedding": vectors[row]}
                    if tokens is not None:
                        rows[i].update(input_ids=torch.tensor(sequences[i]), attention_mask=torch.ones(n, dtype=torch.long),
                                       token_embeddings=tokens[row, :n].clone())
                bar.update(len(batch))
    finally:
        base.train(was_training)
    return rows


def _sentence_output(vectors: list[torch.Tensor], kind: str, single: bool, precision: str, ranges: Any,
                     calibration: Any, dim: int) -> Any:
    """Stack, quantise and convert pooled vectors as ``kind`` asks (see :func:`_output_kind`)."""
    if not vectors:
        if kind in ("numpy", "torch"):
            empty = torch.empty((0, dim), dtype=torch.float32)
            return empty.numpy() if kind == "numpy" else empty
        return {"tensor": torch.tensor([]), "list": [], "st-numpy": np.array([])}[kind]
    stacked = torch.stack(vectors)                                                            # (N, D)
    if precision != "float32":
        if single and ranges is None and calibration is None and precision in ("int8", "uint8"):
            raise InvalidInputError(f"{precision} quantisation of a single text needs ranges= or "
                                    "calibration_embeddings= (one embedding gives no range per dimension)")
        quantized = quantize_embeddings(stacked, precision, ranges, calibration)
        stacked = torch.from_numpy(quantized)
    if kind in ("numpy", "st-numpy"):
        out: Any = stacked.numpy()
    elif kind == "list":
        out = list(stacked)
    else:
        out = stacked
    return out[0] if single else out
