"""Length-sorted dynamic batching for inference.

Token-id sequences are sorted longest first (ties keep input order) and cut into batches by a row
limit (``batch_size``) and an optional token budget (``max_tokens``: rows x padded length). Each batch
is padded only to its own longest row, and every batch carries the original positions of its rows,
so results can be put back in input order with :func:`restore_order`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidInputError

__all__ = ["Batch", "make_batches", "plan_batches", "restore_order"]


@dataclass
class Batch:
    """One padded batch.

    ``indices[i]`` is the position in the original input of row ``i``; ``lengths[i]`` its number of
    real (unpadded) tokens.
    """

    indices: list[int]
    input_ids: torch.Tensor        # (B, L) long
    attention_mask: torch.Tensor   # (B, L) long, 1 = token, 0 = padding
    token_type_ids: torch.Tensor   # (B, L) long
    lengths: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_tokens(self) -> int:
        """Padded size of the batch: rows x length."""
        return int(self.input_ids.numel())

    def to(self, device: Any) -> Batch:
        return Batch(self.indices, self.input_ids.to(device), self.attention_mask.to(device),
                     self.token_type_ids.to(device), self.lengths)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "token_type_ids": self.token_type_ids}


def _check_limits(batch_size: int, max_tokens: int | None) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or max_tokens < 1):
        raise InvalidInputError(f"max_tokens must be a positive int or None, got {max_tokens!r}")


def plan_batches(lengths: Sequence[int], batch_size: int = 32, max_tokens: int | None = None) -> list[list[int]]:
    """Group positions ``0..n-1`` into batches, longest sequences first.

    A batch holds at most ``batch_size`` rows and, when ``max_tokens`` is set, at most ``max_tokens``
    padded tokens (rows x its longest length). A single sequence longer than ``max_tokens`` cannot be
    split and gets a batch of its own.
    """
    _check_limits(batch_size, max_tokens)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0  # padded length of the current batch = length of its first (longest) row
    for i in order:
        if current:
            fits_rows = len(current) < batch_size
            fits_budget = max_tokens is None or (len(current) + 1) * width <= max_tokens
            if fits_rows and fits_budget:
                current.append(i)
                continue
            batches.append(current)
        current, width = [i], lengths[i]
    if current:
        batches.append(current)
    return batches


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, type_rows: Sequence[Sequence[int]] | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad ``rows`` to their longest length: (input_ids, attention_mask, token_type_ids)."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        n = len(row)
        if n:
            ids[r, :n] = torch.as_tensor(list(row), dtype=torch.long)
            mask[r, :n] = 1
            if type_rows is not None:
                types[r, :n] = torch.as_tensor(list(type_rows[r]), dtype=torch.long)
    return ids, mask, types


def make_batches(
    sequences: Sequence[Sequence[int]],
    batch_size: int = 32,
    max_tokens: int | None = None,
    pad_id: int = 0,
    token_type_ids: Sequence[Sequence[int]] | None = None,
) -> Iterator[Batch]:
    """Yield padded :class:`Batch` es of ``sequences`` (lists of token ids), longest first.

    Empty sequences are rejected: a model needs at least one token per row.
    """
    lengths = [len(s) for s in sequences]
    for i, n in enumerate(lengths):
        if n == 0:
            raise ValueError(f"sequence {i} is empty; every row needs at least one token")
    if token_type_ids is not None and [len(t) for t in token_type_ids] != lengths:
        raise ValueError("token_type_ids must have the same shape as sequences")
    for group in plan_batches(lengths, batch_size, max_tokens):
        rows = [sequences[i] for i in group]
        types = None if token_type_ids is None else [token_type_ids[i] for i in group]
        ids, mask, tt = pad_rows(rows, pad_id, types)
        yield Batch(list(group), ids, mask, tt, [lengths[i] for i in group])


def restore_order(results: Sequence[tuple[Sequence[int], Sequence[Any]]], total: int) -> list[Any]:
    """Put per-batch results back in input order.

    ``results`` holds ``(indices, values)`` pairs, one per batch, where ``values[k]`` belongs to
    input position ``indices[k]``; every position in ``0..total-1`` must appear exactly once.
    """
    out: list[Any] = [None] * total
    seen = [False] * total
    for indices, values in results:
        if len(indices) != len(values):
            raise ValueError(f"a batch has {len(indices)} indices but {len(values)} values")
        for i, v in zip(indices, values):
            if seen[i]:
                raise ValueError(f"position {i} appears in more than one batch")
            seen[i] = True
            out[i] = v
    missing = [i for i, s in enumerate(seen) if not s]
    if missing:
        raise ValueError(f"no result for positions {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return out
