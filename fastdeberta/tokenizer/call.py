"""One tokenizer call, from its keyword arguments to the returned ``BatchEncoding``.

:func:`plan_call` checks and resolves the arguments the way transformers does (``max_length`` alone
turns truncation on; ``padding="max_length"`` without a length pads to ``model_max_length``), then
:func:`encode_rows` encodes every example, cuts it into rows (overflowing windows included) and pads
them, and :func:`build_output` picks the requested fields and makes tensors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputTypeError, InvalidInputError
from .encoding import BatchEncoding, Encoding, to_tensor
from .inputs import (
    PADDING_CHOICES,
    SIDES,
    TENSOR_KINDS,
    TRUNCATION_CHOICES,
    check_choice,
    check_count,
    check_flag,
    check_optional_flag,
    split_batch,
)
from .layout import Segment, assemble, padded_length, pair_windows, truncation_lengths, windows

if TYPE_CHECKING:
    from .core import Tokenizer

Example = tuple[Any, Any]  # (first, second or None); each a str, or a list of words


@dataclass(frozen=True)
class CallPlan:
    """The resolved options of one call."""

    add_special_tokens: bool
    pad_mode: str | None  # "longest", "max_length" or None
    pad_to: int  # the length for pad_mode "max_length"
    pad_multiple: int | None
    padding_side: str
    truncation: str | None  # "longest_first", "only_first", "only_second" or None
    limit: int  # max_length, else model_max_length
    stride: int
    overflow: bool
    truncation_side: str
    split_into_words: bool
    return_tensors: str | None
    keys: tuple[str, ...]  # the fields to return, in transformers' order
    stacklevel: int


def plan_call(tok: Tokenizer, kwargs: dict[str, Any]) -> CallPlan:
    """Check every keyword argument of ``Tokenizer.__call__`` and resolve the defaults."""
    padding = kwargs["padding"]
    truncation = kwargs["truncation"]
    max_length = check_count(kwargs["max_length"], "max_length")
    pad_mode = check_choice(padding, "padding", PADDING_CHOICES)
    if truncation is None:
        # transformers: a max_length without padding or truncation means "truncate to it"
        trunc_mode = "longest_first" if max_length is not None and pad_mode is None else None
    else:
        trunc_mode = check_choice(truncation, "truncation", TRUNCATION_CHOICES)
    limit = max_length if max_length is not None else tok.model_max_length
    add_special = check_flag(kwargs["add_special_tokens"], "add_special_tokens")
    n_special = (3 if kwargs["text_pair"] is not None else 2) if add_special else 0
    if trunc_mode is not None and limit < n_special:
        raise InvalidInputError(
            f"max_length={limit} is too small: {n_special} special tokens have to fit in every sequence"
        )
    keys = ["input_ids"]
    for key, flag in (("token_type_ids", "return_token_type_ids"), ("attention_mask", "return_attention_mask")):
        if check_optional_flag(kwargs[flag], flag, key in tok.model_input_names):
            keys.append(key)
    for key, flag in (
        ("special_tokens_mask", "return_special_tokens_mask"),
        ("offset_mapping", "return_offsets_mapping"),
        ("length", "return_length"),
        ("overflow_to_sample_mapping", "return_overflowing_tokens"),
    ):
        if check_flag(kwargs[flag], flag):
            keys.append(key)
    side = kwargs["padding_side"]
    return CallPlan(
        add_special_tokens=add_special,
        pad_mode=pad_mode,
        pad_to=limit,
        pad_multiple=check_count(kwargs["pad_to_multiple_of"], "pad_to_multiple_of"),
        padding_side=check_choice(tok.padding_side if side is None else side, "padding_side", SIDES),
        truncation=trunc_mode,
        limit=limit,
        stride=check_count(kwargs["stride"], "stride", minimum=0, allow_none=False),
        overflow="overflow_to_sample_mapping" in keys,
        truncation_side=tok.truncation_side,
        split_into_words=check_flag(kwargs["is_split_into_words"], "is_split_into_words"),
        return_tensors=check_choice(kwargs["return_tensors"], "return_tensors", TENSOR_KINDS),
        keys=tuple(keys),
        stacklevel=kwargs["_stacklevel"],
    )


def split_examples(text: Any, text_pair: Any, split_into_words: bool) -> tuple[list[Example], bool]:
    """The (first, second) examples of a call and whether they came as a batch; every text checked."""
    firsts, batched = split_batch(text, "text", split_into_words)
    if text_pair is None:
        return [(first, None) for first in firsts], batched
    seconds, pair_batched = split_batch(text_pair, "text_pair", split_into_words)
    if batched != pair_batched:
        raise InputTypeError(
            "text and text_pair must both be one example or both be a batch, got "
            f"{type(text).__name__} and {type(text_pair).__name__}"
        )
    if len(seconds) != len(firsts):
        raise InvalidInputError(f"text has {len(firsts)} items but text_pair has {len(seconds)}")
    return list(zip(firsts, seconds)), batched


def encode_rows(tok: Tokenizer, examples: list[Example], plan: CallPlan, with_offsets: bool) -> list[Encoding]:
    """Every row of the call, padded: one per example, more where an example overflows."""
    specials = None
    if plan.add_special_tokens:
        if tok.cls_token_id is None or tok.sep_token_id is None:
            raise InvalidInputError("This tokenizer has no [CLS]/[SEP] token; pass add_special_tokens=False.")
        specials = (tok.cls_token_id, tok.sep_token_id)
    n_special = 0 if specials is None else (3 if examples and examples[0][1] is not None else 2)
    rows: list[Encoding] = []
    too_long = 0
    for index, (first, second) in enumerate(examples):
        seg_a = _encode(tok, first, plan, with_offsets)
        seg_b = None if second is None else _encode(tok, second, plan, with_offsets)
        len_a, len_b = len(seg_a.ids), None if seg_b is None else len(seg_b.ids)
        total = len_a + (len_b or 0) + n_special
        keep_a, keep_b = len_a, len_b
        if plan.truncation is not None and total > plan.limit:
            keep_a, keep_b = truncation_lengths(len_a, len_b, total - plan.limit, plan.truncation, plan.limit, index)
        elif total > plan.limit:
            too_long = max(too_long, total)
        windows_a = windows(len_a, keep_a, plan.stride, plan.truncation_side, "first text")
        windows_b = None if seg_b is None else windows(len_b, keep_b, plan.stride, plan.truncation_side, "second text")
        combos = pair_windows(windows_a, windows_b)
        texts = (None, None) if plan.split_into_words else (first, second)
        for window_a, window_b in combos if plan.overflow else combos[:1]:
            rows.append(
                assemble(
                    seg_a, window_a, seg_b, window_b,
                    special_ids=specials, number_words=tok._number_words, sample_index=index, texts=texts,
                    token_of=tok._id_to_token,
                )
            )
    if too_long:
        warnings.warn(
            f"Token sequence length {too_long} is longer than the maximum length {plan.limit} for this model; "
            "it was not truncated and may fail in the model. Pass truncation=True to cut it to max_length.",
            UserWarning,
            stacklevel=plan.stacklevel + 1,
        )
    if plan.pad_mode is not None:
        max_length = plan.pad_to if plan.pad_mode == "max_length" else None
        target = padded_length([len(r) for r in rows], plan.pad_mode, max_length, plan.pad_multiple)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        for row in rows:
            row.pad(target, pad_id, plan.padding_side)
    return rows


def _encode(tok: Tokenizer, value: Any, plan: CallPlan, with_offsets: bool) -> Segment:
    if plan.split_into_words:
        return tok._encode_words(value, with_offsets)
    return tok._encode_segment(value, with_offsets)


def build_output(rows: list[Encoding], plan: CallPlan, batched: bool, offsets_source: Any) -> BatchEncoding:
    """The returned fields of the rows: lists (of lists for a batch) or ``(rows, length)`` tensors."""
    fields: dict[str, Any] = {
        "input_ids": lambda r: r.ids,
        "token_type_ids": lambda r: r.type_ids,
        "attention_mask": lambda r: r.attention_mask,
        "special_tokens_mask": lambda r: r.special_tokens_mask,
        "offset_mapping": lambda r: r.offsets,
        "length": lambda r: len(r.ids),
        "overflow_to_sample_mapping": lambda r: r.sample_index,
    }
    out = {key: [fields[key](r) for r in rows] for key in plan.keys}
    if plan.return_tensors is not None:
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise InvalidInputError(
                f"Cannot make {plan.return_tensors!r} tensors from sequences of different lengths "
                f"({min(lengths)} to {max(lengths)} tokens). Pass padding=True (or padding='max_length') "
                "so that every row has the same length, and truncation=True if needed."
            )
        out = {key: to_tensor(value, plan.return_tensors, key, dtype_long=True) for key, value in out.items()}
    elif not batched and not plan.overflow:
        out = {key: value[0] for key, value in out.items()}
    return BatchEncoding(out, rows, offsets_source)
