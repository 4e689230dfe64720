"""The SentencePiece backend (DeBERTa v2, v3, mDeBERTa): ids from the ``sentencepiece`` library itself."""

from __future__ import annotations

import unicodedata

WORD_START = "\u2581"  # SentencePiece's "▁": the whitespace in front of a word, written into its first piece


def _is_punctuation(char: str) -> bool:
    """Punctuation as DeBERTa-v2's original ``split_by_punct`` defines it (ASCII symbols count too)."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _split_on_punct(text: str) -> list[tuple[int, str]]:
    """Split ``text`` into runs of non-punctuation and single punctuation characters, with start indices."""
    out: list[tuple[int, str]] = []
    start = 0
    for i, ch in enumerate(text):
        if _is_punctuation(ch):
            if start < i:
                out.append((start, text[start:i]))
            out.append((i, ch))
            start = i + 1
    if start < len(text):
        out.append((start, text[start:]))
    return out


def _byte_to_char_index(text: str) -> list[int]:
    """``table[b]`` = index of the character holding UTF-8 byte ``b`` (``len(text)`` at the end)."""
    table: list[int] = []
    for i, ch in enumerate(text):
        table.extend([i] * len(ch.encode("utf-8")))
    table.append(len(text))
    return table


def _lowercase_with_map(text: str) -> tuple[str, list[int] | None]:
    """``text.lower()`` plus, when lengths differ, the original index of every lowered character."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered, None
    index: list[int] = []
    for i, ch in enumerate(text):
        index.extend([i] * len(ch.lower()))
    if len(index) != len(lowered):  # should not happen; fall back to a proportional clamp
        index = [min(j, len(text) - 1) for j in range(len(lowered))]
    return lowered, index


class SpmBackend:
    """Encodes plain text (no special tokens in it) with a ``sentencepiece`` model.

    Ids are exactly ``SentencePieceProcessor.encode(text)`` (after DeBERTa's optional lower-casing and
    punctuation split). Offsets come from the library's own offset output, decided once when the model
    loads -- never from whether one particular text happened to encode, so a failed call cannot change
    how later calls work.
    """

    kind = "spm"

    def __init__(self, model_proto: bytes, do_lower_case: bool = False, split_by_punct: bool = False):
        import sentencepiece

        self.model_proto = model_proto
        self.sp = sentencepiece.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(model_proto)
        self.do_lower_case = bool(do_lower_case)
        self.split_by_punct = bool(split_by_punct)
        self.size = self.sp.get_piece_size()
        self._offset_mode = self._probe_offset_mode()
        self._starts_word: list[bool] | None = None

    def _probe_offset_mode(self) -> str:
        """``"offset_mapping"`` (sentencepiece >= 0.2.1: character offsets) or ``"immutable_proto"`` (older)."""
        try:
            self.sp.encode("a", out_type="offset_mapping")
            return "offset_mapping"
        except (ValueError, TypeError, RuntimeError, KeyError):
            return "immutable_proto"

    def lookup(self, piece: str) -> int | None:
        idx = self.sp.piece_to_id(piece)
        return idx if 0 <= idx < self.size and self.sp.id_to_piece(idx) == piece else None

    def piece(self, idx: int) -> str:
        return self.sp.id_to_piece(idx)

    def starts_word(self, ids: list[int]) -> list[bool]:
        """Whether each piece begins a word: its surface starts with the "▁" marker."""
        if self._starts_word is None:
            self._starts_word = [self.sp.id_to_piece(i).startswith(WORD_START) for i in range(self.size)]
        table = self._starts_word
        return [table[i] for i in ids]

    def _offsets_one(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and character spans (relative to ``text``) of one SentencePiece call."""
        if self._offset_mode == "offset_mapping":
            res = self.sp.encode(text, out_type="offset_mapping")
            return list(res["ids"]), [tuple(o) for o in res["offsets"]]
        # older sentencepiece: byte offsets from the immutable proto, converted to character offsets
        proto = self.sp.encode(text, out_type="immutable_proto")
        b2c = _byte_to_char_index(text)
        last = len(b2c) - 1
        ids, offs = [], []
        for p in proto.pieces:
            begin, end = min(p.begin, last), min(p.end, last)
            start_c = b2c[begin]
            end_c = start_c if end <= begin else b2c[end - 1] + 1  # a span ending inside a character rounds up
            ids.append(p.id)
            offs.append((start_c, end_c))
        return ids, offs

    def encode(self, text: str, with_offsets: bool) -> tuple[list[int], list[tuple[int, int]] | None]:
        """Encode plain text (no special tokens inside); offsets are relative to ``text``."""
        work, index = _lowercase_with_map(text) if self.do_lower_case else (text, None)
        chunks = _split_on_punct(work) if self.split_by_punct else [(0, work)]
        if not with_offsets:
            if len(chunks) == 1:
                return self.sp.encode(chunks[0][1]), None
            ids = []
            for piece_ids in self.sp.encode([c for _, c in chunks]):
                ids.extend(piece_ids)
            return ids, None
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for start, chunk in chunks:
            c_ids, c_offs = self._offsets_one(chunk)
            ids.extend(c_ids)
            for i, (s, e) in zip(c_ids, c_offs):
                s, e = s + start, e + start
                piece = self.sp.id_to_piece(i)
                if piece.startswith(WORD_START):
                    # drop the whitespace the "▁" marker stands for, but keep whitespace the piece spells out
                    body = piece.lstrip(WORD_START)
                    while s < e and work[s].isspace() and not (body and work[s] == body[0]):
                        s += 1
                offsets.append((s, e))
        if index is not None:
            n = len(index)
            mapped = []
            for s, e in offsets:
                ms = index[s] if s < n else len(text)
                me = (index[e - 1] + 1) if e > s else ms
                mapped.append((ms, me))
            offsets = mapped
        return ids, offsets

    def pieces(self, text: str) -> list[str]:
        """The pieces of plain text as sentencepiece writes them (unknown pieces show their surface text)."""
        work = text.lower() if self.do_lower_case else text
        chunks = _split_on_punct(work) if self.split_by_punct else [(0, work)]
        return [p for _, chunk in chunks for p in self.sp.encode(chunk, out_type=str)]

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def tokens_to_string(self, tokens: list[str]) -> str:
        """Pieces joined with "▁" read as a space, the leading one dropped (transformers' Metaspace decoder).

        Byte-fallback pieces (``<0xE4>``...) are joined back into the characters they spell.
        """
        parts: list[str] = []
        pending = bytearray()
        for token in tokens:
            if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
                try:
                    pending.append(int(token[3:5], 16))
                    continue
                except ValueError:
                    pass
            if pending:
                parts.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            parts.append(token.replace(WORD_START, " "))
        if pending:
            parts.append(pending.decode("utf-8", errors="replace"))
        text = "".join(parts)
        return text[1:] if tokens and tokens[0].startswith(WORD_START) else text

    def vocab(self) -> dict[str, int]:
        return {self.sp.id_to_piece(i): i for i in range(self.size)}
