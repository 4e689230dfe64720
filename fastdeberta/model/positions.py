"""Relative positions for disentangled attention.

DeBERTa measures the distance from query i to key j as ``r = i - j``. v2/v3 compress long distances
into log-spaced buckets; every distance is then shifted by ``span`` and clamped into the
``2 * span`` rows of the relative-embedding table. The resulting row index is the *slot*:

    slot(i, j) = clamp(bucket(i - j) + span, 0, 2 * span - 1)

c2p looks up ``slot(i, j)`` in the position keys for query i; p2c looks up the same slot in the
position queries for key j (the bucket function is odd, so -bucket(j - i) == bucket(i - j)).

Because the slot depends on ``i - j`` only, the fast attention path never builds the (L, L) slot
matrix: it multiplies a tile of content vectors with a *window* of position vectors ordered by
distance and reads the scores back as a strided view (see ``attention.relative_scores``).
``PositionSlots.window`` provides those windows.
"""

from __future__ import annotations

import math
from functools import cached_property, lru_cache

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


def distance_slots(distance: torch.Tensor, *, span: int, buckets: int = -1, max_position: int = -1) -> torch.Tensor:
    """Table row (slot) of each distance ``i - j`` in ``distance`` (any shape, long)."""
    if buckets > 0 and max_position > 0:
        distance = log_bucket(distance, buckets, max_position)
    return torch.clamp(distance + span, 0, 2 * span - 1)


