"""Special tokens: which string and id each of [PAD] [CLS] [SEP] [UNK] [MASK] has for a backend, and
the pattern that finds them (and added tokens) written inside a text."""

from __future__ import annotations

import re

from .bpe import HFBackend
from .files import SPECIAL_NAMES
from .spm import SpmBackend

DEFAULT_SPECIALS = {"pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]", "unk": "[UNK]", "mask": "[MASK]"}


def resolve_specials(
    backend: SpmBackend | HFBackend, names: dict[str, str], added: dict[str, int]
) -> tuple[dict[str, str], dict[str, int | None], dict[str, int]]:
    """(name -> token string, name -> id, added token string -> id) for ``backend``.

    SentencePiece: a special token is a piece of the model, else an added token, else the model's own
    pad/bos/eos/unk piece; a [MASK] found nowhere gets the first id after the vocabulary (as DeBERTa-v3's
    does). Byte-level BPE: the tokens are added to the ``tokenizers`` model (they keep their vocab ids).
    """
    if isinstance(backend, SpmBackend):
        return _spm_specials(backend, names, added)
    return _hf_specials(backend, names)


def _spm_specials(b: SpmBackend, names: dict[str, str], added: dict[str, int]):
    tokens: dict[str, str] = {}
    ids: dict[str, int | None] = {}
    extra = {tok: int(idx) for tok, idx in added.items() if not (0 <= idx < b.size and b.piece(idx) == tok)}
    fallback = {"pad": b.sp.pad_id(), "cls": b.sp.bos_id(), "sep": b.sp.eos_id(), "unk": b.sp.unk_id()}
    for name in SPECIAL_NAMES:
        token = names[name]
        idx = b.lookup(token)
        if idx is None:
            idx = extra.get(token)
        if idx is None and name in fallback and fallback[name] >= 0:
            idx = fallback[name]
            token = b.piece(idx)
        if idx is None and name == "mask":
            idx = max([b.size - 1, *extra.values()]) + 1
            extra[token] = idx
        tokens[name], ids[name] = token, idx
    return tokens, ids, extra


def _hf_specials(b: HFBackend, names: dict[str, str]):
    from tokenizers import AddedToken

    to_add = []
    for name in SPECIAL_NAMES:
        # DeBERTa v1's mask token swallows the space in front of it (transformers 4.x behaviour)
        lstrip = name == "mask" and b.mask_lstrip
        to_add.append(AddedToken(names[name], lstrip=lstrip, rstrip=False, normalized=False, special=True))
    b.tok.add_special_tokens(to_add)
    tokens = {name: names[name] for name in SPECIAL_NAMES}
    return tokens, {name: b.lookup(tokens[name]) for name in SPECIAL_NAMES}, {}


def literal_pattern(
    backend: SpmBackend | HFBackend,
    tokens: dict[str, str],
    ids: dict[str, int | None],
    added: dict[str, int],
) -> re.Pattern | None:
    """A regex matching special / added token strings in text, longest first (SentencePiece only: the
    ``tokenizers`` library splits added tokens itself)."""
    if not isinstance(backend, SpmBackend):
        return None
    literal = {t for name, t in tokens.items() if ids[name] is not None}
    literal.update(added)
    literal.discard("")
    if not literal:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(literal, key=len, reverse=True)))
