"""Relative positions for disentangled attention.

DeBERTa measures the distance from query i to key j as ``r = i - j``. v2/v3 compress long distances
into log-spaced buckets; every distance is then shifted by ``span`` and clamped into the
``2 * span`` rows of the relative-embedding table. The resulting row index is the *slot*:

    slot(i, j) = clamp(bucket(i - j) + span, 0, 2 * span - 1)

c2p looks up ``slot(i, j)`` in the position keys for query i; p2c looks up the same slot in the
position queries for key j (the bucket function is odd, so -bucket(j - i) == bucket(i - j)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def log_bucket(relative_pos: torch.Tensor, buckets: int, max_position: int) -> torch.Tensor:
    """Map relative distances to log-spaced buckets.

    Distances with ``|r| <= buckets // 2`` keep their value; larger ones grow logarithmically so that
    ``max_position`` lands near ``buckets - 1``. Sign is preserved (the map is odd).
    """
    mid = buckets // 2
    sign = torch.sign(relative_pos)
    near = (relative_pos < mid) & (relative_pos > -mid)
    abs_pos = torch.where(near, torch.full_like(relative_pos, mid - 1), relative_pos.abs())
    log_ratio = torch.log(abs_pos.double() / mid) / math.log((max_position - 1) / mid)
    log_pos = torch.ceil(log_ratio * (mid - 1)) + mid
    return torch.where(abs_pos <= mid, relative_pos.double(), log_pos * sign).long()


def relative_positions(query_len: int, key_len: int, *, buckets: int = -1, max_position: int = -1,
                       device: torch.device | None = None) -> torch.Tensor:
    """(Lq, Lk) long tensor of (bucketed) distances ``i - j``."""
    q_ids = torch.arange(query_len, dtype=torch.long, device=device)
    k_ids = torch.arange(key_len, dtype=torch.long, device=device)
    rel = q_ids[:, None] - k_ids[None, :]                     # (Lq, Lk)
    if buckets > 0 and max_position > 0:
        rel = log_bucket(rel, buckets, max_position)
    return rel


@dataclass(frozen=True)
class PositionSlots:
    """Which rows of the relative-embedding table a sequence of length L uses.

    ``index`` holds ``slot(i, j) - first`` so that it indexes the sliced table
    ``rel_embeddings[first : first + count]`` directly. ``diagonal`` is True when
    ``slot(i, j) - first == i - j + (L - 1)`` for all i, j (no clamping, no bucketing inside the
    span): then the lookups are strided views and need no gather.
    """

    index: torch.Tensor   # (L, L) long, values in [0, count)
    first: int
    count: int
    diagonal: bool


def position_slots(length: int, *, span: int, buckets: int = -1, max_position: int = -1,
                   device: torch.device | None = None) -> PositionSlots:
    """Slots for self-attention over ``length`` tokens with a table of ``2 * span`` rows."""
    rel = relative_positions(length, length, buckets=buckets, max_position=max_position, device=device)
    slots = torch.clamp(rel + span, 0, 2 * span - 1)          # (L, L)
    # Distances range over [-(L-1), L-1] and bucketing/clamping are monotone, so the slots in use
    # form the contiguous range [slot(-(L-1)), slot(L-1)]. Computed on Python ints so that no
    # tensor value is read back (keeps torch.compile graphs whole).
    first = scalar_slot(-(length - 1), span=span, buckets=buckets, max_position=max_position)
    last = scalar_slot(length - 1, span=span, buckets=buckets, max_position=max_position)
    diagonal = last - first == 2 * (length - 1)
    return PositionSlots(index=slots - first, first=first, count=last - first + 1, diagonal=diagonal)


def scalar_slot(distance: int, *, span: int, buckets: int = -1, max_position: int = -1) -> int:
    """``slot`` of one distance, on Python numbers (same arithmetic as ``log_bucket``)."""
    r = distance
    if buckets > 0 and max_position > 0:
        mid = buckets // 2
        abs_pos = mid - 1 if -mid < r < mid else abs(r)
        if abs_pos > mid:
            log_pos = math.ceil(math.log(abs_pos / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
            r = int(log_pos) * (1 if r > 0 else -1)
    return min(max(r + span, 0), 2 * span - 1)
