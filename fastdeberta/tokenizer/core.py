"""The public :class:`Tokenizer`: loads a backend from a model folder and lays out model inputs."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .bpe import HFBackend
from .encoding import (
    _PADDING_CHOICES,
    _TRUNCATION_CHOICES,
    BatchEncoding,
    _to_tensor,
    _truncation_lengths,
)
from .spm import SpmBackend

DEFAULT_MODEL_MAX_LENGTH = 512
# transformers writes int(1e30) when a checkpoint declares no limit; treat anything that large as unset.
_UNSET_MAX_LENGTH_THRESHOLD = 10**12

_SPECIAL_NAMES = ("pad", "cls", "sep", "unk", "mask")
_DEFAULT_SPECIALS = {"pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"}


def _special_content(value: Any) -> str | None:
    """A special token in a config may be a plain string or an AddedToken-like dict."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return data if isinstance(data, dict) else {}



class Tokenizer:
    """DeBERTa tokenizer with exact SentencePiece / byte-level BPE ids.

    Build one with :meth:`from_pretrained` (a model folder or Hub repo id), :meth:`from_spm`,
    :meth:`from_bpe` or :meth:`from_bpe_encoder`; call it like a transformers tokenizer.
    """

    def __init__(
        self,
        backend: SpmBackend | HFBackend,
        *,
        model_max_length: int | None = None,
        special_tokens: dict[str, str] | None = None,
        added_tokens: dict[str, int] | None = None,
        tokenizer_class: str | None = None,
    ):
        self._backend = backend
        self.model_max_length = int(model_max_length) if model_max_length else DEFAULT_MODEL_MAX_LENGTH
        self._tokenizer_class = tokenizer_class
        names = dict(_DEFAULT_SPECIALS)
        names.update({k: v for k, v in (special_tokens or {}).items() if v})
        self._special_tokens: dict[str, str] = {}
        self._special_ids: dict[str, int | None] = {}
        # token string -> id for tokens outside the base vocabulary (SentencePiece backend only)
        self._added: dict[str, int] = {}
        if isinstance(backend, SpmBackend):
            self._setup_spm(names, added_tokens or {})
        else:
            self._setup_hf(names)
        self._id_to_added = {i: t for t, i in self._added.items()}
        self._split_re = self._build_split_regex()

    # -- construction ------------------------------------------------------------------------------

    def _setup_spm(self, names: dict[str, str], added: dict[str, int]) -> None:
        b: SpmBackend = self._backend  # type: ignore[assignment]
        fallback = {"pad": b.sp.pad_id(), "cls": b.sp.bos_id(), "sep": b.sp.eos_id(), "unk": b.sp.unk_id()}
        for tok, idx in added.items():
            if not (0 <= idx < b.size and b.piece(idx) == tok):
                self._added[tok] = int(idx)
        for name in _SPECIAL_NAMES:
            token = names[name]
            idx = b.lookup(token)
            if idx is None:
                idx = self._added.get(token)
            if idx is None and name in fallback and fallback[name] >= 0:
                idx = fallback[name]
                token = b.piece(idx)
            if idx is None and name == "mask":
                idx = max([b.size - 1, *self._added.values()]) + 1
                self._added[token] = idx
            self._special_tokens[name] = token
            self._special_ids[name] = idx

    def _setup_hf(self, names: dict[str, str]) -> None:
        from tokenizers import AddedToken

        b: HFBackend = self._backend  # type: ignore[assignment]
        to_add = []
        for name in _SPECIAL_NAMES:
            token = names[name]
            # DeBERTa v1's mask token swallows the space in front of it (transformers 4.x behaviour)
            lstrip = name == "mask" and b.mask_lstrip
            to_add.append(AddedToken(token, lstrip=lstrip, rstrip=False, normalized=False, special=True))
            self._special_tokens[name] = token
        b.tok.add_special_tokens(to_add)
        for name in _SPECIAL_NAMES:
            self._special_ids[name] = b.lookup(self._special_tokens[name])

    def _build_split_regex(self) -> re.Pattern | None:
        if not isinstance(self._backend, SpmBackend):
            return None  # the tokenizers library splits added tokens itself
        literal = {t for n, t in self._special_tokens.items() if self._special_ids[n] is not None}
        literal.update(self._added)
        literal.discard("")
        if not literal:
            return None
        return re.compile("|".join(re.escape(t) for t in sorted(literal, key=len, reverse=True)))

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
        backend = SpmBackend(
            Path(path).read_bytes(), do_lower_case=do_lower_case, split_by_punct=split_by_punct
        )
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
        """Load the tokenizer of a model folder or Hub repo id (files picked as described in the module doc)."""
        from fastdeberta.hub import resolve_model_dir

        folder = Path(
            resolve_model_dir(
                name_or_path,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
            )
        )
        config = _read_json(folder / "tokenizer_config.json")
        special_map = _read_json(folder / "special_tokens_map.json")
        specials: dict[str, str] = {}
        for name in _SPECIAL_NAMES:
            value = _special_content(config.get(f"{name}_token")) or _special_content(
                special_map.get(f"{name}_token")
            )
            if value:
                specials[name] = value
        if model_max_length is None:
            configured = config.get("model_max_length")
            if isinstance(configured, (int, float)) and 0 < configured < _UNSET_MAX_LENGTH_THRESHOLD:
                model_max_length = int(configured)

        if (folder / "spm.model").is_file():
            added: dict[str, int] = {}
            for idx, entry in (config.get("added_tokens_decoder") or {}).items():
                content = _special_content(entry)
                if content:
                    added[content] = int(idx)
            added.update({str(k): int(v) for k, v in _read_json(folder / "added_tokens.json").items()})
            return cls.from_spm(
                folder / "spm.model",
                do_lower_case=bool(config.get("do_lower_case", False)),
                split_by_punct=bool(config.get("split_by_punct", False)),
                model_max_length=model_max_length,
                special_tokens=specials,
                added_tokens=added,
            )
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return cls.from_bpe(
                folder / "vocab.json",
                folder / "merges.txt",
                add_prefix_space=bool(config.get("add_prefix_space", False)),
                mask_lstrip=_mask_lstrip(config, specials),
                model_max_length=model_max_length,
                special_tokens=specials,
            )
        if (folder / "bpe_encoder.bin").is_file():
            return cls.from_bpe_encoder(
                folder / "bpe_encoder.bin",
                mask_lstrip=_mask_lstrip(config, specials),
                model_max_length=model_max_length,
                special_tokens=specials,
            )
        if (folder / "tokenizer.json").is_file():
            return cls(
                HFBackend.from_tokenizer_json(folder / "tokenizer.json"),
                model_max_length=model_max_length,
                special_tokens=specials,
                tokenizer_class=config.get("tokenizer_class"),
            )
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise FileNotFoundError(
            f"No tokenizer files in {folder}. Looked for (in order): spm.model; vocab.json + merges.txt; "
            f"bpe_encoder.bin; tokenizer.json. The folder contains: {present or 'nothing'}."
        )

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
        return [self._special_tokens[n] for n in _SPECIAL_NAMES if self._special_ids[n] is not None]

    @property
    def all_special_ids(self) -> list[int]:
        return [self._special_ids[n] for n in _SPECIAL_NAMES if self._special_ids[n] is not None]

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

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Ids of token strings; unknown strings map to the unknown token's id."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def _token_to_id(self, token: str) -> int:
        if token in self._added:
            return self._added[token]
        idx = self._backend.lookup(token)
        return self.unk_token_id if idx is None else idx

    def convert_ids_to_tokens(self, ids: int | Iterable[int]) -> str | list[str]:
        """Token strings (SentencePiece pieces / byte-level BPE tokens) of ids."""
        if isinstance(ids, int) or (hasattr(ids, "ndim") and ids.ndim == 0):
            return self._id_to_token(int(ids))
        return [self._id_to_token(int(i)) for i in _as_list(ids)]

    def _id_to_token(self, idx: int) -> str:
        if idx in self._id_to_added:
            return self._id_to_added[idx]
        if idx < 0 or (isinstance(self._backend, SpmBackend) and idx >= self._backend.size):
            raise IndexError(f"token id {idx} is out of range for a vocabulary of {self.vocab_size}")
        token = self._backend.piece(idx)
        if token is None:
            raise IndexError(f"token id {idx} is out of range for a vocabulary of {self.vocab_size}")
        return token

    # -- encoding ----------------------------------------------------------------------------------

    def _encode_text(self, text: str, with_offsets: bool) -> tuple[list[int], list[tuple[int, int]] | None]:
        """Ids (no [CLS]/[SEP] added) and offsets of one text; literal special tokens map to their ids."""
        if self._split_re is None:
            return self._backend.encode(text, with_offsets)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        pos = 0
        lookup = {t: self._special_ids[n] for n, t in self._special_tokens.items()}
        lookup.update(self._added)
        for match in self._split_re.finditer(text):
            if match.start() > pos:
                seg_ids, seg_offs = self._backend.encode(text[pos : match.start()], with_offsets)
                ids.extend(seg_ids)
                if with_offsets:
                    offsets.extend((s + pos, e + pos) for s, e in seg_offs)
            ids.append(lookup[match.group()])
            offsets.append((match.start(), match.end()))
            pos = match.end()
        if pos < len(text):
            seg_ids, seg_offs = self._backend.encode(text[pos:], with_offsets)
            ids.extend(seg_ids)
            if with_offsets:
                offsets.extend((s + pos, e + pos) for s, e in seg_offs)
        return ids, (offsets if with_offsets else None)

    def tokenize(self, text: str) -> list[str]:
        """The token strings (pieces) of ``text``, without [CLS]/[SEP]."""
        _check_text(text, "text")
        if self._split_re is None:
            return self._backend.pieces(text)
        out: list[str] = []
        pos = 0
        for match in self._split_re.finditer(text):
            if match.start() > pos:
                out.extend(self._backend.pieces(text[pos : match.start()]))
            out.append(match.group())
            pos = match.end()
        if pos < len(text):
            out.extend(self._backend.pieces(text[pos:]))
        return out

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        add_special_tokens: bool = True,
        truncation: bool | str = False,
        max_length: int | None = None,
    ) -> list[int]:
        """The input ids of one text (or text pair)."""
        enc = self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            truncation=truncation,
            max_length=max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
            _stacklevel=3,
        )
        return enc["input_ids"]

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    def build_inputs_with_special_tokens(
        self, ids: list[int], pair_ids: list[int] | None = None
    ) -> list[int]:
        if pair_ids is None:
            return [self.cls_token_id, *ids, self.sep_token_id]
        return [self.cls_token_id, *ids, self.sep_token_id, *pair_ids, self.sep_token_id]

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_offsets_mapping: bool = False,
        return_attention_mask: bool = True,
        return_token_type_ids: bool = True,
        pad_to_multiple_of: int | None = None,
        _stacklevel: int = 2,
    ) -> BatchEncoding:
        """Tokenize one text / text pair, or a batch of them, into model inputs.

        A single string gives unbatched lists; a list gives lists of lists; ``return_tensors="pt"`` or
        ``"np"`` gives ``(batch, length)`` int64 arrays (a single string becomes a batch of one).
        """
        if padding not in _PADDING_CHOICES:
            raise ValueError(f"padding must be one of {list(_PADDING_CHOICES)}, got {padding!r}")
        if truncation not in _TRUNCATION_CHOICES:
            raise ValueError(f"truncation must be one of {list(_TRUNCATION_CHOICES)}, got {truncation!r}")
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if pad_to_multiple_of is not None and (
            not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1
        ):
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        pad_mode = _PADDING_CHOICES[padding]
        trunc_mode = _TRUNCATION_CHOICES[truncation]

        batched = not isinstance(text, str)
        texts = _check_batch(text, "text")
        pairs: list[str] | None = None
        if text_pair is not None:
            if batched != (not isinstance(text_pair, str)):
                raise TypeError(
                    "text and text_pair must both be a str or both be a list of str, got "
                    f"{type(text).__name__} and {type(text_pair).__name__}"
                )
            pairs = _check_batch(text_pair, "text_pair")
            if len(pairs) != len(texts):
                raise ValueError(f"text has {len(texts)} items but text_pair has {len(pairs)}")

        limit = max_length if max_length is not None else self.model_max_length
        n_special = (3 if pairs is not None else 2) if add_special_tokens else 0
        if trunc_mode is not None and limit < n_special:
            raise ValueError(
                f"max_length={limit} is too small: {n_special} special tokens have to fit in every sequence"
            )

        rows: list[dict[str, list]] = []
        too_long = 0
        for i, first in enumerate(texts):
            ids_a, offs_a = self._encode_text(first, return_offsets_mapping)
            ids_b, offs_b = (
                self._encode_text(pairs[i], return_offsets_mapping) if pairs is not None else (None, None)
            )
            total = len(ids_a) + (len(ids_b) if ids_b is not None else 0) + n_special
            if trunc_mode is not None and total > limit:
                keep_a, keep_b = _truncation_lengths(
                    len(ids_a), None if ids_b is None else len(ids_b), total - limit, trunc_mode, limit, i
                )
                ids_a, offs_a = ids_a[:keep_a], offs_a[:keep_a] if offs_a is not None else None
                if ids_b is not None:
                    ids_b, offs_b = ids_b[:keep_b], offs_b[:keep_b] if offs_b is not None else None
            elif trunc_mode is None and total > limit:
                too_long = max(too_long, total)
            rows.append(self._assemble(ids_a, offs_a, ids_b, offs_b, add_special_tokens))
        if too_long:
            warnings.warn(
                f"Token sequence length {too_long} is longer than the maximum length {limit} for this model; "
                "it was not truncated and may fail in the model. Pass truncation=True to cut it to max_length.",
                UserWarning,
                stacklevel=_stacklevel,
            )

        if pad_mode is not None:
            if pad_mode == "max_length":
                target = limit
            else:
                target = max((len(r["input_ids"]) for r in rows), default=0)
            if pad_to_multiple_of:
                target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
            pad_id = self.pad_token_id if self.pad_token_id is not None else 0
            for r in rows:
                missing = target - len(r["input_ids"])
                if missing > 0:
                    r["input_ids"] += [pad_id] * missing
                    r["attention_mask"] += [0] * missing
                    r["token_type_ids"] += [0] * missing
                    if "offset_mapping" in r:
                        r["offset_mapping"] += [(0, 0)] * missing

        keys = ["input_ids"]
        if return_token_type_ids:
            keys.append("token_type_ids")
        if return_attention_mask:
            keys.append("attention_mask")
        if return_offsets_mapping:
            keys.append("offset_mapping")
        out = {k: [r[k] for r in rows] for k in keys}

        if return_tensors is not None:
            lengths = {len(r["input_ids"]) for r in rows}
            if len(lengths) > 1:
                raise ValueError(
                    f"Cannot make {return_tensors!r} tensors from sequences of different lengths "
                    f"({min(lengths)} to {max(lengths)} tokens). Pass padding=True (or padding='max_length') "
                    "so that every row has the same length, and truncation=True if needed."
                )
            out = {k: _to_tensor(v, return_tensors, k == "offset_mapping") for k, v in out.items()}
        elif not batched:
            out = {k: v[0] for k, v in out.items()}
        return BatchEncoding(out)

    def _assemble(self, ids_a, offs_a, ids_b, offs_b, add_special_tokens: bool) -> dict[str, list]:
        zero = (0, 0)
        if add_special_tokens:
            cls_id, sep_id = self.cls_token_id, self.sep_token_id
            if cls_id is None or sep_id is None:
                raise ValueError("This tokenizer has no [CLS]/[SEP] token; pass add_special_tokens=False.")
            ids = [cls_id, *ids_a, sep_id]
            types = [0] * len(ids)
            offs = [zero, *offs_a, zero] if offs_a is not None else None
            if ids_b is not None:
                ids += [*ids_b, sep_id]
                types += [1] * (len(ids_b) + 1)
                if offs is not None:
                    offs += [*offs_b, zero]
        else:
            ids = list(ids_a)
            types = [0] * len(ids)
            offs = list(offs_a) if offs_a is not None else None
            if ids_b is not None:
                ids += ids_b
                types += [1] * len(ids_b)
                if offs is not None:
                    offs += offs_b
        row = {"input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids)}
        if offs is not None:
            row["offset_mapping"] = offs
        return row

    # -- decoding ----------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``. Special/added tokens are written as their strings (space separated) unless skipped."""
        ids = [int(i) for i in _as_list(ids)]
        specials = set(self.all_special_ids)
        if isinstance(self._backend, HFBackend):
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
                    raise IndexError(f"token id {i} is out of range for a vocabulary of {self.vocab_size}")
                run.append(i)
        if run:
            parts.append(self._backend.decode(run))
        return " ".join(p for p in parts if p)

    def batch_decode(
        self, sequences: Iterable[Iterable[int]], skip_special_tokens: bool = False
    ) -> list[str]:
        return [self.decode(s, skip_special_tokens=skip_special_tokens) for s in _as_list(sequences)]

    # -- saving ------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | os.PathLike) -> list[Path]:
        """Write the vocabulary files, ``tokenizer_config.json`` and ``special_tokens_map.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        b = self._backend
        config: dict[str, Any] = {}
        if isinstance(b, SpmBackend):
            (folder / "spm.model").write_bytes(b.model_proto)
            written.append(folder / "spm.model")
            config.update(
                tokenizer_class="DebertaV2Tokenizer",
                do_lower_case=b.do_lower_case,
                split_by_punct=b.split_by_punct,
                vocab_type="spm",
            )
            if self._added:
                path = folder / "added_tokens.json"
                path.write_text(
                    json.dumps(self._added, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
                )
                written.append(path)
        elif b.kind == "bpe":
            for name, data in b.files.items():
                (folder / name).write_bytes(data)
                written.append(folder / name)
            config.update(
                tokenizer_class="DebertaTokenizer", add_prefix_space=b.add_prefix_space, vocab_type="gpt2"
            )
        else:
            b.tok.save(str(folder / "tokenizer.json"))
            written.append(folder / "tokenizer.json")
            config.update(tokenizer_class=self._tokenizer_class or "PreTrainedTokenizerFast")
        config["model_max_length"] = self.model_max_length
        for name in _SPECIAL_NAMES:
            config[f"{name}_token"] = self._special_tokens[name]
        config["bos_token"] = self.cls_token
        config["eos_token"] = self.sep_token
        decoder = {}
        for name in _SPECIAL_NAMES:
            idx = self._special_ids[name]
            if idx is not None:
                decoder[str(idx)] = {
                    "content": self._special_tokens[name],
                    "lstrip": name == "mask" and isinstance(b, HFBackend) and b.mask_lstrip,
                    "normalized": False,
                    "rstrip": False,
                    "single_word": False,
                    "special": True,
                }
        config["added_tokens_decoder"] = dict(sorted(decoder.items(), key=lambda kv: int(kv[0])))
        for path, data in (
            (folder / "tokenizer_config.json", config),
            (
                folder / "special_tokens_map.json",
                {f"{n}_token": self._special_tokens[n] for n in _SPECIAL_NAMES}
                | {"bos_token": self.cls_token, "eos_token": self.sep_token},
            ),
        ):
            path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            written.append(path)
        return written


# ----------------------------------------------------------------------------------------------------
# module-level helpers


def _check_text(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")


def _check_batch(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if value is None or not isinstance(value, (list, tuple)):
        raise TypeError(f"{what} must be a str or a list of str, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"{what}[{i}] must be a str, got {type(item).__name__}")
    return list(value)



def _mask_lstrip(config: dict, specials: dict[str, str]) -> bool:
    """Whether [MASK] absorbs the space before it (a BPE tokenizer_config may say; transformers 4 did)."""
    for entry in (config.get("added_tokens_decoder") or {}).values():
        if isinstance(entry, dict) and entry.get("content") == specials.get("mask", "[MASK]"):
            return bool(entry.get("lstrip", True))
    return True


def _as_list(values: Any) -> list:
    if hasattr(values, "tolist"):
        return values.tolist()
    return list(values)

