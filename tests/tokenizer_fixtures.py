"""Test data for the tokenizer tests: multilingual text from the system's gettext catalogs,
small SentencePiece / byte-level BPE models trained on it, and hand-written edge cases."""

from __future__ import annotations

import collections
import functools
import gettext
import glob
import io
import json
import os
import random
from pathlib import Path

LOCALE_GLOB = "/usr/share/locale/*/LC_MESSAGES/*.mo"

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]

EDGE_CASES = [
    "",
    " ",
    "   ",
    "\t\n",
    "Hello world",
    "  leading and trailing spaces  ",
    "multiple   spaces\tand\ttabs\nand\nnewlines\r\n",
    "non\u00a0breaking\u00a0space",
    "\u00a0leading nbsp",
    "zero\u200dwidth\u200cjoiners",
    "\u200c",
    "ＡＢＣ１２３ full-width ｶﾀｶﾅ",
    "cafe\u0301 vs café",
    "e\u0301",
    "emoji 😀 👍🏽 👩‍👩‍👧‍👦 🏳️‍🌈 ❤️",
    "👨🏿‍💻",
    "中文测试，日本語のテキスト、한국어 텍스트",
    "مرحبا بالعالم",
    "שלום עולם",
    "ภาษาไทยไม่มีช่องว่าง",
    "हिन्दी देवनागरी",
    "Ελληνικά ΣΊΣΥΦΟΣ",
    "İstanbul ǅ ß ẞ",
    "mixed עברית and English (with) [brackets] {braces}",
    "The [MASK] sat on the mat.",
    "[MASK]",
    "two [MASK][MASK] masks and [MASK]! end",
    "no-break\u202fnarrow\u2009thin\u3000ideographic",
    "control\x01char\x7f and soft\u00adhyphen",
    "\ufeffbom at start",
    "A" * 300,
    "punctuation!!! ??? ... --- ''' \"quoted\"",
    "numbers 3.14159 1,000,000 0x1F",
]


@functools.lru_cache(maxsize=1)
def gettext_strings(per_file: int = 250, files_per_locale: int = 2) -> tuple[str, ...]:
    """Translated strings (msgstr) from the gettext catalogs of every locale, deterministic order."""
    by_locale: dict[str, list[str]] = collections.defaultdict(list)
    for path in sorted(glob.glob(LOCALE_GLOB)):
        by_locale[path.split("/")[-3]].append(path)
    seen: set[str] = set()
    out: list[str] = []
    for locale in sorted(by_locale):
        # the largest catalogs of each locale hold the most text
        for path in sorted(by_locale[locale], key=lambda p: (-os.path.getsize(p), p))[:files_per_locale]:
            try:
                with open(path, "rb") as fh:
                    catalog = gettext.GNUTranslations(fh)._catalog
            except Exception:  # broken or non-UTF-8 catalogs are skipped
                continue
            values = sorted(v for k, v in catalog.items() if k and isinstance(v, str) and v.strip())
            random.Random(f"{locale}/{path}").shuffle(values)
            for v in values[:per_file]:
                if v not in seen:
                    seen.add(v)
                    out.append(v)
    random.Random(0).shuffle(out)
    return tuple(out)


def split_corpus(strings: tuple[str, ...], test_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    cut = int(len(strings) * (1 - test_fraction))
    return list(strings[:cut]), list(strings[cut:])


def train_spm(folder: Path, sentences: list[str], **overrides) -> Path:
    """Train a small SentencePiece model with DeBERTa-v3's special pieces; returns the spm.model path."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    options = dict(
        vocab_size=6000,
        model_type="unigram",
        character_coverage=0.9995,
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece="[PAD]",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        unk_piece="[UNK]",
        num_threads=2,
        minloglevel=2,
        input_sentence_size=40000,
        shuffle_input_sentence=False,
    )
    options.update(overrides)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, **options)
    path = folder / "spm.model"
    path.write_bytes(model.getvalue())
    return path


def train_bytelevel_bpe(folder: Path, sentences: list[str], vocab_size: int = 3000) -> tuple[Path, Path]:
    """Train a GPT-2 style byte-level BPE; vocab.json gets [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 and [MASK] last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sentences, trainer=trainer)
    tok.model.save(str(folder))
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    assert [vocab[t] for t in SPECIALS] == [0, 1, 2, 3]
    vocab["[MASK]"] = len(vocab)
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return vocab_path, merges_path


# ----------------------------------------------------------------------------------------------------
# models shared by the tokenizer test modules: trained once per test process


@functools.cache
def _models_root() -> Path:
    import atexit
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="fastdeberta-tokenizer-tests-"))
    atexit.register(shutil.rmtree, root, True)
    return root


@functools.cache
def shared_model_dir(kind: str) -> Path:
    """A model folder trained on the gettext corpus's training split, once per process.

    ``"unigram"``: SentencePiece unigram (DeBERTa-v3 style); ``"bytefallback"``: SentencePiece BPE with
    byte fallback, no normalisation, whitespace kept; ``"bpe"``: GPT-2 byte-level BPE (DeBERTa v1).
    """
    train = split_corpus(gettext_strings())[0]
    folder = _models_root() / kind
    if kind == "unigram":
        train_spm(folder, train, input_sentence_size=20000)
    elif kind == "bytefallback":
        train_spm(
            folder,
            train,
            model_type="bpe",
            vocab_size=4000,
            byte_fallback=True,
            character_coverage=0.98,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
        )
    elif kind == "bpe":
        train_bytelevel_bpe(folder, train)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    return folder


def plain_ascii(strings: tuple[str, ...] | list[str], limit: int = 300) -> list[str]:
    """Printable ASCII sentences without runs of spaces or brackets: the text on which transformers 5's
    DeBERTa-v2 tokenizer (a `tokenizers` rebuild without SentencePiece's normaliser) agrees with it."""
    out = [
        s
        for s in strings
        if s.isascii() and s.isprintable() and "  " not in s and s == s.strip() and "[" not in s and len(s) > 3
    ]
    return out[:limit]
