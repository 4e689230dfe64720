"""``BatchEncoding`` and the truncation / padding rules shared by every backend."""

from __future__ import annotations

from typing import Any

_PADDING_CHOICES = {
    True: "longest",
    False: None,
    "longest": "longest",
    "max_length": "max_length",
    "do_not_pad": None,
}
_TRUNCATION_CHOICES = {
    True: "longest_first",
    False: None,
    "longest_first": "longest_first",
    "only_first": "only_first",
    "only_second": "only_second",
    "do_not_truncate": None,
}


class BatchEncoding(dict):
    """A ``dict`` of model inputs that also allows attribute access (``enc.input_ids``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r}; fields: {sorted(self)}") from None

    def to(self, device: Any) -> BatchEncoding:
        """Move tensor fields to ``device`` (only meaningful with ``return_tensors="pt"``)."""
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})



def _truncation_lengths(
    len_a: int, len_b: int | None, to_remove: int, mode: str, limit: int, index: int
) -> tuple[int, int | None]:
    """How many tokens of each sequence survive, following transformers' truncation strategies."""
    if mode == "longest_first":
        # the rule of the `tokenizers` library (used by transformers' DeBERTa tokenizers): the shorter
        # sequence is kept whole if it fits in half of the budget, otherwise both get half and the
        # originally longer one (the second on ties) gets the odd token
        budget = len_a + (len_b or 0) - to_remove
        if budget < 0:
            raise ValueError(f"Cannot truncate item {index} to max_length={limit}")
        if len_b is None:
            return budget, None
        short, long_ = sorted((len_a, len_b))
        if short <= budget - short:
            keep_short, keep_long = short, budget - short
        else:
            keep_short, keep_long = budget // 2, budget - budget // 2
        if len_a > len_b:
            return keep_long, keep_short
        return keep_short, keep_long
    if mode == "only_first":
        if to_remove >= len_a:
            raise ValueError(
                f"Cannot truncate item {index} with truncation='only_first': the first sequence has {len_a} "
                f"tokens but {to_remove} must go to reach max_length={limit}. Use truncation='longest_first'."
            )
        return len_a - to_remove, len_b
    # only_second
    if len_b is None:
        raise ValueError(
            f"truncation='only_second' needs a text_pair, but item {index} is a single sequence that is "
            f"{to_remove} tokens over max_length={limit}. Use truncation='only_first' or 'longest_first'."
        )
    if to_remove >= len_b:
        raise ValueError(
            f"Cannot truncate item {index} with truncation='only_second': the second sequence has {len_b} "
            f"tokens but {to_remove} must go to reach max_length={limit}. Use truncation='longest_first'."
        )
    return len_a, len_b - to_remove


def _to_tensor(rows: list, kind: str, is_offsets: bool) -> Any:
    if kind == "pt":
        import torch

        return torch.tensor(rows, dtype=torch.long)
    import numpy as np

    return np.asarray(rows, dtype=np.int64)
