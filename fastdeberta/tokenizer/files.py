"""Reading a tokenizer from a model folder and writing one back (transformers' file layout).

Files looked for, in order: ``spm.model`` (SentencePiece); ``vocab.json`` + ``merges.txt`` (byte-level
BPE); ``bpe_encoder.bin`` (the original DeBERTa v1 file); ``tokenizer.json``. Settings come from
``tokenizer_config.json`` and ``special_tokens_map.json``; only those fixed names are opened, never a
path named inside a file, so nothing outside the folder is read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..io import atomic_write_bytes, atomic_write_text
from .bpe import HFBackend
from .inputs import SIDES
from .spm import SpmBackend

if TYPE_CHECKING:
    from .core import Tokenizer

SPECIAL_NAMES = ("pad", "cls", "sep", "unk", "mask")
# transformers writes int(1e30) when a checkpoint declares no limit; treat anything that large as unset.
_UNSET_MAX_LENGTH_THRESHOLD = 10**12


def load_folder(cls: type[Tokenizer], folder: Path, model_max_length: int | None) -> Tokenizer:
    """The tokenizer stored in ``folder`` (see the module doc for the files and their order)."""
    config = _read_json(folder / "tokenizer_config.json")
    special_map = _read_json(folder / "special_tokens_map.json")
    specials: dict[str, str] = {}
    for name in SPECIAL_NAMES:
        value = special_content(config.get(f"{name}_token")) or special_content(special_map.get(f"{name}_token"))
        if value:
            specials[name] = value
    if model_max_length is None:
        configured = config.get("model_max_length")
        if isinstance(configured, (int, float)) and 0 < configured < _UNSET_MAX_LENGTH_THRESHOLD:
            model_max_length = int(configured)
    common = dict(model_max_length=model_max_length, special_tokens=specials)

    if (folder / "spm.model").is_file():
        tok = cls.from_spm(
            folder / "spm.model",
            do_lower_case=bool(config.get("do_lower_case", False)),
            split_by_punct=bool(config.get("split_by_punct", False)),
            added_tokens=_added_tokens(folder, config),
            **common,
        )
    elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        tok = cls.from_bpe(
            folder / "vocab.json",
            folder / "merges.txt",
            add_prefix_space=bool(config.get("add_prefix_space", False)),
            mask_lstrip=_mask_lstrip(config, specials),
            **common,
        )
    elif (folder / "bpe_encoder.bin").is_file():
        tok = cls.from_bpe_encoder(folder / "bpe_encoder.bin", mask_lstrip=_mask_lstrip(config, specials), **common)
    elif (folder / "tokenizer.json").is_file():
        tok = cls(
            HFBackend.from_tokenizer_json(folder / "tokenizer.json"),
            tokenizer_class=config.get("tokenizer_class"),
            **common,
        )
    else:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise FileNotFoundError(
            f"No tokenizer files in {folder}. Looked for (in order): spm.model; vocab.json + merges.txt; "
            f"bpe_encoder.bin; tokenizer.json. The folder contains: {present or 'nothing'}."
        )
    _apply_call_settings(tok, config, folder / "tokenizer_config.json")
    return tok


def save_folder(tok: Tokenizer, folder: Path) -> list[Path]:
    """Write the vocabulary files, ``tokenizer_config.json`` and ``special_tokens_map.json`` (each atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    backend = tok._backend
    config: dict[str, Any] = {}
    if isinstance(backend, SpmBackend):
        written.append(atomic_write_bytes(folder / "spm.model", backend.model_proto))
        config.update(
            tokenizer_class="DebertaV2Tokenizer",
            do_lower_case=backend.do_lower_case,
            split_by_punct=backend.split_by_punct,
            vocab_type="spm",
        )
        if tok._added:
            text = json.dumps(tok._added, ensure_ascii=False, indent=2) + "\n"
            written.append(atomic_write_text(folder / "added_tokens.json", text))
    elif backend.kind == "bpe":
        for name, data in backend.files.items():
            written.append(atomic_write_bytes(folder / name, data))
        config.update(tokenizer_class="DebertaTokenizer", add_prefix_space=backend.add_prefix_space, vocab_type="gpt2")
    else:
        written.append(atomic_write_text(folder / "tokenizer.json", backend.tok.to_str()))
        config.update(tokenizer_class=tok._tokenizer_class or "PreTrainedTokenizerFast")
    config["model_max_length"] = tok.model_max_length
    if tok.padding_side != "right":
        config["padding_side"] = tok.padding_side
    if tok.truncation_side != "right":
        config["truncation_side"] = tok.truncation_side
    for name in SPECIAL_NAMES:
        config[f"{name}_token"] = tok._special_tokens[name]
    config["bos_token"] = tok.cls_token
    config["eos_token"] = tok.sep_token
    decoder = {}
    for name in SPECIAL_NAMES:
        idx = tok._special_ids[name]
        if idx is not None:
            decoder[str(idx)] = {
                "content": tok._special_tokens[name],
                "lstrip": name == "mask" and isinstance(backend, HFBackend) and backend.mask_lstrip,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
    config["added_tokens_decoder"] = dict(sorted(decoder.items(), key=lambda kv: int(kv[0])))
    special_map = {f"{n}_token": tok._special_tokens[n] for n in SPECIAL_NAMES}
    special_map.update(bos_token=tok.cls_token, eos_token=tok.sep_token)
    for name, data in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        written.append(atomic_write_text(folder / name, text))
    return written


def special_content(value: Any) -> str | None:
    """A special token in a config may be a plain string or an AddedToken-like dict."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"{path} is not valid UTF-8 JSON ({err}). Fix or delete the file.") from err
    return data if isinstance(data, dict) else {}


def _added_tokens(folder: Path, config: dict) -> dict[str, int]:
    """Token string -> id of the added tokens named in tokenizer_config.json and added_tokens.json."""
    added: dict[str, int] = {}
    decoder = config.get("added_tokens_decoder") or {}
    entries = [(idx, special_content(entry), "tokenizer_config.json: added_tokens_decoder") for idx, entry in decoder.items()]
    entries += [(idx, tok, "added_tokens.json") for tok, idx in _read_json(folder / "added_tokens.json").items()]
    for idx, content, where in entries:
        if not content:
            continue
        try:
            added[str(content)] = int(idx)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"{folder / where.split(':')[0]}: the id of added token {content!r} must be an integer, got "
                f"{idx!r:.40} (in {where})."
            ) from None
    return added


def _mask_lstrip(config: dict, specials: dict[str, str]) -> bool:
    """Whether [MASK] absorbs the space before it (a BPE tokenizer_config may say; transformers 4 did)."""
    for entry in (config.get("added_tokens_decoder") or {}).values():
        if isinstance(entry, dict) and entry.get("content") == specials.get("mask", "[MASK]"):
            return bool(entry.get("lstrip", True))
    return True


def _apply_call_settings(tok: Tokenizer, config: dict, path: Path) -> None:
    """padding_side, truncation_side and model_input_names from tokenizer_config.json (as transformers reads them)."""
    for field in ("padding_side", "truncation_side"):
        value = config.get(field)
        if value is None:
            continue
        if value not in SIDES:
            raise InvalidInputError(f"{path}: {field} must be 'right' or 'left', got {value!r:.40}")
        setattr(tok, field, value)
    names = config.get("model_input_names")
    if names is not None:
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InvalidInputError(f"{path}: model_input_names must be a non-empty list of str, got {names!r:.60}")
        tok.model_input_names = list(names)
