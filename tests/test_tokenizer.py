"""Tests for fastdeberta.tokenizer against sentencepiece, tokenizers and transformers.

All vocabularies are trained here on translated strings from the machine's gettext catalogs
(/usr/share/locale/*/LC_MESSAGES/*.mo), with part of the strings held out for testing.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for a non-installed checkout

import tokenizer_fixtures as fx  # noqa: E402

from fastdeberta.tokenizer import BatchEncoding, Tokenizer  # noqa: E402

spm = pytest.importorskip("sentencepiece")
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

HAVE_LOCALES = len(fx.gettext_strings()) >= 1000
pytestmark = pytest.mark.skipif(not HAVE_LOCALES, reason="needs gettext catalogs in /usr/share/locale")


# ----------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def corpus():
    return fx.split_corpus(fx.gettext_strings())


@pytest.fixture(scope="session")
def test_strings(corpus):
    return corpus[1]


@pytest.fixture(scope="session")
def unigram_dir():
    return fx.shared_model_dir("unigram")


@pytest.fixture(scope="session")
def bytefallback_dir():
    """A 'hard' model: BPE with byte fallback, no normalisation, whitespace kept as is."""
    return fx.shared_model_dir("bytefallback")


@pytest.fixture(scope="session")
def bpe_dir():
    return fx.shared_model_dir("bpe")


@pytest.fixture(scope="session")
def tok(unigram_dir):
    return Tokenizer.from_pretrained(unigram_dir)


@pytest.fixture(scope="session")
def sp(unigram_dir):
    return spm.SentencePieceProcessor(model_file=str(unigram_dir / "spm.model"))


@pytest.fixture(scope="session")
def ascii_strings(test_strings):
    """Plain printable ASCII sentences (where transformers' fast DeBERTa-v2 tokenizer agrees with spm)."""
    out = [
        s
        for s in test_strings
        if s.isascii()
        and s.isprintable()
        and "  " not in s
        and s == s.strip()
        and "[" not in s
        and len(s) > 3
    ]
    assert len(out) >= 200
    return out[:300]


def spm_folder_with_config(tmp_path: Path, model_dir: Path, **config) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    (folder / "spm.model").write_bytes((model_dir / "spm.model").read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


# ----------------------------------------------------------------------------------------------------
# SentencePiece parity


def test_corpus_is_multilingual(corpus):
    train, test = corpus
    assert len(train) > 10_000 and len(test) > 2_000
    assert not set(train) & set(test)
    scripts = {unicodedata.name(ch, "?").split()[0] for s in test for ch in s if ch.isalpha()}
    assert {"LATIN", "CYRILLIC", "ARABIC", "HEBREW", "CJK", "DEVANAGARI", "THAI", "GREEK"} <= scripts


@pytest.mark.parametrize("model", ["unigram_dir", "bytefallback_dir"])
def test_ids_equal_sentencepiece(model, request, test_strings):
    folder = request.getfixturevalue(model)
    ref = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    tok = Tokenizer.from_pretrained(folder)
    texts = [s for s in list(test_strings) + fx.EDGE_CASES if "[MASK]" not in s]
    assert len(texts) > 2000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = tok(texts, add_special_tokens=False)["input_ids"]
        with_offsets = tok(texts, add_special_tokens=False, return_offsets_mapping=True)["input_ids"]
    expected = ref.encode(texts)
    mismatches = [t for t, a, b in zip(texts, batch, expected) if a != b]
    assert not mismatches, mismatches[:5]
    assert with_offsets == expected  # the offset-producing path gives the same ids
    for text in fx.EDGE_CASES[:20]:
        if "[MASK]" not in text:
            assert tok.encode(text, add_special_tokens=False) == ref.encode(text)
            assert tok.tokenize(text) == ref.encode(text, out_type=str)


def test_special_ids_and_mask(tok, sp):
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert (tok.pad_token, tok.cls_token, tok.sep_token, tok.unk_token) == (
        "[PAD]",
        "[CLS]",
        "[SEP]",
        "[UNK]",
    )
    assert tok.mask_token == "[MASK]"
    assert tok.mask_token_id == sp.get_piece_size()
    assert tok.vocab_size == len(tok) == sp.get_piece_size() + 1
    assert sorted(tok.all_special_ids) == [0, 1, 2, 3, sp.get_piece_size()]
    vocab = tok.get_vocab()
    assert vocab["[MASK]"] == tok.mask_token_id and vocab[sp.id_to_piece(100)] == 100
    assert len(vocab) == tok.vocab_size


def test_mask_written_in_text_maps_to_mask_id(tok, sp):
    m = tok.mask_token_id
    ids = tok.encode("The [MASK] sat on the mat.", add_special_tokens=False)
    assert ids == sp.encode("The ") + [m] + sp.encode(" sat on the mat.")
    assert tok.encode("[MASK]") == [1, m, 2]
    assert tok.encode("a[MASK][MASK]b", add_special_tokens=False) == sp.encode("a") + [m, m] + sp.encode("b")
    assert tok.tokenize("x [MASK]")[-1] == "[MASK]"
    enc = tok("go [MASK] now", return_offsets_mapping=True)
    pos = enc["input_ids"].index(m)
    assert enc["offset_mapping"][pos] == (3, 9)


def test_mask_id_from_added_tokens_json_and_config(tmp_path, unigram_dir, sp):
    folder = spm_folder_with_config(tmp_path, unigram_dir)
    (folder / "added_tokens.json").write_text(json.dumps({"[MASK]": 7000}))
    tok = Tokenizer.from_pretrained(folder)
    assert tok.mask_token_id == 7000 and tok.vocab_size == 7001
    assert tok.encode("[MASK]", add_special_tokens=False) == [7000]
    assert tok.convert_ids_to_tokens(7000) == "[MASK]"

    folder2 = tmp_path / "m2"
    folder2.mkdir()
    (folder2 / "spm.model").write_bytes((unigram_dir / "spm.model").read_bytes())
    decoder = {"0": {"content": "[PAD]", "special": True}, "6100": {"content": "[MASK]", "special": True}}
    (folder2 / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder}))
    assert Tokenizer.from_pretrained(folder2).mask_token_id == 6100


