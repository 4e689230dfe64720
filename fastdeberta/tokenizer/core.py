"""The public :class:`Tokenizer`: a thin facade over a backend (``spm.py`` or ``bpe.py``), the call
machinery (``call.py``, ``layout.py``), padding (``padding.py``) and the folder format (``files.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

from ..errors import InputTypeError, InvalidInputError
from .bpe import HFBackend
from .call import build_output, encode_rows, plan_call, split_examples
from .encoding import BatchEncoding
from .files import SPECIAL_NAMES, load_folder, save_folder
from .inputs import (
    SIDES,
    TokenIdError,
    as_id,
    as_ids,
    check_choice,
    check_count,
    check_encodable,
    check_flag,
    check_text,
    unknown_keywords_message,
)
from .layout import Segment
from .padding import pad_inputs
from .specials import DEFAULT_SPECIALS, literal_pattern, resolve_specials
from .spm import SpmBackend

DEFAULT_MODEL_MAX_LENGTH = 512


class Tokenizer:
    """DeBERTa tokenizer with exact SentencePiece / byte-level BPE ids, called like a transformers one.

    Build one with :meth:`from_pretrained` (a model folder or Hub repo id), :meth:`from_spm`,
    :meth:`from_bpe` or :meth:`from_bpe_encoder`. ``tok(texts, ...)`` takes transformers' arguments
    (padding, truncation, max_length, stride, return_overflowing_tokens, is_split_into_words,
    return_offsets_mapping, return_special_tokens_mask, return_length, return_tensors, ...);
    :meth:`pad` pads encodings made earlier, so transformers' data collators accept this tokenizer.

    ``padding_side`` / ``truncation_side`` ("right" or "left") and ``model_input_names`` (the fields a
    call returns by default) are attributes, read from tokenizer_config.json when it sets them.
    """

    is_fast = True  # offsets, word_ids() and overflow mapping, as transformers' fast tokenizers give them
    pad_token_type_id = 0

    def __init__(
        self,
        backend: SpmBackend | HFBackend,
        *,
        model_max_length: int | None = None,
        special_tokens: dict[str, str] | None = None,
        added_tokens: dict[str, int] | None = None,
        tokenizer_class: str | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        model_input_names: Sequence[str] | None = None,
    ):
        self._backend = backend
        self.model_max_length = check_count(model_max_length, "model_max_length") or DEFAULT_MODEL_MAX_LENGTH
        self._tokenizer_class = tokenizer_class
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_input_names = list(model_input_names or ["input_ids", "attention_mask", "token_type_ids"])
        names = dict(DEFAULT_SPECIALS)
        names.update({k: v for k, v in (special_tokens or {}).items() if v})
        # name -> token string, name -> id, and token string -> id for tokens outside the base vocabulary
        self._special_tokens, self._special_ids, self._added = resolve_specials(backend, names, added_tokens or {})
        self._id_to_added = {i: t for t, i in self._added.items()}
        self._split_re = literal_pattern(backend, self._special_tokens, self._special_ids, self._added)
        self._literal_ids = {t: self._special_ids[n] for n, t in self._special_tokens.items()} | self._added

    @property
    def padding_side(self) -> str:
        return self._padding_side

    @padding_side.setter
    def padding_side(self, value: str) -> None:
        self._padding_side = check_choice(value, "padding_side", SIDES)

    @property
    def truncation_side(self) -> str:
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, value: str) -> None:
        self._truncation_side = check_choice(value, "truncation_side", SIDES)

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_spm(
        cls,
        path: str | os.PathLike,
        *,
        do_lower_case: bool = False,
        split_by_punct: bool = False,
        model_max_length: int | None = None,
        special_tokens: dict[str, str] | None = None,
        added_tokens: dict[str, int] | None = None,
    ) -> Tokenizer:
        """A tokenizer for a SentencePiece model file (``spm.model`` of DeBERTa v2/v3/mDeBERTa)."""
        data = Path(path).read_bytes()
        try:
            backend = SpmBackend(data, do_lower_case=do_lower_case, split_by_punct=split_by_punct)
        except RuntimeError as err:  # sentencepiece's only error type for a file it cannot parse
            raise InvalidInputError(
                f"{path} cannot be read as a SentencePiece model (RuntimeError: {err}). Check that the file "
                "is a complete spm.model (e.g. not a Git LFS pointer or a truncated download)."
            ) from err
        return cls(
            backend,
            model_max_length=model_max_length,
            special_tokens=special_tokens,
            added_tokens=added_tokens,
            tokenizer_class="DebertaV2Tokenizer",
        )

    @classmethod
    def from_bpe(
        cls,
        vocab_json: str | os.PathLike,
        merges_txt: str | os.PathLike,
        *,
        add_prefix_space: bool = False,
        mask_lstrip: bool = True,
        model_max_length: int | None = None,
        special_tokens: dict[str, str] | None = None,
    ) -> Tokenizer:
        """A tokenizer for GPT-2 style byte-level BPE files (DeBERTa v1 ``vocab.json`` + ``merges.txt``).

        ``mask_lstrip=True`` makes ``[MASK]`` absorb the space before it, as transformers 4.x did for DeBERTa v1.
        """
        backend = HFBackend.from_bpe(
            Path(vocab_json), Path(merges_txt), add_prefix_space=add_prefix_space, mask_lstrip=mask_lstrip
        )
        return cls(
            backend,
            model_max_length=model_max_length,
            special_tokens=special_tokens,
            tokenizer_class="DebertaTokenizer",
        )

    @classmethod
    def from_bpe_encoder(
        cls,
        path: str | os.PathLike,
        *,
        mask_lstrip: bool = True,
        model_max_length: int | None = None,
        special_tokens: dict[str, str] | None = None,
    ) -> Tokenizer:
        """A tokenizer for the original DeBERTa v1 ``bpe_encoder.bin``, with the original's ids.

        [PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3 and [MASK] after the vocabulary, as the original assigns them.
        The file is read with ``torch.load(weights_only=True)`` only; :meth:`save_pretrained` writes the
        equivalent ``vocab.json`` + ``merges.txt``.
        """
        return cls(
            HFBackend.from_bpe_encoder(Path(path), mask_lstrip=mask_lstrip),
            model_max_length=model_max_length,
            special_tokens=special_tokens,
            tokenizer_class="DebertaTokenizer",
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        model_max_length: int | None = None,
        token: str | bool | None = None,
    ) -> Tokenizer:
        """Load the tokenizer of a model folder or Hub repo id (files as ``files.py`` describes)."""
        from fastdeberta.hub import resolve_model_dir

        folder = resolve_model_dir(
            name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        return load_folder(cls, Path(folder), model_max_length)

    # -- special tokens and vocabulary -------------------------------------------------------------

    @property
    def backend(self) -> str:
        """``"spm"``, ``"bpe"`` or ``"tokenizer.json"``."""
        return self._backend.kind

    @property
    def do_lower_case(self) -> bool:
        return getattr(self._backend, "do_lower_case", False)

    @property
    def split_by_punct(self) -> bool:
        return getattr(self._backend, "split_by_punct", False)

    pad_token = property(lambda self: self._special_tokens["pad"])
    cls_token = property(lambda self: self._special_tokens["cls"])
    sep_token = property(lambda self: self._special_tokens["sep"])
    unk_token = property(lambda self: self._special_tokens["unk"])
    mask_token = property(lambda self: self._special_tokens["mask"])
    bos_token = cls_token
    eos_token = sep_token
    pad_token_id = property(lambda self: self._special_ids["pad"])
    cls_token_id = property(lambda self: self._special_ids["cls"])
    sep_token_id = property(lambda self: self._special_ids["sep"])
    unk_token_id = property(lambda self: self._special_ids["unk"])
    mask_token_id = property(lambda self: self._special_ids["mask"])
    bos_token_id = cls_token_id
    eos_token_id = sep_token_id

    @property
    def all_special_tokens(self) -> list[str]:
        return [self._special_tokens[n] for n in SPECIAL_NAMES if self._special_ids[n] is not None]

    @property
    def all_special_ids(self) -> list[int]:
        return [self._special_ids[n] for n in SPECIAL_NAMES if self._special_ids[n] is not None]

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id, added tokens (such as ``[MASK]``) included."""
        if isinstance(self._backend, SpmBackend):
            vocab = self._backend.vocab()
            vocab.update(self._added)
            return vocab
        return self._backend.tok.get_vocab(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (largest id + 1), added tokens included."""
        if isinstance(self._backend, SpmBackend):
            return max([self._backend.size - 1, *self._added.values()]) + 1
        return max(self._backend.tok.get_vocab(with_added_tokens=True).values()) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (
            f"Tokenizer(backend={self.backend!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, do_lower_case={self.do_lower_case})"
        )

    # -- tokens and ids ----------------------------------------------------------------------------

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Ids of token strings; unknown strings (and strings no vocabulary can hold) map to the unknown id."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        if not isinstance(tokens, Iterable):
            raise InputTypeError(f"tokens must be a str or a list of str, got {type(tokens).__name__}")
        return [self._token_to_id(t) for t in tokens]

    def _token_to_id(self, token: Any) -> int:
        if not isinstance(token, str):
            raise InputTypeError(f"a token must be a str, got {type(token).__name__}: {token!r:.40}")
        if token in self._added:
            return self._added[token]
        try:
            check_encodable(token, "token")
        except InvalidInputError:  # a lone surrogate is in no vocabulary (they are UTF-8)
            return self.unk_token_id
        idx = self._backend.lookup(token)
        return self.unk_token_id if idx is None else idx

    def convert_ids_to_tokens(
        self, ids: int | Iterable[int], skip_special_tokens: bool = False
    ) -> str | list[str]:
        """Token strings (SentencePiece pieces / byte-level BPE tokens) of ids."""
        if isinstance(ids, int) or (hasattr(ids, "ndim") and ids.ndim == 0):
            return self._id_to_token(as_id(ids, "id"))
        specials = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_token(i) for i in as_ids(ids, "ids") if i not in specials]

    def _id_to_token(self, idx: int) -> str:
        if idx in self._id_to_added:
            return self._id_to_added[idx]
        if idx < 0 or (isinstance(self._backend, SpmBackend) and idx >= self._backend.size):
            raise TokenIdError(f"token id {idx} is out of range for a vocabulary of {self.vocab_size}")
        token = self._backend.piece(idx)
        if token is None:
            raise TokenIdError(f"token id {idx} is out of range for a vocabulary of {self.vocab_size}")
        return token

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """The text a list of token strings spells, as transformers' decoder for this tokenizer joins them
        ("▁" / "Ġ" read as spaces, the first token's leading space dropped, special tokens kept)."""
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise InputTypeError(f"tokens must be a list of str, got {type(tokens).__name__}")
        for i, token in enumerate(tokens):
            check_text(token, f"tokens[{i}]")
        return self._backend.tokens_to_string(list(tokens))

    def get_special_tokens_mask(
        self,
        token_ids_0: Sequence[int],
        token_ids_1: Sequence[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        """1 for a special token, 0 for a sequence token.

        ``already_has_special_tokens=True``: ``token_ids_0`` is a finished row and every id among
        :attr:`all_special_ids` ([PAD] and [MASK] included) is marked. Otherwise: the mask of the row
        ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]`` that :meth:`build_inputs_with_special_tokens` makes.
        """
        ids_0 = as_ids(token_ids_0, "token_ids_0")
        ids_1 = None if token_ids_1 is None else as_ids(token_ids_1, "token_ids_1")
        if check_flag(already_has_special_tokens, "already_has_special_tokens"):
            if ids_1 is not None:
                raise InvalidInputError(
                    "Pass token_ids_1 only with already_has_special_tokens=False: a row that already has its "
                    "special tokens is one sequence of ids."
                )
            specials = set(self.all_special_ids)
            return [1 if i in specials else 0 for i in ids_0]
        mask = [1] + [0] * len(ids_0) + [1]
        return mask if ids_1 is None else mask + [0] * len(ids_1) + [1]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        ids_0 = as_ids(token_ids_0, "token_ids_0")
        if token_ids_1 is None:
            return [self.cls_token_id, *ids_0, self.sep_token_id]
        return [self.cls_token_id, *ids_0, self.sep_token_id, *as_ids(token_ids_1, "token_ids_1"), self.sep_token_id]

    # -- encoding ----------------------------------------------------------------------------------

    def _split_specials(self, text: str) -> list[tuple[int, str, int | None]]:
        """``text`` cut at special / added token strings: ``(start, substring, id or None for plain text)``."""
        if self._split_re is None:
            return [(0, text, None)] if text else []
        lookup = self._literal_ids
        parts: list[tuple[int, str, int | None]] = []
        pos = 0
        for match in self._split_re.finditer(text):
            if match.start() > pos:
                parts.append((pos, text[pos : match.start()], None))
            parts.append((match.start(), match.group(), lookup[match.group()]))
            pos = match.end()
        if pos < len(text):
            parts.append((pos, text[pos:], None))
        return parts

    def _encode_segment(self, text: str, with_offsets: bool) -> Segment:
        """Ids (no [CLS]/[SEP] added), offsets and word indices of one text.

        Special-token strings written in the text map to their ids, each a word of its own. A
        SentencePiece word starts at each piece that begins with "▁" and at the start of every stretch
        of text between special tokens (as transformers numbers words). Text without special-token
        strings leaves its words to be numbered from its ids when asked (:meth:`_number_words`).
        """
        if isinstance(self._backend, HFBackend):
            return self._backend.encode_segment(text, with_offsets)
        parts = self._split_specials(text)
        if len(parts) == 1 and parts[0][2] is None:
            return Segment(*self._backend.encode(text, with_offsets), None)
        ids: list[int] = []
        offsets: list[tuple[int, int]] | None = [] if with_offsets else None
        words: list[int] = []
        word = -1
        for start, part, special_id in parts:
            if special_id is not None:
                word += 1
                ids.append(special_id)
                words.append(word)
                if offsets is not None:
                    offsets.append((start, start + len(part)))
                continue
            part_ids, part_offsets = self._backend.encode(part, with_offsets)
            if part_ids:
                numbered = self._number_words(part_ids, first=word + 1)
                words.extend(numbered)
                word = numbered[-1]
            ids.extend(part_ids)
            if offsets is not None:
                offsets.extend((s + start, e + start) for s, e in part_offsets)
        return Segment(ids, offsets, words)

    def _number_words(self, ids: list[int], first: int = 0) -> list[int]:
        """Word index of each token of plain text: the first token and each "▁" piece start a word."""
        if not ids:
            return []
        starts = self._backend.starts_word(ids)
        starts[0] = True
        return list(accumulate(starts, initial=first - 1))[1:]

    def _encode_words(self, words: list[str], with_offsets: bool) -> Segment:
        """A pre-split text: each word encoded on its own (offsets relative to it), word index = its position."""
        if isinstance(self._backend, HFBackend):
            return self._backend.encode_words(words, with_offsets)
        ids: list[int] = []
        offsets: list[tuple[int, int]] | None = [] if with_offsets else None
        word_ids: list[int] = []
        for index, word in enumerate(words):
            seg = self._encode_segment(word, with_offsets)
            ids.extend(seg.ids)
            word_ids.extend([index] * len(seg.ids))
            if offsets is not None:
                offsets.extend(seg.offsets)
        return Segment(ids, offsets, word_ids)

    def tokenize(self, text: str) -> list[str]:
        """The token strings (pieces) of ``text``, without [CLS]/[SEP]."""
        check_text(text, "text")
        out: list[str] = []
        for _, part, special_id in self._split_specials(text):
            out.extend([part] if special_id is not None else self._backend.pieces(part))
        return out

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        add_special_tokens: bool = True,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> list[int]:
        """The input ids of one text (or text pair); other keywords as for calling the tokenizer."""
        enc = self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            truncation=truncation,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
            _stacklevel=3,
            **kwargs,
        )
        return enc["input_ids"]

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[Sequence[str]],
        text_pair: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        _stacklevel: int = 2,
        **unknown: Any,
    ) -> BatchEncoding:
        """Tokenize one text / text pair, or a batch of them, into model inputs (transformers' arguments).

        A single string gives unbatched lists; a list gives lists of lists; ``return_tensors="pt"`` or
        ``"np"`` gives ``(rows, length)`` int64 arrays (a single string becomes a batch of one).
        ``max_length`` without ``truncation`` (and without padding) truncates, as in transformers.
        ``return_overflowing_tokens=True`` returns every window of a truncated text (neighbours share
        ``stride`` tokens) as rows of their own, with ``overflow_to_sample_mapping`` naming the input
        of each row. ``is_split_into_words=True`` takes lists of words; ``word_ids()`` then gives each
        token the index of its word. Text with a lone surrogate raises
        :class:`~fastdeberta.tokenizer.UnencodableTextError` before anything is encoded.
        """
        if unknown:
            raise InputTypeError(unknown_keywords_message(unknown, "tokenizer call", self.__call__))
        plan = plan_call(self, dict(locals()))
        examples, batched = split_examples(text, text_pair, plan.split_into_words)
        rows = encode_rows(self, examples, plan, return_offsets_mapping)

        def rows_with_offsets() -> list:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return encode_rows(self, examples, plan, with_offsets=True)

        return build_output(rows, plan, batched, None if return_offsets_mapping else rows_with_offsets)

    def pad(
        self,
        encoded_inputs: Any,
        padding: bool | str = True,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Pad encodings made earlier (one dict, a dict of lists, or a list of dicts), as transformers'
        ``tokenizer.pad`` does; what ``DataCollatorWithPadding`` and ``DataCollatorForLanguageModeling``
        call. Tensors in give tensors out unless ``return_tensors`` says otherwise."""
        return pad_inputs(
            encoded_inputs,
            pad_token_id=self.pad_token_id if self.pad_token_id is not None else 0,
            main_input=self.model_input_names[0],
            default_attention_mask="attention_mask" in self.model_input_names,
            default_max_length=self.model_max_length,
            default_side=self.padding_side,
            padding=padding,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_attention_mask=return_attention_mask,
            return_tensors=return_tensors,
        )

    # -- decoding ----------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``. Special/added tokens are written as their strings (space separated) unless skipped."""
        ids = as_ids(ids, "ids")
        specials = set(self.all_special_ids)
        if isinstance(self._backend, HFBackend):
            size = self.vocab_size
            bad = [i for i in ids if not 0 <= i < size]
            if bad:
                raise TokenIdError(f"token id {bad[0]} is out of range for a vocabulary of {size}")
            return self._backend.tok.decode(ids, skip_special_tokens=skip_special_tokens)
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            if i in specials or i in self._id_to_added:
                if run:
                    parts.append(self._backend.decode(run))
                    run = []
                if not (skip_special_tokens and i in specials):
                    parts.append(self._id_to_token(i))
            else:
                if i < 0 or i >= self._backend.size:
                    raise TokenIdError(f"token id {i} is out of range for a vocabulary of {self.vocab_size}")
                run.append(i)
        if run:
            parts.append(self._backend.decode(run))
        return " ".join(p for p in parts if p)

    def batch_decode(
        self, sequences: Iterable[Iterable[int]], skip_special_tokens: bool = False
    ) -> list[str]:
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Iterable):
            raise InputTypeError(f"sequences must be a list of id lists, got {type(sequences).__name__}")
        return [self.decode(s, skip_special_tokens=skip_special_tokens) for s in sequences]

    # -- saving ------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | os.PathLike) -> list[Path]:
        """Write the vocabulary files, ``tokenizer_config.json`` and ``special_tokens_map.json``
        (each file written whole to a temporary name, then renamed into place)."""
        return save_folder(self, Path(folder))

