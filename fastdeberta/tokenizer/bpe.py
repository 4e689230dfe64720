"""The byte-level BPE backend (DeBERTa v1): ``vocab.json`` + ``merges.txt``, the original ``bpe_encoder.bin``,
or any ``tokenizer.json``, run by the ``tokenizers`` library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .layout import Segment

# The original DeBERTa v1 GPT2Tokenizer numbers these symbols first, in this order, and "[MASK]" last.
_BPE_ENCODER_LEADING_SYMBOLS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
_BPE_ENCODER_HINT = (
    "Use the vocab.json + merges.txt of the same model instead (the Hub repos microsoft/deberta-base and "
    "microsoft/deberta-large ship them)."
)


def read_bpe_encoder(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The ``vocab.json`` mapping and the merges equivalent to an original DeBERTa v1 ``bpe_encoder.bin``.

    The file is a ``torch.save``d dict of plain Python values:

    * ``"encoder"``: byte-level BPE token (GPT-2's byte-to-unicode alphabet) -> GPT-2 id;
    * ``"vocab"``: the BPE merges, ``(left, right)`` pairs in rank order;
    * ``"dict_map"``: ``(symbol, count)`` pairs of a fairseq dictionary; a symbol is a GPT-2 id written
      in decimal (``"262"``), or a filler word such as ``"madeupword0000"``.

    The original tokenizer gives every distinct symbol the next free id in order of first appearance:
    [PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3, the ``dict_map`` symbols, then [MASK]. Text is BPE-encoded to
    GPT-2 ids and each GPT-2 id ``g`` becomes the DeBERTa id of the symbol ``str(g)``. So the returned
    vocabulary maps each byte-level token to the DeBERTa id of its GPT-2 id; symbols that are not a
    GPT-2 id (specials, filler words) keep their own string.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for unsafe, corrupt or foreign files
        raise ValueError(
            f"Cannot read {path} with torch.load(weights_only=True), the only way fastdeberta unpickles "
            f"files ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            + _BPE_ENCODER_HINT
        ) from err
    missing = [k for k in ("encoder", "vocab", "dict_map") if not isinstance(state, dict) or k not in state]
    if missing:
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path} is not a DeBERTa bpe_encoder.bin: it lacks {missing} (found {found}). "
            + _BPE_ENCODER_HINT
        )
    encoder, merges, dict_map = state["encoder"], state["vocab"], state["dict_map"]

    def bad(what: str, value: Any) -> ValueError:
        return ValueError(f"{path}: unexpected {what}: {value!r:.80}. " + _BPE_ENCODER_HINT)

    if not isinstance(encoder, dict):
        raise bad("'encoder' (want a dict of token -> GPT-2 id)", type(encoder).__name__)
    for token, gpt2_id in encoder.items():
        if not isinstance(token, str) or not isinstance(gpt2_id, int):
            raise bad("'encoder' entry (want str -> int)", (token, gpt2_id))
    pairs: list[tuple[str, str]] = []
    for entry in merges:
        if (
            not isinstance(entry, (list, tuple))
            or len(entry) != 2
            or not all(isinstance(t, str) and t and not any(c.isspace() for c in t) for t in entry)
        ):
            raise bad("'vocab' merge (want a pair of tokens without whitespace)", entry)
        pairs.append((entry[0], entry[1]))

    symbol_ids: dict[str, int] = {}
    for symbol in _BPE_ENCODER_LEADING_SYMBOLS:
        symbol_ids.setdefault(symbol, len(symbol_ids))
    for entry in dict_map:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str):
            raise bad("'dict_map' entry (want a (symbol, count) pair)", entry)
        symbol_ids.setdefault(entry[0], len(symbol_ids))  # a repeated symbol keeps its first id
    symbol_ids.setdefault("[MASK]", len(symbol_ids))

    token_of_gpt2_id = {gpt2_id: token for token, gpt2_id in encoder.items()}
    vocab: dict[str, int] = {}
    for symbol, idx in symbol_ids.items():
        token = symbol
        if symbol.isascii() and symbol.isdigit() and str(int(symbol)) == symbol:
            token = token_of_gpt2_id.get(int(symbol), symbol)
        if token in vocab:
            raise bad(f"clash: symbols with ids {vocab[token]} and {idx} both stand for the token", token)
        vocab[token] = idx
    unmapped = [t for t in encoder if t not in vocab]
    if unmapped:
        raise ValueError(
            f"{path}: {len(unmapped)} of the {len(encoder)} BPE tokens have no DeBERTa id (their GPT-2 id "
            f"is missing from 'dict_map'), e.g. {unmapped[:5]}; the original tokenizer fails on any text "
            "that produces them, and fastdeberta cannot build the BPE without them. " + _BPE_ENCODER_HINT
        )
    for left, right in pairs:
        for token in (left, right, left + right):
            if token not in vocab:
                raise bad(f"merge {left!r} + {right!r}: token not in 'encoder'", token)
    return vocab, pairs



class HFBackend:
    """A ``tokenizers.Tokenizer`` (byte-level BPE from vocab.json/merges.txt, or any tokenizer.json)."""

    def __init__(
        self,
        tok: Any,
        kind: str,
        add_prefix_space: bool = False,
        files: dict[str, bytes] | None = None,
        mask_lstrip: bool = False,
    ):
        self.tok = tok
        self.mask_lstrip = mask_lstrip
        self.kind = kind
        self.add_prefix_space = add_prefix_space
        self.files = files or {}
        tok.no_truncation()
        tok.no_padding()

    @classmethod
    def from_bpe(
        cls, vocab_json: Path, merges_txt: Path, add_prefix_space: bool = False, mask_lstrip: bool = True
    ) -> HFBackend:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, processors

        bpe = models.BPE.from_file(str(vocab_json), str(merges_txt))
        tok = HFTokenizer(bpe)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
        files = {"vocab.json": Path(vocab_json).read_bytes(), "merges.txt": Path(merges_txt).read_bytes()}
        return cls(tok, "bpe", add_prefix_space=add_prefix_space, files=files, mask_lstrip=mask_lstrip)

    @classmethod
    def from_bpe_encoder(cls, path: Path, mask_lstrip: bool = True) -> HFBackend:
        """The byte-level BPE of an original DeBERTa v1 ``bpe_encoder.bin`` (see :func:`read_bpe_encoder`).

        The file is turned into the ``vocab.json`` + ``merges.txt`` it is equivalent to, so that the
        tokenizer runs (and saves) exactly like one loaded from those files.
        """
        import tempfile

        vocab, merges = read_bpe_encoder(path)
        with tempfile.TemporaryDirectory() as tmp:
            vocab_json, merges_txt = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
            vocab_json.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
            merges_txt.write_text(
                "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
            )
            # the original GPT2Tokenizer encodes the text as is: no prefix space
            return cls.from_bpe(vocab_json, merges_txt, add_prefix_space=False, mask_lstrip=mask_lstrip)

    @classmethod
    def from_tokenizer_json(cls, path: Path) -> HFBackend:
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_file(str(path)), "tokenizer.json")

    def lookup(self, token: str) -> int | None:
        return self.tok.token_to_id(token)

    def piece(self, idx: int) -> str | None:
        return self.tok.id_to_token(idx)

    def pieces(self, text: str) -> list[str]:
        return list(self.tok.encode(text, add_special_tokens=False).tokens)

    def encode(self, text: str, with_offsets: bool) -> tuple[list[int], list[tuple[int, int]] | None]:
        enc = self.tok.encode(text, add_special_tokens=False)
        return list(enc.ids), ([tuple(o) for o in enc.offsets] if with_offsets else None)

    def encode_segment(self, text: str, with_offsets: bool) -> Segment:
        """Ids, offsets and word indices of ``text`` (words as the pre-tokenizer splits them)."""
        enc = self.tok.encode(text, add_special_tokens=False)
        offsets = [tuple(o) for o in enc.offsets] if with_offsets else None
        return Segment(list(enc.ids), offsets, _fill_words(enc.word_ids))

    def encode_words(self, words: list[str], with_offsets: bool) -> Segment:
        """A pre-split text: word ``i`` gives every one of its tokens word index ``i``; offsets are
        relative to each word (as transformers returns them for ``is_split_into_words=True``)."""
        enc = self.tok.encode(words, is_pretokenized=True, add_special_tokens=False)
        offsets = [tuple(o) for o in enc.offsets] if with_offsets else None
        return Segment(list(enc.ids), offsets, _fill_words(enc.word_ids))

    def tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self.tok.decoder
        return decoder.decode(list(tokens)) if decoder is not None else "".join(tokens)

    @property
    def size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)



def _fill_words(word_ids: list[int | None]) -> list[int]:
    """Word indices with the gaps (tokens the library gives no word, e.g. added tokens) numbered on."""
    out: list[int] = []
    last = -1
    for word in word_ids:
        last = last + 1 if word is None else word
        out.append(last)
    return out
