"""Checks on what a caller hands to ``forward``: types, dtypes, shapes, devices and id ranges.

Each check either converts losslessly (any integer dtype of token ids to the int64 that embedding
lookups use; ``inputs_embeds`` to the model's dtype) or raises :class:`InputTypeError` (a TypeError:
wrong type or dtype) / :class:`InvalidInputError` (a ValueError: wrong shape, device or value) that
says what was passed and what to pass instead. A Python list or NumPy array is refused, as in
transformers: the message shows the one-line conversion.

Cost: type, shape and device checks read attributes only. The value checks (ids inside the
vocabulary, positions >= 0, labels inside the classes) read one min/max per tensor given, and are
skipped while ``torch.compile`` / ``torch.export`` trace the model, where they would break the graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..config import DebertaConfig
from ..errors import InputTypeError, InvalidInputError

IGNORE_INDEX = -100     # label value that the losses skip (transformers' convention)


class CheckedInputs(NamedTuple):
    input_ids: torch.Tensor | None          # (B, L) int64, or None when inputs_embeds is given
    attention_mask: torch.Tensor | None     # (B, L) bool on the model's device
    token_type_ids: torch.Tensor | None     # (B, L) integer
    position_ids: torch.Tensor              # (B, L) or (1, L) integer
    inputs_embeds: torch.Tensor | None      # (B, L, E) in the model's dtype, zero at padded positions
    shape: tuple[int, int]                  # (B, L)


def _checking_values() -> bool:
    return not torch.compiler.is_compiling()


def as_tensor(name: str, value: object) -> torch.Tensor:
    """``value`` if it is a tensor; otherwise an InputTypeError that shows the conversion."""
    if isinstance(value, torch.Tensor):
        return value
    kind = type(value).__module__ + "." + type(value).__qualname__
    kind = kind.removeprefix("builtins.")
    raise InputTypeError(
        f"{name} must be a torch.Tensor, got a {kind}. Convert it with torch.as_tensor({name}), or get "
        "tensors from the tokenizer with return_tensors='pt'."
    )


def _integer_tensor(name: str, value: object) -> torch.Tensor:
    tensor = as_tensor(name, value)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise InputTypeError(
            f"{name} must hold integer ids, got dtype {tensor.dtype}. Pass the tokenizer's output, or "
            f"convert with {name}.long() if the values are whole numbers."
        )
    return tensor


def _value_range(tensor: torch.Tensor) -> tuple[int, int]:
    low, high = torch.aminmax(tensor)
    return int(low), int(high)


def _check_ids(config: DebertaConfig, input_ids: object, device: torch.device) -> torch.Tensor:
    ids = _integer_tensor("input_ids", input_ids)
    if ids.dim() != 2:
        raise InvalidInputError(f"input_ids must have shape (batch, sequence), got {tuple(ids.shape)}")
    if ids.device != device:
        raise InvalidInputError(f"input_ids is on {ids.device} but the model is on {device}; move the "
                                "inputs with .to(model.device), or the model with model.to(...)")
    if ids.numel() and _checking_values():
        low, high = _value_range(ids)
        if high >= config.vocab_size or low < 0:
            bad = high if high >= config.vocab_size else low
            raise InvalidInputError(
                f"token id {bad} is outside the vocabulary (vocab_size={config.vocab_size}); the tokenizer "
                "does not match this model."
            )
    return ids if ids.dtype in (torch.int64, torch.int32) else ids.long()


def _check_embeds(config: DebertaConfig, inputs_embeds: object, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    embeds = as_tensor("inputs_embeds", inputs_embeds)
    if not embeds.is_floating_point():
        raise InputTypeError(f"inputs_embeds must be a floating-point tensor, got dtype {embeds.dtype}")
    if embeds.dim() != 3 or embeds.shape[-1] != config.embed_dim:
        raise InvalidInputError(f"inputs_embeds must have shape (batch, sequence, {config.embed_dim}), "
                                f"got {tuple(embeds.shape)}")
    if embeds.device != device:
        raise InvalidInputError(f"inputs_embeds is on {embeds.device} but the model is on {device}; move "
                                "it with .to(model.device)")
    return embeds.to(dtype)


def _check_mask(attention_mask: object, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    mask = as_tensor("attention_mask", attention_mask)
    if tuple(mask.shape) != shape:
        raise InvalidInputError(f"attention_mask has shape {tuple(mask.shape)}, expected {shape}")
    if mask.is_complex():
        raise InputTypeError(f"attention_mask must hold 1 (token) and 0 (padding), got dtype {mask.dtype}")
    return mask.to(device).bool()


def _check_ids_like(name: str, value: object, shape: tuple[int, int], device: torch.device,
                    limit: int | None, what: str) -> torch.Tensor:
    """token_type_ids / position_ids: integer, (B, L) or (1, L), inside [0, limit)."""
    tensor = _integer_tensor(name, value)
    if tensor.dim() != 2 or tensor.shape[1] != shape[1] or tensor.shape[0] not in (1, shape[0]):
        raise InvalidInputError(f"{name} has shape {tuple(tensor.shape)}, expected {shape} or {(1, shape[1])}")
    tensor = tensor.to(device)
    if tensor.numel() and _checking_values():
        low, high = _value_range(tensor)
        if low < 0 or (limit is not None and high >= limit):
            bad = low if low < 0 else high
            allowed = f"[0, {limit}) ({what})" if limit is not None else "the ids >= 0"
            raise InvalidInputError(f"{name} holds {bad}, outside {allowed}")
    return tensor.long() if tensor.dtype not in (torch.int64, torch.int32) else tensor


def check_inputs(
    config: DebertaConfig,
    device: torch.device,
    dtype: torch.dtype,
    input_ids: object = None,
    attention_mask: object = None,
    token_type_ids: object = None,
    position_ids: object = None,
    inputs_embeds: object = None,
) -> CheckedInputs:
    """The forward inputs, checked and converted for a model on ``device`` holding ``dtype`` weights."""
    if (input_ids is None) == (inputs_embeds is None):
        raise InvalidInputError("pass exactly one of input_ids or inputs_embeds")
    if input_ids is not None:
        input_ids = _check_ids(config, input_ids, device)
        shape = tuple(input_ids.shape)
    else:
        inputs_embeds = _check_embeds(config, inputs_embeds, device, dtype)
        shape = tuple(inputs_embeds.shape[:2])
    if shape[1] == 0:
        raise InvalidInputError("empty input: sequence length is 0; every input needs at least one token")
    if config.position_biased_input and shape[1] > config.max_position_embeddings:
        raise InvalidInputError(
            f"input has {shape[1]} tokens but this model adds absolute positions and supports at most "
            f"max_position_embeddings={config.max_position_embeddings}; truncate the input "
            "(tokenizer(..., truncation=True))."
        )
    mask = None if attention_mask is None else _check_mask(attention_mask, shape, device)
    if token_type_ids is not None and config.type_vocab_size > 0:   # ignored otherwise, as in transformers
        token_type_ids = _check_ids_like("token_type_ids", token_type_ids, shape, device,
                                         config.type_vocab_size, f"type_vocab_size={config.type_vocab_size}")
    else:
        token_type_ids = None
    if position_ids is None:
        position_ids = torch.arange(shape[1], device=device).unsqueeze(0)          # (1, L)
    else:
        # The upper limit matters only where absolute positions are added at the input (the enhanced mask
        # decoder checks its own); relative-only models ignore the values, as in transformers.
        limit = config.max_position_embeddings if config.position_biased_input else None
        position_ids = _check_ids_like("position_ids", position_ids, shape, device, limit,
                                       f"max_position_embeddings={config.max_position_embeddings}")
    if inputs_embeds is not None and mask is not None:
        # Padded rows never reach a real token's output, but 0 * NaN is NaN: a NaN written into
        # padding would spread through the masked sums. Zero it before use.
        inputs_embeds = inputs_embeds.masked_fill(~mask.unsqueeze(-1), 0.0)
    return CheckedInputs(input_ids, mask, token_type_ids, position_ids, inputs_embeds, shape)


def check_class_labels(name: str, labels: object, num_classes: int, expected_numel: int | None = None,
                       *, ignore_negative: bool = False) -> torch.Tensor:
    """Integer class labels inside [0, num_classes), or IGNORE_INDEX (any negative if ``ignore_negative``)."""
    tensor = _integer_tensor(name, labels)
    if expected_numel is not None and tensor.numel() != expected_numel:
        raise InvalidInputError(f"{name} has shape {tuple(tensor.shape)} ({tensor.numel()} values); expected "
                                f"{expected_numel} values, one per prediction")
    if tensor.numel() and _checking_values():
        low, high = _value_range(tensor)
        bad = high if high >= num_classes else None
        if bad is None and low < 0 and not ignore_negative:
            invalid = tensor[(tensor < 0) & (tensor != IGNORE_INDEX)]
            bad = int(invalid[0]) if invalid.numel() else None
        if bad is not None:
            skip = "any negative value" if ignore_negative else str(IGNORE_INDEX)
            raise InvalidInputError(f"{name} holds {bad}, outside the {num_classes} classes [0, {num_classes}); "
                                    f"use {skip} for positions to skip")
    return tensor
