"""``Tokenizer.pad``: pad inputs that were tokenized earlier, as transformers' ``tokenizer.pad`` does.

This is what ``DataCollatorWithPadding`` and ``DataCollatorForLanguageModeling`` call on a list of
examples (dicts of lists, tensors or numpy arrays). Like transformers it pads ``input_ids`` with the
pad id, ``attention_mask`` with 0 (creating it when asked for), ``token_type_ids`` with 0 and
``special_tokens_mask`` with 1, on ``padding_side``; it leaves other keys (``labels``...) as they
are. Unlike transformers it also pads ``offset_mapping`` with ``(0, 0)``, so that offsets survive
into tensors (transformers leaves them ragged and the tensor conversion fails).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InputTypeError, InvalidInputError
from .encoding import BatchEncoding, to_tensor
from .inputs import PADDING_CHOICES, SIDES, TENSOR_KINDS, check_choice, check_count, check_optional_flag

_PAD_VALUES = {"token_type_ids": 0, "special_tokens_mask": 1, "offset_mapping": (0, 0)}


def pad_inputs(
    encoded_inputs: Any,
    *,
    pad_token_id: int,
    main_input: str,
    default_attention_mask: bool,
    default_max_length: int,
    default_side: str,
    padding: bool | str = True,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
    padding_side: str | None = None,
    return_attention_mask: bool | None = None,
    return_tensors: str | None = None,
) -> BatchEncoding:
    """Pad one example (a dict of flat lists) or a batch (a list of dicts, or a dict of lists of lists)."""
    mode = check_choice(padding, "padding", PADDING_CHOICES)
    max_length = check_count(max_length, "max_length")
    multiple = check_count(pad_to_multiple_of, "pad_to_multiple_of")
    side = check_choice(padding_side if padding_side is not None else default_side, "padding_side", SIDES)
    return_tensors = check_choice(return_tensors, "return_tensors", TENSOR_KINDS)
    with_mask = check_optional_flag(return_attention_mask, "return_attention_mask", default_attention_mask)

    data = _as_dict_of_columns(encoded_inputs)
    if main_input not in data:
        raise InvalidInputError(
            f"pad() needs the encodings to include {main_input!r}, but they have {sorted(data)}. Pass what "
            "the tokenizer returned (or a list of such dicts)."
        )
    main = data[main_input]
    if main is None or (hasattr(main, "__len__") and len(main) == 0):
        if return_attention_mask:  # only when asked for explicitly, as transformers does
            data["attention_mask"] = []
        return BatchEncoding(data)
    if return_tensors is None:
        return_tensors = _tensor_kind(main)
    data = {key: _to_python(value) for key, value in data.items()}
    main = data[main_input]

    batched = isinstance(main[0], (list, tuple))
    rows = main if batched else [main]
    _check_ids(rows, main_input)
    if mode == "max_length" and max_length is None:
        max_length = default_max_length
    if mode is None:
        target = None
    else:
        target = max(len(r) for r in rows) if mode == "longest" else max_length
        if multiple and target % multiple:
            target = (target // multiple + 1) * multiple

    columns = data if batched else {k: [v] for k, v in data.items()}
    for key, column in columns.items():
        if len(column) != len(rows):
            raise InvalidInputError(
                f"pad(): {key!r} has {len(column)} rows but {main_input!r} has {len(rows)}; every key must "
                "hold one entry per example."
            )
    if with_mask and "attention_mask" not in columns:
        columns["attention_mask"] = [[1] * len(r) for r in rows]
    pad_values = dict(_PAD_VALUES, attention_mask=0, **{main_input: pad_token_id})
    out: dict[str, Any] = {}
    for key, column in columns.items():
        if key in pad_values and target is not None and (key != "attention_mask" or with_mask):
            column = [_pad_row(list(r), target, pad_values[key], side) for r in column]
        out[key] = column if batched else column[0]
    if return_tensors is not None:
        out = {
            key: to_tensor(value, return_tensors, key, dtype_long=key in pad_values)
            for key, value in out.items()
        }
    return BatchEncoding(out)


def _as_dict_of_columns(encoded_inputs: Any) -> dict[str, Any]:
    if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
        keys = list(encoded_inputs[0].keys())
        for i, example in enumerate(encoded_inputs):
            if not isinstance(example, Mapping):
                raise InputTypeError(f"pad(): example {i} is a {type(example).__name__}, the others are dicts")
            if list(example.keys()) != keys and set(example.keys()) != set(keys):
                raise InvalidInputError(
                    f"pad(): example {i} has keys {sorted(example)}, but example 0 has {sorted(keys)}"
                )
        return {key: [example[key] for example in encoded_inputs] for key in keys}
    if isinstance(encoded_inputs, Mapping):
        return dict(encoded_inputs)
    raise InputTypeError(
        "pad() takes what the tokenizer returned: a BatchEncoding or dict of lists, or a list of dicts; got "
        f"{type(encoded_inputs).__name__}"
    )


def _tensor_kind(main: Any) -> str | None:
    """Tensors in, tensors out (transformers' rule): the kind of the first element found."""
    first = main[0]
    if isinstance(first, (list, tuple)):
        first = next((row[0] for row in main if len(row)), None)
    module = type(first).__module__.split(".")[0]
    if module == "torch":
        return "pt"
    if module == "numpy":
        return "np"
    return None


def _to_python(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list):
        return [_to_python(v) for v in value]
    if isinstance(value, tuple):  # an offset pair stays a pair
        return tuple(_to_python(v) for v in value)
    return value


def _check_ids(rows: list, key: str) -> None:
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool) for t in row):
            raise InputTypeError(
                f"pad(): {key}[{i}] must be a list of int token ids, got {type(row).__name__}: {row!r:.60}"
            )


def _pad_row(row: list, target: int, value: Any, side: str) -> list:
    missing = target - len(row)
    if missing <= 0:
        return row
    return row + [value] * missing if side == "right" else [value] * missing + row
