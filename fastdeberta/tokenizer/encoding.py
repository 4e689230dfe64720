"""What a tokenizer call returns: ``BatchEncoding`` (a dict of model inputs) and, behind it, one
:class:`Encoding` per row that knows its tokens, words, sequences and character offsets.

The accessors carry transformers' names and signatures (``enc.word_ids()``, ``enc.tokens(1)``,
``enc.sequence_ids()``, ``enc.char_to_token(0, 17)``), so code written for a transformers fast
tokenizer -- label alignment for NER, answer spans for QA -- runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InvalidInputError

WORD_MARKERS = ("\u2581", "\u0120")  # SentencePiece's "▁" and byte-level BPE's "Ġ": a token that absorbed a space


class Encoding:
    """One row of model input, as transformers' fast tokenizers describe it.

    A row is laid out as ``[PAD]* [CLS] A [SEP] B [SEP] [PAD]*`` (left padding, specials and B
    optional); only ``ids`` (and ``offsets`` when asked for) are stored, the other fields -- token type
    ids, masks, sequence ids, word ids -- follow from that layout when read. That keeps a call on
    thousands of texts from allocating seven lists per row.

    ``word_ids[t]`` is the index of the word token ``t`` belongs to (None for special tokens and
    padding); a SentencePiece word starts at each piece beginning with "▁", a byte-level BPE word
    where the pre-tokenizer splits, a pre-split input's word at each item of the list. Overflowing
    rows keep the word indices of the whole text. ``sequence_ids[t]`` is 0 or 1 for the first or second
    text, None for special tokens and padding. ``offsets`` are character spans into the text the token
    came from (None when the call did not compute them). ``sample_index`` is the input this row came
    from (rows repeat an input when it overflows).
    """

    __slots__ = ("ids", "offsets", "sample_index", "texts", "_layout", "_word_source", "_word_ids", "_token_of")

    def __init__(
        self,
        ids: list[int],
        offsets: list[tuple[int, int]] | None,
        layout: tuple[int, int, int, int, int, int, int],
        word_source: tuple,
        sample_index: int,
        texts: tuple[str | None, str | None],
        token_of: Callable[[int], str],
    ):
        self.ids = ids
        self.offsets = offsets
        # (left padding, [CLS], tokens of A, [SEP] after A, tokens of B, [SEP] after B, right padding)
        self._layout = layout
        self._word_source = word_source  # (segment A, window of A, segment B, window of B, number_words)
        self._word_ids: list[int | None] | None = None
        self.sample_index = sample_index
        self.texts = texts  # the source strings (None for pre-split words, whose offsets are per word)
        self._token_of = token_of

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Encoding(num_tokens={len(self.ids)}, sample_index={self.sample_index})"

    def __getstate__(self) -> dict[str, Any]:
        # pickled on its own (e.g. from a DataLoader worker): the derived fields travel, the tokenizer does not
        return {
            "ids": self.ids,
            "offsets": self.offsets,
            "layout": self._layout,
            "word_ids": self.word_ids,
            "tokens": dict(zip(self.ids, self.tokens)),
            "sample_index": self.sample_index,
            "texts": self.texts,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.ids, self.offsets, self._layout = state["ids"], state["offsets"], state["layout"]
        self._word_source, self._word_ids = None, state["word_ids"]
        self.sample_index, self.texts = state["sample_index"], state["texts"]
        self._token_of = state["tokens"].__getitem__

    @property
    def tokens(self) -> list[str]:
        """The token strings (pieces), ``[PAD]`` for padding."""
        return [self._token_of(i) for i in self.ids]

    @property
    def type_ids(self) -> list[int]:
        """0 up to and including the first [SEP], 1 for B and its [SEP], 0 for padding."""
        left, cls, n_a, sep_a, n_b, sep_b, right = self._layout
        return [0] * (left + cls + n_a + sep_a) + [1] * (n_b + sep_b) + [0] * right

    @property
    def special_tokens_mask(self) -> list[int]:
        """1 for the special tokens the call added and for padding, 0 for tokens of the texts."""
        left, cls, n_a, sep_a, n_b, sep_b, right = self._layout
        return [1] * (left + cls) + [0] * n_a + [1] * sep_a + [0] * n_b + [1] * (sep_b + right)

    @property
    def attention_mask(self) -> list[int]:
        left, _, _, _, _, _, right = self._layout
        return [0] * left + [1] * (len(self.ids) - left - right) + [0] * right

    @property
    def sequence_ids(self) -> list[int | None]:
        left, cls, n_a, sep_a, n_b, sep_b, right = self._layout
        return [None] * (left + cls) + [0] * n_a + [None] * sep_a + [1] * n_b + [None] * (sep_b + right)

    @property
    def word_ids(self) -> list[int | None]:
        if self._word_ids is None:
            left, cls, _, sep_a, _, sep_b, right = self._layout
            words_a, words_b = _window_words(*self._word_source)
            self._word_ids = [None] * (left + cls) + words_a + [None] * sep_a + words_b + [None] * (sep_b + right)
        return self._word_ids

    def pad(self, length: int, pad_id: int, side: str) -> None:
        """Pad in place to ``length`` tokens on ``side`` ("right" or "left"), as the `tokenizers` library does."""
        missing = length - len(self.ids)
        if missing <= 0:
            return
        left, cls, n_a, sep_a, n_b, sep_b, right = self._layout
        if side == "right":
            self.ids = self.ids + [pad_id] * missing
            self.offsets = None if self.offsets is None else self.offsets + [(0, 0)] * missing
            self._layout = (left, cls, n_a, sep_a, n_b, sep_b, right + missing)
        else:
            self.ids = [pad_id] * missing + self.ids
            self.offsets = None if self.offsets is None else [(0, 0)] * missing + self.offsets
            self._layout = (left + missing, cls, n_a, sep_a, n_b, sep_b, right)
        self._word_ids = None

    def token_to_word(self, token_index: int) -> int | None:
        return self.word_ids[token_index]

    def token_to_sequence(self, token_index: int) -> int | None:
        return self.sequence_ids[token_index]

    def char_to_token(self, char_index: int, sequence_index: int = 0) -> int | None:
        """The first token whose span, as transformers draws it, holds character ``char_index`` of text
        ``sequence_index`` (None if none does).

        Our offsets leave out the whitespace a word-initial token ("▁world", "Ġworld") absorbed;
        transformers' spans include it, and give a bare "▁" that SentencePiece prepended the span of
        the character after it. This answers with those spans, so the index equals transformers'.
        """
        if self.offsets is None:
            raise InvalidInputError("char_to_token needs offsets; this encoding was made without them")
        text = self.texts[sequence_index] if sequence_index < len(self.texts) else None
        previous_end = 0
        for t, sequence in enumerate(self.sequence_ids):
            if sequence != sequence_index:
                continue
            start, end = self.offsets[t]
            if text is not None and self._token_of(self.ids[t]).startswith(WORD_MARKERS):
                start, end = _absorbing_span(text, start, end, previous_end)
            if start <= char_index < end:
                return t
            previous_end = max(previous_end, self.offsets[t][1])
        return None


def _window_words(seg_a: Any, window_a: tuple, seg_b: Any, window_b: tuple | None, number_words: Callable) -> tuple[list, list]:
    """Word indices of the tokens of A's and B's windows, numbered over the whole texts."""
    words_a = (seg_a.words if seg_a.words is not None else number_words(seg_a.ids))[window_a[0] : window_a[1]]
    if seg_b is None:
        return words_a, []
    words_b = seg_b.words if seg_b.words is not None else number_words(seg_b.ids)
    return words_a, words_b[window_b[0] : window_b[1]]


def _absorbing_span(text: str, start: int, end: int, previous_end: int) -> tuple[int, int]:
    """The span of a word-initial token widened over the whitespace before it (back to ``previous_end``);
    a bare marker with nothing to absorb covers the next character, where SentencePiece put it."""
    widened = start
    while widened > previous_end and text[widened - 1].isspace():
        widened -= 1
    if widened == start and end == start:
        return start, min(start + 1, len(text))
    return widened, end


class BatchEncoding(dict):
    """A ``dict`` of model inputs that also allows attribute access (``enc.input_ids``).

    When it comes from calling the tokenizer on text it also holds one :class:`Encoding` per row
    (``enc.encodings``, ``enc[0]``) and answers transformers' questions about them:
    :meth:`tokens`, :meth:`word_ids`, :meth:`sequence_ids`, :meth:`token_to_word`,
    :meth:`token_to_sequence`, :meth:`char_to_token`. ``batch_index`` counts rows, overflowing rows
    included.
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        encodings: list[Encoding] | None = None,
        offsets_source: Callable[[], list[Encoding]] | None = None,
    ):
        super().__init__(data or {})
        self._encodings = encodings
        # recomputes the rows with offsets, for char_to_token on a call made without return_offsets_mapping
        self._offsets_source = offsets_source

    def __reduce__(self) -> tuple:
        # the data and the rows; offsets not computed by the call stay unavailable after unpickling
        return (BatchEncoding, (dict(self), self._encodings, None))

    @property
    def data(self) -> dict[str, Any]:
        """The fields as a plain dict (transformers' ``BatchEncoding.data``)."""
        return dict(self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no field {name!r}; fields: {sorted(self)}") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int) and not isinstance(key, bool):
            return self._row(key)
        return super().__getitem__(key)

    def to(self, device: Any) -> BatchEncoding:
        """Move tensor fields to ``device`` (only meaningful with ``return_tensors="pt"``)."""
        moved = {k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()}
        return BatchEncoding(moved, self._encodings, self._offsets_source)

    @property
    def encodings(self) -> list[Encoding] | None:
        """The rows, or None when this BatchEncoding was not made by tokenizing text (e.g. by ``pad()``)."""
        return self._encodings

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    def _row(self, batch_index: Any) -> Encoding:
        if self._encodings is None:
            raise InvalidInputError(
                "This BatchEncoding holds no token information (it was built by pad() or by hand, not by "
                "calling the tokenizer on text), so tokens(), word_ids(), sequence_ids() and char_to_token() "
                "are not available."
            )
        if isinstance(batch_index, bool) or not isinstance(batch_index, int):
            raise InvalidInputError(f"batch_index must be an int, got {batch_index!r:.40}")
        if not -len(self._encodings) <= batch_index < len(self._encodings):
            raise InvalidInputError(
                f"batch_index {batch_index} is out of range: this encoding has {len(self._encodings)} rows"
            )
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of row ``batch_index``."""
        return self._row(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token of row ``batch_index``, the index of its word (None for special tokens, padding)."""
        return list(self._row(batch_index).word_ids)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token of row ``batch_index``: 0 (first text), 1 (second text) or None (special, padding)."""
        return list(self._row(batch_index).sequence_ids)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        batch_index, token_index = _split_index(batch_or_token_index, token_index)
        return self._row(batch_index).token_to_word(token_index)

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        batch_index, token_index = _split_index(batch_or_token_index, token_index)
        return self._row(batch_index).token_to_sequence(token_index)

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """The index of the token holding a character of the input text, or None.

        ``enc.char_to_token(c)`` for an unbatched call, ``enc.char_to_token(row, c)`` for a batch;
        ``sequence_index=1`` asks about the second text of a pair.
        """
        batch_index, char_index = _split_index(batch_or_char_index, char_index)
        row = self._row(batch_index)
        if row.offsets is None:
            self._fill_offsets()
            row = self._row(batch_index)
        return row.char_to_token(char_index, sequence_index)

    def _fill_offsets(self) -> None:
        if self._offsets_source is None:
            raise InvalidInputError("char_to_token needs offsets; call the tokenizer with return_offsets_mapping=True")
        with_offsets = self._offsets_source()
        for row, source in zip(self._encodings, with_offsets):
            row.offsets = source.offsets


def _split_index(first: int, second: int | None) -> tuple[int, int]:
    """transformers' convention: ``f(i)`` means row 0, index i; ``f(b, i)`` means row b, index i."""
    return (0, first) if second is None else (first, second)


# ----------------------------------------------------------------------------------------------------
# tensors


def to_tensor(rows: Sequence[Any], kind: str, key: str, dtype_long: bool) -> Any:
    """``rows`` as a torch tensor (``kind="pt"``) or numpy array (``"np"``).

    ``dtype_long``: int64 whatever the values (token ids, masks); otherwise the type follows the values
    (float labels stay float). Rows of different lengths raise :class:`InvalidInputError` naming the key.
    """
    try:
        if kind == "pt":
            import numpy as np
            import torch

            if dtype_long:  # through numpy: five times faster than torch.tensor on nested lists
                array = np.array(rows, dtype=np.int64)
                if array.dtype == object:
                    raise ValueError("ragged")
                return torch.from_numpy(array)
            if len(rows) and isinstance(rows[0], torch.Tensor):
                return torch.stack(list(rows))
            return torch.tensor(rows)
        import numpy as np

        array = np.asarray(rows, dtype=np.int64 if dtype_long else None)
        if array.dtype == object:
            raise ValueError("ragged")
        return array
    except (ValueError, TypeError, RuntimeError) as err:
        lengths = sorted({len(r) for r in rows if hasattr(r, "__len__")})
        raise InvalidInputError(
            f"Cannot make {kind!r} tensors from {key!r}: its rows have different lengths {lengths[:2]}...{lengths[-1:]} "
            "or types. Pad them first (padding=True), or leave that key out."
        ) from err
