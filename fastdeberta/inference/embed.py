"""Sentence and token embeddings from any DeBERTa model, sentence-transformers style.

``encode(model, texts)`` tokenizes (truncating to the model's maximum length), runs the base
encoder in length-sorted, dynamically padded batches under ``torch.inference_mode()`` and pools the
hidden states of one layer into one vector per text. Results come back in input order and do not
depend on ``batch_size``, ``max_tokens`` or the order of the inputs (up to float rounding).

Pooling (padding is always excluded):

* ``"mean"``: average over every real token, *including* ``[CLS]`` and ``[SEP]`` -- the same
  tokens sentence-transformers' mean pooling averages (it uses the attention mask, which covers the
  special tokens);
* ``"cls"``: the hidden state of the first token (``[CLS]``);
* ``"max"``: element-wise maximum over every real token, special tokens included.

Task models (masked-LM, classifiers, ...) are encoded through their ``base_model``, so a masked-LM
checkpoint's Enhanced Mask Decoder and any head are not involved: the vectors come from the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .batching import make_batches

__all__ = ["POOLING", "encode", "pool", "tokenize_texts"]

POOLING = ("mean", "cls", "max")
OUTPUT_VALUES = ("sentence_embedding", "token_embeddings")
CONVERT_TO = ("numpy", "torch")
PROGRESS_MIN_BATCHES = 10   # show_progress_bar=None shows a bar only above this many batches


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """(B, L, D) hidden states + (B, L) mask -> (B, D), computed in float32, padding excluded."""
    if pooling not in POOLING:
        raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
    hidden = hidden.float()
    mask = attention_mask.to(hidden.device).bool()
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _check_texts(texts: Any) -> tuple[list[str], bool]:
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError("texts must be a str or a list of str, got bytes; decode it first")
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is a {type(t).__name__}, not a str: {t!r:.80}")
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
        raise ValueError(
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


def _resolve_device(model: torch.nn.Module, device: Any) -> torch.device:
    current = next(model.parameters()).device
    if device is None:
        return current
    from ..checkpoint import check_device

    target = check_device(device)
    if target.type != current.type or (target.index is not None and target != current):
        model.to(target)
    return next(model.parameters()).device


def _convert_choice(convert_to: str | None, convert_to_numpy: bool | None, convert_to_tensor: bool | None) -> str:
    if convert_to is not None:
        if convert_to not in CONVERT_TO:
            raise ValueError(f"convert_to must be one of {CONVERT_TO}, got {convert_to!r}")
        return convert_to
    if convert_to_tensor:
        return "torch"
    if convert_to_numpy is False:
        return "torch"
    return "numpy"


def encode(
    model: Any,
    texts: str | Sequence[str],
    batch_size: int = 32,
    pooling: str = "mean",
    layer: int = -1,
    normalize: bool = False,
    convert_to: str | None = None,
    show_progress_bar: bool | None = None,
    max_length: int | None = None,
    max_tokens: int | None = None,
    device: Any = None,
    output_value: str = "sentence_embedding",
    *,
    tokenizer: Any = None,
    convert_to_numpy: bool | None = None,
    convert_to_tensor: bool | None = None,
    normalize_embeddings: bool | None = None,
) -> Any:
    """Embed ``texts`` with ``model`` (any fastdeberta model; its ``base_model`` is run).

    Args:
        texts: one string (returns a 1-D vector) or a sequence of strings (returns ``(N, D)``).
            ``""`` is allowed (it encodes as ``[CLS] [SEP]``); an empty list gives a ``(0, D)`` array.
        batch_size: rows per forward pass.
        pooling: ``"mean"`` (padding excluded, [CLS]/[SEP] included), ``"cls"`` or ``"max"``.
        layer: which hidden state to pool: an index into ``hidden_states`` = (embeddings output,
            layer 1, ..., layer N); ``-1`` is the last layer, ``0`` the embeddings.
        normalize: L2-normalise each vector (``normalize_embeddings`` is accepted as an alias).
        convert_to: ``"numpy"`` (default, float32 arrays) or ``"torch"`` (float32 CPU tensors);
            sentence-transformers' ``convert_to_numpy`` / ``convert_to_tensor`` are accepted too.
        show_progress_bar: a tqdm bar on stderr; None shows it only for more than
            ``PROGRESS_MIN_BATCHES`` batches.
        max_length: truncate each text to this many tokens ([CLS]/[SEP] included); default
            :func:`default_max_length`.
        max_tokens: also cap each batch at this many padded tokens (rows x longest row).
        device: run on this device (the model is moved there); default the model's device.
        output_value: ``"sentence_embedding"`` or ``"token_embeddings"`` -- then one ``(L_i, D)``
            array per text (padding removed, special tokens kept) instead of a pooled vector;
            ``normalize`` then normalises every token vector.
        tokenizer: overrides ``model.tokenizer``.
    """
    if output_value not in OUTPUT_VALUES:
        raise ValueError(f"output_value must be one of {OUTPUT_VALUES}, got {output_value!r}")
    if pooling not in POOLING:
        raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
    if normalize_embeddings is not None:
        normalize = normalize or bool(normalize_embeddings)
    target = _convert_choice(convert_to, convert_to_numpy, convert_to_tensor)
    items, single = _check_texts(texts)

    base = model.base_model if hasattr(model, "base_model") else model
    config = base.config
    n_states = config.num_hidden_layers + 1
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n_states <= layer < n_states:
        raise ValueError(
            f"layer must be an int in [{-n_states}, {n_states - 1}] (0 = embeddings output, "
            f"{n_states - 1} or -1 = last layer), got {layer!r}"
        )
    want_all = layer % n_states != n_states - 1
    tok = resolve_tokenizer(model, tokenizer)
    if max_length is None:
        max_length = default_max_length(base, tok)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    sequences = tokenize_texts(tok, items, max_length)
    device_ = _resolve_device(model, device)
    batches = list(make_batches(sequences, batch_size=batch_size, max_tokens=max_tokens, pad_id=pad_id))
    show = len(batches) > PROGRESS_MIN_BATCHES if show_progress_bar is None else bool(show_progress_bar)

    results: list[Any] = [None] * len(items)
    was_training = base.training
    base.eval()
    try:
        with torch.inference_mode():
            from tqdm.auto import tqdm

            with tqdm(total=len(items), desc="encode", unit="text", disable=not show) as bar:
                for batch in batches:
                    inputs = batch.to(device_)
                    out = base(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                               token_type_ids=inputs.token_type_ids, output_hidden_states=want_all)
                    hidden = out.hidden_states[layer] if want_all else out.last_hidden_state
                    if output_value == "sentence_embedding":
                        vectors = pool(hidden, inputs.attention_mask, pooling)
                        if normalize:
                            vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
                        vectors = vectors.cpu()
                        for row, i in enumerate(batch.indices):
                            results[i] = vectors[row]
                    else:
                        hidden = hidden.float()
                        if normalize:
                            hidden = torch.nn.functional.normalize(hidden, p=2, dim=-1)
                        hidden = hidden.cpu()
                        for row, (i, n) in enumerate(zip(batch.indices, batch.lengths)):
                            results[i] = hidden[row, :n].clone()
                    bar.update(len(batch))
    finally:
        base.train(was_training)

    if output_value == "token_embeddings":
        out_list = results if target == "torch" else [r.numpy() for r in results]
        return out_list[0] if single else out_list
    if results:
        stacked = torch.stack(results)
    else:
        stacked = torch.empty((0, config.hidden_size), dtype=torch.float32)
    if target == "numpy":
        stacked = stacked.numpy().astype(np.float32, copy=False)
    return stacked[0] if single else stacked
