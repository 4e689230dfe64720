"""From encoded texts to rows of model input: truncation (with stride and overflowing windows),
``[CLS] A [SEP] B [SEP]`` assembly, and padding.

The rules are those of the ``tokenizers`` library that transformers' DeBERTa tokenizers run on:

* ``longest_first`` keeps the shorter sequence whole if it fits in half of the budget; otherwise both
  get half and the originally longer one (the second on ties) gets the odd token.
* A truncated sequence is cut into windows of the length it is allowed, each starting
  ``keep - stride`` tokens after the previous one (so neighbours share ``stride`` tokens), until a
  window reaches the end; ``truncation_side="left"`` runs the same from the end. The first window is
  the row a plain truncating call returns; ``return_overflowing_tokens=True`` returns the others too.
* For a pair, rows are ``(A0, B0)``, then for each further window ``a`` of A: ``(a, B0)`` and ``(a, b)``
  for each further window ``b`` of B, then ``(A0, b)`` for each ``b`` -- the order of the library's
  ``Encoding.merge_with``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ..errors import InvalidInputError
from .encoding import Encoding


class Segment(NamedTuple):
    """One encoded text (no special tokens added): ids, character offsets (or None) and word indices
    (or None: number them from the pieces' word markers when someone asks, see ``number_words``)."""

    ids: list[int]
    offsets: list[tuple[int, int]] | None
    words: list[int] | None


Window = tuple[int, int]  # a token range [start, stop) of one sequence


def truncation_lengths(
    len_a: int, len_b: int | None, to_remove: int, mode: str, limit: int, index: int
) -> tuple[int, int | None]:
    """How many tokens of each sequence a row keeps, following transformers' truncation strategies."""
    if mode == "longest_first":
        budget = len_a + (len_b or 0) - to_remove
        if budget < 0:
            raise InvalidInputError(f"Cannot truncate item {index} to max_length={limit}")
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
            raise InvalidInputError(
                f"Cannot truncate item {index} with truncation='only_first': the first sequence has {len_a} "
                f"tokens but {to_remove} must go to reach max_length={limit}. Use truncation='longest_first'."
            )
        return len_a - to_remove, len_b
    # only_second
    if len_b is None:
        raise InvalidInputError(
            f"truncation='only_second' needs a text_pair, but item {index} is a single sequence that is "
            f"{to_remove} tokens over max_length={limit}. Use truncation='only_first' or 'longest_first'."
        )
    if to_remove >= len_b:
        raise InvalidInputError(
            f"Cannot truncate item {index} with truncation='only_second': the second sequence has {len_b} "
            f"tokens but {to_remove} must go to reach max_length={limit}. Use truncation='longest_first'."
        )
    return len_a, len_b - to_remove


def windows(length: int, keep: int, stride: int, side: str, what: str) -> list[Window]:
    """The main window of a sequence of ``length`` tokens cut to ``keep``, then its overflowing windows."""
    if keep >= length:
        return [(0, length)]
    if keep == 0:  # the library leaves the row empty and sends the whole sequence to the overflow
        return [(0, 0), (0, length)]
    if stride >= keep:
        raise InvalidInputError(
            f"stride={stride} must be smaller than the {keep} tokens of the {what} that fit in each row "
            "(max_length minus the special tokens and the other text); lower stride or raise max_length."
        )
    step = keep - stride
    out: list[Window] = []
    if side == "right":
        start = 0
        while True:
            stop = min(start + keep, length)
            out.append((start, stop))
            if stop == length:
                return out
            start += step
    stop = length
    while True:
        start = max(stop - keep, 0)
        out.append((start, stop))
        if start == 0:
            return out
        stop -= step


def pair_windows(first: list[Window], second: list[Window] | None) -> list[tuple[Window, Window | None]]:
    """The rows of one example, main row first, in the library's order (see the module doc)."""
    if second is None:
        return [(w, None) for w in first]
    rows = [(first[0], second[0])]
    for a in first[1:]:
        rows.append((a, second[0]))
        rows.extend((a, b) for b in second[1:])
    rows.extend((first[0], b) for b in second[1:])
    return rows


def assemble(
    seg_a: Segment,
    window_a: Window,
    seg_b: Segment | None,
    window_b: Window | None,
    *,
    special_ids: tuple[int, int] | None,
    number_words: Callable[[list[int]], list[int]],
    sample_index: int,
    texts: tuple[str | None, str | None],
    token_of: Callable[[int], str],
) -> Encoding:
    """One row: ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` (no special tokens when ``special_ids`` is None).

    ``number_words(ids)`` gives the word index of each token of a whole segment whose words were not
    computed while encoding; word indices are taken before cutting, so a window keeps the text's.
    """
    start_a, stop_a = window_a
    ids = seg_a.ids[start_a:stop_a]
    offsets = None if seg_a.offsets is None else seg_a.offsets[start_a:stop_a]
    has_specials = special_ids is not None
    if has_specials:
        ids = [special_ids[0], *ids, special_ids[1]]
        if offsets is not None:
            offsets = [(0, 0), *offsets, (0, 0)]
    n_b = 0
    if seg_b is not None:
        start_b, stop_b = window_b
        n_b = stop_b - start_b
        ids += seg_b.ids[start_b:stop_b]
        if offsets is not None:
            offsets += seg_b.offsets[start_b:stop_b]
        if has_specials:
            ids.append(special_ids[1])
            if offsets is not None:
                offsets.append((0, 0))
    layout = (0, int(has_specials), stop_a - start_a, int(has_specials), n_b, int(has_specials and seg_b is not None), 0)

    word_source = (seg_a, window_a, seg_b, window_b, number_words)
    return Encoding(ids, offsets, layout, word_source, sample_index, texts, token_of)


def padded_length(lengths: list[int], mode: str, max_length: int | None, multiple: int | None) -> int:
    """The length every row is padded to: the longest row, or ``max_length``, rounded up to ``multiple``."""
    target = max(lengths, default=0) if mode == "longest" or max_length is None else max_length
    if multiple:
        target = -(-target // multiple) * multiple
    return target