def scalar_slot(distance: int, *, span: int, buckets: int = -1, max_position: int = -1) -> int:
    """``slot`` of one distance, on Python numbers (same arithmetic as ``distance_slots``)."""
    r = distance
    if buckets > 0 and max_position > 0:
        mid = buckets // 2
        abs_pos = mid - 1 if -mid < r < mid else abs(r)
        if abs_pos > mid:
            log_pos = math.ceil(math.log(abs_pos / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
            r = int(log_pos) * (1 if r > 0 else -1)
    return min(max(r + span, 0), 2 * span - 1)


@lru_cache(maxsize=64)
def saturation_reach(span: int, buckets: int, max_position: int, length: int) -> int | None:
    """Smallest R < length - 1 with slot(r) == slot(+inf) for r > R and slot(-r) == slot(-inf); else None."""
    kw = dict(span=span, buckets=buckets, max_position=max_position)
    far = length - 1
    top, bottom = scalar_slot(far, **kw), scalar_slot(-far, **kw)
    reach = far
    # Slots are monotone in the distance, so walk inwards while both sides stay saturated.
    while reach > 0 and scalar_slot(reach, **kw) == top and scalar_slot(-reach, **kw) == bottom:
        reach -= 1
    return reach if reach < far - 1 else None


class PositionSlots:
    """The relative-position slots that self-attention over ``length`` tokens uses.

    Distances range over [-(L-1), L-1] and bucketing/clamping are monotone, so the slots in use form
    the contiguous range ``[first, first + count)``; the encoder projects only those table rows, and
    every index handed out here is relative to ``first``. Everything is computed from Python ints
    (no tensor value is read back, which keeps torch.compile graphs whole) and cached per instance.
    """

    def __init__(self, length: int, *, span: int, buckets: int = -1, max_position: int = -1,
                 device: torch.device | None = None):
        self.length, self.span, self.buckets, self.max_position = length, span, buckets, max_position
        self.device = device
        self.first = self.slot(-(length - 1))
        self.count = self.slot(length - 1) - self.first + 1
        self._cache: dict[tuple, torch.Tensor | tuple[torch.Tensor, torch.Tensor]] = {}

    def slot(self, distance: int) -> int:
        return scalar_slot(distance, span=self.span, buckets=self.buckets, max_position=self.max_position)

    def slots_of(self, distance: torch.Tensor) -> torch.Tensor:
        """Slots (minus ``first``) of the distances ``i - j`` in ``distance``, clamped into the rows in
        use: distances the sequence cannot have (padding) get valid but meaningless slots."""
        slots = distance_slots(distance, span=self.span, buckets=self.buckets, max_position=self.max_position)
        return torch.clamp(slots - self.first, 0, self.count - 1)

    def _cached(self, key: tuple, make):
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= 256:
                self._cache.clear()
            found = self._cache[key] = make()
        return found

    @property
    def diagonal(self) -> bool:
        """True when every distance in use has a slot of its own (no bucketing or clamping)."""
        return self.count == 2 * self.length - 1

    @cached_property
    def index(self) -> torch.Tensor:
        """(L, L) long: ``slot(i, j) - first`` (the reference path's gather index)."""
        return self.slots_of(relative_positions(self.length, self.length, device=self.device))

    @cached_property
    def reach(self) -> int | None:
        """Smallest R such that every distance with |r| > R has the outermost slot of its sign.

        Beyond ``R`` the position terms stop depending on the key (c2p) or the query (p2c): the
        attention path uses this to handle long inputs as a band of width ~2R plus constants.
        None when the slots do not saturate within the sequence.
        """
        return saturation_reach(self.span, self.buckets, self.max_position, self.length)

    def band_windows(self, tile: int, reach: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot windows (minus ``first``) for the band form of c2p and p2c (see attention._bias_band).

        For a tile of rows starting at ``a`` and band columns starting at ``a - reach``, the distance
        of (row a + x, column a - reach + y) is ``reach + x - y`` whatever ``a`` is. c2p reads window
        entry m = tile - 1 - x + y, p2c entry m = x - y + band - 1 (band = tile + 2 * reach); both
        windows have tile + band - 1 entries.
        """
        def make():
            band = tile + 2 * reach
            m = torch.arange(tile + band - 1, device=self.device)
            return self.slots_of(reach + tile - 1 - m), self.slots_of(reach + m - band + 1)
        return self._cached(("band", tile, reach), make)

    def window(self, *, row_start: int, tiles: int, tile: int, col_start: int, cols: int, sign: int) -> torch.Tensor:
        """Slots by distance for tiles of rows against a range of columns.

        Rows ``a = row_start + t * tile + x`` (tile ``t``, ``x < tile``), columns ``c = col_start + y``
        (``y < cols``), distance ``sign * (a - c)``. Entry ``[t, m]`` is the slot (minus ``first``) of
        the distance for every (x, y) with ``m = tile - 1 - x + y``: within a tile the distance only
        falls as m grows, so one window of ``tile + cols - 1`` slots serves the whole tile.
        Returns (tiles, tile + cols - 1) long. Rows or columns past the sequence (padding) get
        clamped, valid but meaningless slots.
        """
        def make():
            starts = torch.arange(tiles, device=self.device) * tile + (row_start - col_start + tile - 1)  # (tiles,)
            steps = torch.arange(tile + cols - 1, device=self.device)                                  # (w,)
            return self.slots_of(sign * (starts[:, None] - steps[None, :]))                           # (tiles, w)
        return self._cached((row_start, tiles, tile, col_start, cols, sign), make)


@lru_cache(maxsize=16)
def slot_table(span: int, buckets: int = -1, max_position: int = -1) -> tuple[int, tuple[int, ...]]:
    """(R, slots of the distances -R ... R), R the distance past which every slot is the outermost one
    of its sign: slot(d) = table[clamp(d, -R, R) + R] for every distance d, however long the input."""
    kw = dict(span=span, buckets=buckets, max_position=max_position)
    top, bottom = 2 * span - 1, 0

    def saturated(r: int) -> bool:          # slots are monotone in the distance
        return scalar_slot(r, **kw) == top and scalar_slot(-r, **kw) == bottom

    high = 1
    while not saturated(high):
        high *= 2
    low = high // 2                          # not saturated (or 0); binary search the first saturated one
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if saturated(mid) else (mid, high)
    return high, tuple(scalar_slot(d, **kw) for d in range(-high, high + 1))


class GraphSlots:
    """Slots for graphs exported with a dynamic length (ONNX): every table row is in use
    (``first = 0``, ``count = 2 * span``) and the (L, L) index is built from ``length`` by tensor
    operations, so the exported graph computes the slots for the length it is run at instead of
    holding an index frozen at the traced length. The bucket of each distance comes from a constant
    table of the 2R + 1 distances before saturation (``slot_table``), not from a log in the graph:
    runtimes' vectorised logs differ from libm's in the last bit, which moves distances whose bucket
    lies exactly on an integer (e.g. 511 in v3) into the next bucket. Only the reference attention
    path reads it.
    """

    first, reach = 0, None

    def __init__(self, length, *, span: int, buckets: int = -1, max_position: int = -1,
                 device: torch.device | None = None):
        self.length, self.span, self.buckets, self.max_position = length, span, buckets, max_position
        self.device = device
        self.count = 2 * span

    @cached_property
    def index(self) -> torch.Tensor:
        """(L, L) long: ``slot(i - j)``."""
        reach, slots = slot_table(self.span, self.buckets, self.max_position)
        table = torch.tensor(slots, dtype=torch.long, device=self.device)                   # (2R + 1,)
        ids = torch.arange(self.length, device=self.device)
        distance = (ids[:, None] - ids[None, :]).clamp(-reach, reach)                         # (L, L)
        return table[distance + reach]


def position_slots(length: int, *, span: int, buckets: int = -1, max_position: int = -1,
                   device: torch.device | None = None) -> PositionSlots:
    """Slots for self-attention over ``length`` tokens with a table of ``2 * span`` rows."""
    return PositionSlots(length, span=span, buckets=buckets, max_position=max_position, device=device)