def test_mask_inside_spm_model(tmp_path, corpus):
    path = fx.train_spm(
        tmp_path, corpus[0][:3000], vocab_size=1500, user_defined_symbols=["[MASK]"], character_coverage=0.98
    )
    ref = spm.SentencePieceProcessor(model_file=str(path))
    tok = Tokenizer.from_spm(path)
    assert tok.mask_token_id == ref.piece_to_id("[MASK]") < ref.get_piece_size()
    assert tok.vocab_size == ref.get_piece_size()


def test_transformers_fast_v2_differs_but_we_match_sentencepiece(unigram_dir, tok, sp):
    """transformers 5's DebertaV2Tokenizer rebuilds the model in `tokenizers` without spm's normaliser;
    it turns NBSP, ZWNJ and full-width forms into [UNK]. We follow sentencepiece."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.DebertaV2Tokenizer.from_pretrained(str(unigram_dir))
    differs = 0
    for text in ["non\u00a0breaking space", "zero\u200cwidth", "ＡＢＣ１２３"]:
        ours = tok.encode(text, add_special_tokens=False)
        assert ours == sp.encode(text)
        theirs = hf(text, add_special_tokens=False)["input_ids"]
        differs += theirs != ours
        assert tok.unk_token_id not in ours
    assert differs >= 1


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding=True, truncation=True, max_length=24),
        dict(padding="max_length", truncation="longest_first", max_length=40),
        dict(padding=True, truncation="only_second", max_length=64),
        dict(padding="longest", pad_to_multiple_of=8),
    ],
)
def test_pairs_equal_transformers_debertav2(unigram_dir, tok, ascii_strings, kwargs):
    transformers = pytest.importorskip("transformers")
    hf = transformers.DebertaV2Tokenizer.from_pretrained(str(unigram_dir))
    firsts, seconds = ascii_strings[:60:2], ascii_strings[1:60:2]
    if kwargs.get("truncation") == "only_second":
        firsts = [f[:20] for f in firsts]  # short enough for only_second to succeed
    ours = tok(firsts, seconds, **kwargs)
    theirs = hf(firsts, seconds, **kwargs)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert ours[key] == theirs[key], key
    single_ours = tok(ascii_strings[:50], padding=True, truncation=True, max_length=16, return_tensors="pt")
    single_theirs = hf(ascii_strings[:50], padding=True, truncation=True, max_length=16, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(single_ours[key], single_theirs[key])


def _ids_or_error(tokenizer, *args, **kwargs):
    try:
        return tokenizer(*args, **kwargs)["input_ids"]
    except Exception as err:  # transformers passes on the `tokenizers` library's plain Exception
        return err


@pytest.mark.parametrize("strategy", ["longest_first", "only_first", "only_second"])
def test_truncation_strategies_equal_transformers_debertav2(unigram_dir, tok, ascii_strings, strategy):
    """Pairs (and single texts) cut to every max_length from one token of content up: the same input_ids
    as transformers' DebertaV2Tokenizer, and a ValueError exactly where it refuses because the sequence
    the strategy may cut is too short (it never cuts a sequence down to nothing)."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.DebertaV2Tokenizer.from_pretrained(str(unigram_dir))

    def length(text):
        return len(tok.encode(text, add_special_tokens=False))

    by_length = sorted(ascii_strings, key=length)
    texts = [by_length[0], by_length[len(by_length) // 3], by_length[2 * len(by_length) // 3], by_length[-1]]
    assert len({length(t) for t in texts}) == 4
    outcomes = {"equal": 0, "both refuse": 0}
    cases = [(a, b) for a in texts for b in texts] + [(a, None) for a in texts]
    for first, second in cases:
        args = (first,) if second is None else (first, second)
        n_special = 2 if second is None else 3
        total = length(first) + (length(second) if second is not None else 0) + n_special
        for max_length in range(n_special + 1, total + 2):
            ours = _ids_or_error(tok, *args, truncation=strategy, max_length=max_length)
            theirs = _ids_or_error(hf, *args, truncation=strategy, max_length=max_length)
            where = (strategy, length(first), second and length(second), max_length)
            if isinstance(theirs, Exception):
                assert isinstance(ours, ValueError), (where, ours, theirs)
                assert strategy in str(ours) or "text_pair" in str(ours), str(ours)
                outcomes["both refuse"] += 1
            else:
                assert ours == theirs, where
                assert len(ours) == min(max_length, total)
                outcomes["equal"] += 1
    assert outcomes["equal"] > 50
    assert (outcomes["both refuse"] > 20) == (strategy != "longest_first"), outcomes
    # a batch is refused as a whole when one of its rows is
    firsts, seconds = texts, texts[::-1]
    for max_length in (6, 12, 24):
        ours = _ids_or_error(tok, firsts, seconds, truncation=strategy, max_length=max_length)
        theirs = _ids_or_error(hf, firsts, seconds, truncation=strategy, max_length=max_length)
        if isinstance(theirs, Exception):
            assert isinstance(ours, ValueError), (max_length, ours)
        else:
            assert ours == theirs, max_length
    # max_length with room for the special tokens only: transformers then empties both sequences whatever
    # the strategy; we refuse (a deliberate difference) unless longest_first allows it
    degenerate = _ids_or_error(tok, texts[1], texts[2], truncation=strategy, max_length=3)
    if strategy == "longest_first":
        assert degenerate == [tok.cls_token_id, tok.sep_token_id, tok.sep_token_id]
    else:
        assert isinstance(degenerate, ValueError) and strategy in str(degenerate)


def test_do_lower_case_and_split_by_punct(tmp_path, unigram_dir, sp):
    lower = Tokenizer.from_pretrained(spm_folder_with_config(tmp_path / "a", unigram_dir, do_lower_case=True))
    assert lower.do_lower_case
    text = "Hello WORLD, Ελληνικά ΣΊΣΥΦΟΣ İstanbul"
    assert lower.encode(text, add_special_tokens=False) == sp.encode(text.lower())
    enc = lower(text, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == sp.encode(text.lower())
    for (s, e), i in zip(enc["offset_mapping"], enc["input_ids"]):
        assert 0 <= s <= e <= len(text)
        piece = lower.convert_ids_to_tokens(i).replace("\u2581", "")
        if piece and s < e and i != lower.unk_token_id:
            # a lone "Σ" lowercases to "σ", but to "ς" at the end of a word: compare sigma-insensitively
            span = sp.normalize(text[s:e].lower())
            assert piece.replace("ς", "σ") in span.replace("ς", "σ"), (piece, text[s:e])
    spans = [text[s:e] for s, e in enc["offset_mapping"] if e > s]
    assert spans[:2] == ["Hello", "WORLD"] or "".join(spans).startswith("HelloWORLD")

    punct = Tokenizer.from_pretrained(
        spm_folder_with_config(tmp_path / "b", unigram_dir, split_by_punct=True)
    )
    text = "Hello, world! (a.b) ok"
    chunks = ["Hello", ",", " world", "!", " ", "(", "a", ".", "b", ")", " ok"]
    assert "".join(chunks) == text
    expected = [i for c in chunks for i in sp.encode(c)]
    assert punct.encode(text, add_special_tokens=False) == expected
    assert punct.encode(text, add_special_tokens=False) != sp.encode(text)
    enc = punct(text, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == expected
    assert "".join(text[s:e] for s, e in enc["offset_mapping"]) == text.replace(" ", "")


# ----------------------------------------------------------------------------------------------------
# offsets


def _check_spm_offsets(tok: Tokenizer, ref, text: str) -> None:
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    pending, pending_bytes, prev_end = "", b"", 0
    for idx, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
        assert 0 <= s <= e <= len(text)
        assert s >= prev_end, (text, enc["offset_mapping"])
        prev_end = max(prev_end, e)
        piece = tok.convert_ids_to_tokens(idx)
        if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            pending_bytes += bytes([int(piece[3:5], 16)])
            if e > s:  # the last byte piece of a character carries the character's span
                assert pending_bytes.decode("utf-8") == text[s:e]
                pending_bytes = b""
            continue
        if idx in tok.all_special_ids:
            assert text[s:e] == piece or idx == tok.unk_token_id
            pending = ""
            continue
        pending += piece
        if e == s:  # an empty span: the piece shares the next piece's characters (or is a bare "▁")
            continue
        got = ref.normalize(text[s:e]).replace("\u2581", " ").strip()
        assert got == pending.replace("\u2581", " ").strip(), (text, piece, text[s:e])
        pending = ""
    assert pending.replace("\u2581", "") == "" and pending_bytes == b""


@pytest.mark.parametrize("model", ["unigram_dir", "bytefallback_dir"])
def test_spm_offsets_cover_their_pieces(model, request, test_strings):
    folder = request.getfixturevalue(model)
    ref = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    tok = Tokenizer.from_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text in list(test_strings[:1500]) + fx.EDGE_CASES:
            _check_spm_offsets(tok, ref, text)


def test_offsets_examples(tok):
    text = "  Hello world"
    enc = tok(text, return_offsets_mapping=True)
    spans = enc["offset_mapping"]
    assert spans[0] == (0, 0) and spans[-1] == (0, 0)
    words = "".join(text[s:e] for s, e in spans)
    assert words == "Helloworld"
    pair = tok("ab", "cd ef", return_offsets_mapping=True)
    second = [s for s, t in zip(pair["offset_mapping"], pair["token_type_ids"]) if t == 1]
    assert "".join("cd ef"[s:e] for s, e in second) == "cdef"
    emoji = "x 👩‍👩‍👧 y"
    enc = tok(emoji, add_special_tokens=False, return_offsets_mapping=True)
    assert max(e for _, e in enc["offset_mapping"]) == len(emoji)


def test_offsets_padded_rows(tok):
    enc = tok(
        ["a", "a much longer sentence here"], padding=True, return_offsets_mapping=True, return_tensors="pt"
    )
    assert enc["offset_mapping"].shape[:2] == enc["input_ids"].shape and enc["offset_mapping"].shape[2] == 2
    pads = enc["attention_mask"][0] == 0
    assert pads.any() and (enc["offset_mapping"][0][pads] == 0).all()


# ----------------------------------------------------------------------------------------------------
# byte-level BPE (DeBERTa v1)


def test_bpe_equals_transformers(bpe_dir, test_strings):
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer.from_pretrained(bpe_dir)
    assert tok.backend == "bpe"
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    vocab = json.loads((bpe_dir / "vocab.json").read_text())
    assert tok.mask_token_id == vocab["[MASK]"] == len(vocab) - 1
    hf = transformers.DebertaTokenizer.from_pretrained(str(bpe_dir))
    texts = [s for s in list(test_strings[:2000]) + fx.EDGE_CASES if "[MASK]" not in s]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = tok(texts, padding=True, truncation=True, max_length=48)
        theirs = hf(texts, padding=True, truncation=True, max_length=48)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert ours[key] == theirs[key], key
    # pairs: transformers 5 writes [CLS] A [SEP] [SEP] B [SEP]; DeBERTa (and we) use [CLS] A [SEP] B [SEP]
    a, b = "first text", "second one"
    pair = tok(a, b)
    ids_a = hf(a, add_special_tokens=False)["input_ids"]
    ids_b = hf(b, add_special_tokens=False)["input_ids"]
    assert pair["input_ids"] == [1, *ids_a, 2, *ids_b, 2]
    assert pair["token_type_ids"] == [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)


def test_bpe_mask_absorbs_preceding_space(bpe_dir):
    tok = Tokenizer.from_pretrained(bpe_dir)
    ids = tok.encode("Hello [MASK] world", add_special_tokens=False)
    assert ids == tok.encode("Hello", add_special_tokens=False) + [tok.mask_token_id] + tok.encode(
        " world", add_special_tokens=False
    )
    assert tok.decode(tok.encode("Hello world"), skip_special_tokens=True) == "Hello world"


def test_bpe_offsets(bpe_dir, test_strings):
    tok = Tokenizer.from_pretrained(bpe_dir)
    byte_decoder = {c: b for b, c in _gpt2_bytes_to_unicode().items()}
    for text in list(test_strings[:800]) + [t for t in fx.EDGE_CASES if "[MASK]" not in t]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        for idx, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
            assert 0 <= s <= e <= len(text)
            raw = bytes(byte_decoder[c] for c in tok.convert_ids_to_tokens(idx))
            try:
                piece = raw.decode("utf-8")
            except UnicodeDecodeError:  # a token holding part of a character: its span holds that character
                assert e > s
                continue
            assert text[s:e].strip() == piece.strip(), (text, piece, text[s:e])


def _gpt2_bytes_to_unicode() -> dict[int, str]:
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def test_tokenizer_json_backend(tmp_path, bpe_dir):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    hf = HFTokenizer(models.BPE.from_file(str(bpe_dir / "vocab.json"), str(bpe_dir / "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = Tokenizer.from_pretrained(tmp_path)
    assert tok.backend == "tokenizer.json"
    text = "Some text, 123 ünïcödé"
    assert tok.encode(text) == [1, *hf.encode(text).ids, 2]
    assert tok.encode("x [MASK]", add_special_tokens=False)[-1] == tok.mask_token_id
    out = tmp_path / "saved"
    tok.save_pretrained(out)
    assert Tokenizer.from_pretrained(out).encode(text) == tok.encode(text)


# ----------------------------------------------------------------------------------------------------
# call semantics


def test_single_and_batch_shapes(tok, sp):
    single = tok("Hello world")
    assert isinstance(single, BatchEncoding)
    assert single.input_ids == [1, *sp.encode("Hello world"), 2]
    assert single.attention_mask == [1] * len(single.input_ids)
    assert single.token_type_ids == [0] * len(single.input_ids)
    batch = tok(["Hello world", "x"])
    assert batch["input_ids"][0] == single.input_ids and len(batch["input_ids"]) == 2
    pair = tok("Hello", "world")
    ids_a, ids_b = sp.encode("Hello"), sp.encode("world")
    assert pair.input_ids == [1, *ids_a, 2, *ids_b, 2]
    assert pair.token_type_ids == [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
    assert tok.encode("Hello", "world") == pair.input_ids
    no_special = tok("Hello", "world", add_special_tokens=False)
    assert no_special.input_ids == ids_a + ids_b
    slim = tok("Hello", return_attention_mask=False, return_token_type_ids=False)
    assert set(slim) == {"input_ids"}
    with pytest.raises(AttributeError):
        _ = single.nonexistent


def test_tensors(tok):
    pt = tok("Hello world", return_tensors="pt")
    assert pt.input_ids.dtype == torch.long and pt.input_ids.shape == (1, len(tok.encode("Hello world")))
    batch = tok(["a", "a longer one"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
    assert batch["input_ids"].shape[0] == 2
    npy = tok(["a", "a longer one"], padding=True, return_tensors="np")
    assert npy["input_ids"].dtype == np.int64 and (npy["input_ids"] == batch["input_ids"].numpy()).all()
    with pytest.raises(ValueError, match="padding=True"):
        tok(["a", "a much longer text"], return_tensors="pt")


def test_padding(tok):
    enc = tok(["a", "a much longer text here"], padding=True)
    lengths = {len(r) for r in enc["input_ids"]}
    assert len(lengths) == 1
    n_real = len(tok.encode("a"))
    row = enc["input_ids"][0]
    assert row[n_real:] == [0] * (len(row) - n_real)
    assert enc["attention_mask"][0] == [1] * n_real + [0] * (len(row) - n_real)
    assert enc["token_type_ids"][0] == [0] * len(row)
    pair = tok(["a"], ["b"], padding="max_length", max_length=10)
    assert len(pair["input_ids"][0]) == 10 and pair["token_type_ids"][0][-1] == 0
    assert tok("a", padding="max_length", max_length=7)["input_ids"][-1] == 0
    assert len(tok("a", padding="max_length", max_length=7)["input_ids"]) == 7
    multiple = tok(["a", "a b c"], padding=True, pad_to_multiple_of=8)
    assert len(tok.encode("a b c")) < 8
    assert all(len(r) == 8 for r in multiple["input_ids"])
    assert len(tok("a", padding=True, pad_to_multiple_of=8)["input_ids"]) == 8
    assert tok(["a", "abc"], padding="do_not_pad")["input_ids"] == [tok.encode("a"), tok.encode("abc")]
    with pytest.raises(ValueError):
        tok("a", padding="sideways")


def test_truncation_strategies(tok):
    a = " ".join(["alpha"] * 20)
    b = " ".join(["beta"] * 8)
    la, lb = len(tok.encode(a, add_special_tokens=False)), len(tok.encode(b, add_special_tokens=False))
    assert la > lb + 4

    def lengths(enc):
        types = enc["token_type_ids"]
        return types.count(0) - 2, types.count(1) - 1

    # longest_first (the `tokenizers` rule): keep the shorter whole if it fits in half the budget,
    # otherwise split the budget in half with the odd token going to the originally longer sequence
    for total in (la + lb + 3 - 2, lb * 2 + 3 + 1, lb * 2 + 3, lb * 2 + 3 - 3, 10):
        enc = tok(a, b, truncation=True, max_length=total)
        assert len(enc["input_ids"]) == total
        keep = total - 3
        exp_b = lb if lb <= keep - lb else keep // 2
        assert lengths(enc) == (keep - exp_b, exp_b)
        assert enc["input_ids"] == tok(a, b, truncation="longest_first", max_length=total)["input_ids"]
        assert lengths(tok(b, a, truncation=True, max_length=total)) == (exp_b, keep - exp_b)
    tie = tok(a, a, truncation=True, max_length=3 + 7)
    assert lengths(tie) == (3, 4)
    enc = tok(a, b, truncation="only_first", max_length=lb + 3 + 2)
    assert lengths(enc) == (2, lb)
    enc = tok(b, a, truncation="only_second", max_length=lb + 3 + 2)
    assert lengths(enc) == (lb, 2)
    with pytest.raises(ValueError, match=rf"{lb}.*tokens"):
        tok(a, b, truncation="only_second", max_length=la + 3)
    with pytest.raises(ValueError, match="only_first"):
        tok(b, a, truncation="only_first", max_length=5)
    with pytest.raises(ValueError, match="text_pair"):
        tok(a, truncation="only_second", max_length=5)
    single = tok(a, truncation=True, max_length=6)
    assert single["input_ids"] == tok.encode(a)[:5] + [2]
    with pytest.warns(UserWarning, match="truncation=True"):
        assert tok(a, truncation="do_not_truncate", max_length=6)["input_ids"] == tok.encode(a)
    with pytest.raises(ValueError, match="too small"):
        tok(a, b, truncation=True, max_length=2)


def test_default_max_length_is_model_max_length(tmp_path, unigram_dir, tok):
    long_text = "word " * 600
    assert len(tok(long_text, truncation=True)["input_ids"]) == 512
    short = Tokenizer.from_pretrained(
        spm_folder_with_config(tmp_path / "a", unigram_dir, model_max_length=32)
    )
    assert short.model_max_length == 32
    assert len(short(long_text, truncation=True)["input_ids"]) == 32
    assert Tokenizer.from_pretrained(unigram_dir, model_max_length=20).model_max_length == 20
    huge = Tokenizer.from_pretrained(
        spm_folder_with_config(tmp_path / "b", unigram_dir, model_max_length=10**30)
    )
    assert huge.model_max_length == 512


def test_too_long_warns_once(tok):
    long_text = "word " * 600
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        enc = tok([long_text, long_text + "more"], return_attention_mask=False)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "512" in message and "truncation=True" in message
    assert str(max(len(r) for r in enc["input_ids"])) in message
    assert len(enc["input_ids"][0]) > 512  # not truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tok(long_text, truncation=True)
        tok("short")
    assert not caught


def test_empty_and_bad_inputs(tok):
    assert tok("")["input_ids"] == [1, 2]
    assert tok(["", "x"], padding=True)["input_ids"][0][:2] == [1, 2]
    assert tok("", "")["input_ids"] == [1, 2, 2]
    with pytest.raises(TypeError, match="NoneType"):
        tok(None)
    with pytest.raises(TypeError, match=r"text\[1\].*int"):
        tok(["ok", 5])
    with pytest.raises(TypeError, match=r"text\[0\].*NoneType"):
        tok([None])
    with pytest.raises(TypeError, match=r"text_pair\[1\]"):
        tok(["a", "b"], ["c", None])
    with pytest.raises(ValueError, match="2"):
        tok(["a", "b"], ["c"])
    with pytest.raises(TypeError):
        tok(["a"], "b")
    assert tok([])["input_ids"] == []


# ----------------------------------------------------------------------------------------------------
# files, saving, decoding


def test_missing_files_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as err:
        Tokenizer.from_pretrained(tmp_path)
    message = str(err.value)
    assert "spm.model" in message and "vocab.json" in message and "tokenizer.json" in message
    assert "config.json" in message


def test_from_pretrained_uses_resolve_model_dir(monkeypatch, unigram_dir):
    import fastdeberta.hub as hub

    calls = []

    def fake_resolve(name, **kwargs):
        calls.append((name, kwargs))
        return unigram_dir

    monkeypatch.setattr(hub, "resolve_model_dir", fake_resolve)
    tok = Tokenizer.from_pretrained("org/some-model", revision="v1", cache_dir="/c", local_files_only=True)
    assert tok.mask_token_id is not None
    assert calls == [
        ("org/some-model", dict(revision="v1", cache_dir="/c", local_files_only=True, token=None))
    ]


def test_save_round_trip_spm(tmp_path, unigram_dir, test_strings):
    src = Tokenizer.from_pretrained(
        spm_folder_with_config(tmp_path / "src", unigram_dir, do_lower_case=True, model_max_length=128)
    )
    out = tmp_path / "saved"
    src.save_pretrained(out)
    assert {"spm.model", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in out.iterdir()
    }
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "DebertaV2Tokenizer" and config["do_lower_case"] is True
    assert config["mask_token"] == "[MASK]" and config["model_max_length"] == 128
    again = Tokenizer.from_pretrained(out)
    texts = list(test_strings[:300]) + ["The [MASK] is here"]
    assert again(texts)["input_ids"] == src(texts)["input_ids"]
    assert again.model_max_length == 128 and again.do_lower_case and again.mask_token_id == src.mask_token_id

    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(str(out))
    assert type(auto).__name__ == "DebertaV2Tokenizer"
    assert auto.mask_token_id == src.mask_token_id
    assert auto("Hello World here")["input_ids"] == src("Hello World here")["input_ids"]


def test_save_round_trip_bpe(tmp_path, bpe_dir, test_strings):
    src = Tokenizer.from_pretrained(bpe_dir)
    out = tmp_path / "saved"
    src.save_pretrained(out)
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= set(os.listdir(out))
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "DebertaTokenizer"
    again = Tokenizer.from_pretrained(out)
    texts = list(test_strings[:300]) + ["The [MASK] is here"]
    assert again(texts)["input_ids"] == src(texts)["input_ids"]
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(str(out))
    assert auto("Hello world")["input_ids"] == src("Hello world")["input_ids"]


def test_decode_and_conversions(tok, sp):
    text = "Hello world, ünïcödé 中文"
    ids = tok.encode(text)
    assert tok.decode(ids, skip_special_tokens=True) == sp.decode(sp.encode(text))
    assert tok.decode(ids) == f"[CLS] {sp.decode(sp.encode(text))} [SEP]"
    assert tok.decode(torch.tensor(ids), skip_special_tokens=True) == tok.decode(
        ids, skip_special_tokens=True
    )
    masked = tok.encode("a [MASK] b")
    assert "[MASK]" in tok.decode(masked, skip_special_tokens=False)
    assert "[MASK]" not in tok.decode(masked, skip_special_tokens=True)
    assert tok.batch_decode([ids, tok.encode("x")], skip_special_tokens=True)[1] == "x"
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[0] == "[CLS]" and pieces[1:-1] == sp.encode(text, out_type=str)
    assert tok.convert_tokens_to_ids(pieces) == ids
    assert tok.convert_tokens_to_ids("[MASK]") == tok.mask_token_id
    assert tok.convert_tokens_to_ids("no-such-piece-xyz") == tok.unk_token_id
    assert tok.tokenize(text) == sp.encode(text, out_type=str)
    with pytest.raises(IndexError):
        tok.convert_ids_to_tokens(10**6)
