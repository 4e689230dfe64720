"""The parts of transformers' tokenizer API that fine-tuning recipes call, each against transformers
itself on the same files: DebertaV2Tokenizer for SentencePiece, DebertaTokenizer for byte-level BPE.

Covered: word_ids / tokens / sequence_ids / char_to_token on the returned encoding,
is_split_into_words, return_special_tokens_mask, return_length, stride + return_overflowing_tokens
(+ overflow_to_sample_mapping), max_length without truncation, padding_side / truncation_side,
model_input_names, get_special_tokens_mask, convert_tokens_to_string, pad(), and transformers'
DataCollatorWithPadding and DataCollatorForLanguageModeling running on our tokenizer.

Models are trained here on the machine's gettext catalogs (see tokenizer_fixtures.py). Offsets are not
compared: ours leave out the space a "▁" token stands for (documented in fastdeberta.tokenizer).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for a non-installed checkout

import tokenizer_fixtures as fx  # noqa: E402

from fastdeberta.errors import InvalidInputError  # noqa: E402
from fastdeberta.tokenizer import Tokenizer  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

pytestmark = pytest.mark.skipif(
    len(fx.gettext_strings()) < 1000, reason="needs gettext catalogs in /usr/share/locale"
)

MASKED = ["The [MASK] sat on the mat.", "two [MASK][MASK] masks and [MASK]! end", "[MASK]", "a [MASK]b"]


@pytest.fixture(scope="module")
def texts():
    return fx.plain_ascii(fx.split_corpus(fx.gettext_strings())[1], limit=120)


@pytest.fixture(scope="module", params=["spm", "bpe"])
def pair(request):
    """(ours, transformers') on the same files: DeBERTa-v3 style SentencePiece or DeBERTa v1 BPE."""
    if request.param == "spm":
        folder = fx.shared_model_dir("unigram")
        theirs = transformers.DebertaV2Tokenizer.from_pretrained(str(folder))
    else:
        folder = fx.shared_model_dir("bpe")
        theirs = transformers.DebertaTokenizer.from_pretrained(str(folder))
    return Tokenizer.from_pretrained(folder), theirs


@pytest.fixture(scope="module")
def spm_pair():
    folder = fx.shared_model_dir("unigram")
    return Tokenizer.from_pretrained(folder), transformers.DebertaV2Tokenizer.from_pretrained(str(folder))


def _same_rows(ours, theirs, keys=None):
    keys = keys or list(theirs.keys())
    assert set(ours.keys()) == set(theirs.keys()), (sorted(ours), sorted(theirs))
    for key in keys:
        assert ours[key] == theirs[key], key
    for row in range(len(theirs["input_ids"]) if isinstance(theirs["input_ids"][0], list) else 1):
        assert ours.tokens(row) == theirs.tokens(row), row
        assert ours.word_ids(row) == theirs.word_ids(row), (row, theirs.tokens(row))
        assert ours.sequence_ids(row) == theirs.sequence_ids(row), row


# ----------------------------------------------------------------------------------------------------
# what the encoding knows about its tokens


def test_tokens_word_ids_sequence_ids_equal_transformers(pair, texts):
    ours_tok, hf = pair
    singles = texts[:60] + (MASKED if ours_tok.backend == "spm" else [])
    _same_rows(ours_tok(singles), hf(singles))
    if ours_tok.backend == "spm":  # transformers 5 writes [CLS] A [SEP] [SEP] B [SEP] for DeBERTa v1 pairs
        firsts, seconds = texts[60:90], texts[90:120]
        _same_rows(ours_tok(firsts, seconds), hf(firsts, seconds))
    one = ours_tok(texts[0])
    assert one.word_ids() == hf(texts[0]).word_ids() and one.tokens() == hf(texts[0]).tokens()
    assert one.token_to_word(1) == 0 and one.token_to_sequence(0) is None


def test_word_ids_start_at_word_marker_for_every_script():
    """A SentencePiece word starts at each piece beginning with "▁" (and at a special token), on
    multilingual text too, where transformers' rebuilt tokenizer does not match sentencepiece."""
    folder = fx.shared_model_dir("unigram")
    tok = Tokenizer.from_pretrained(folder)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    strings = [s for s in fx.split_corpus(fx.gettext_strings())[1][:400] if "[" not in s]
    enc = tok(strings, add_special_tokens=False)
    for row, text in enumerate(strings):
        pieces = sp.encode(text, out_type=str)
        expected, word = [], -1
        for k, piece in enumerate(pieces):
            word += piece.startswith("\u2581") or k == 0
            expected.append(word)
        assert enc.word_ids(row) == expected, text
    masked = tok("x [MASK]y", add_special_tokens=False)
    assert masked.word_ids() == [0] * len(sp.encode("x ")) + [1] + [2] * len(sp.encode("y"))


def test_char_to_token_equals_transformers(pair, texts):
    ours_tok, hf = pair
    batch = texts[:40] + (MASKED if ours_tok.backend == "spm" else ["Hello, world  x y"])
    for with_offsets in (True, False):  # without offsets, char_to_token computes them on demand
        ours = ours_tok(batch, return_offsets_mapping=with_offsets)
        theirs = hf(batch)
        for row, text in enumerate(batch):
            got = [ours.char_to_token(row, c) for c in range(len(text) + 1)]
            assert got == [theirs.char_to_token(row, c) for c in range(len(text) + 1)], text
    if ours_tok.backend == "spm":
        a, b = texts[0], texts[1]
        ours, theirs = ours_tok(a, b), hf(a, b)
        for c in range(len(b)):
            assert ours.char_to_token(c, sequence_index=1) == theirs.char_to_token(c, sequence_index=1)
        assert ours.char_to_token(3) == theirs.char_to_token(3)


def test_is_split_into_words_equals_transformers(pair, texts):
    ours_tok, hf = pair
    words = [t.split(" ") for t in texts[:40]]
    ours, theirs = ours_tok(words, is_split_into_words=True), hf(words, is_split_into_words=True)
    _same_rows(ours, theirs)
    for row, ws in enumerate(words):
        assert {w for w in ours.word_ids(row) if w is not None} == set(range(len(ws)))
    single = ours_tok(words[0], is_split_into_words=True)
    assert single["input_ids"] == theirs["input_ids"][0] and single.word_ids() == theirs.word_ids(0)
    if ours_tok.backend == "spm":
        pairs_ours = ours_tok(words[:10], words[10:20], is_split_into_words=True, truncation=True, max_length=12)
        pairs_theirs = hf(words[:10], words[10:20], is_split_into_words=True, truncation=True, max_length=12)
        _same_rows(pairs_ours, pairs_theirs)
        # offsets are relative to each word
        enc = ours_tok(["Hello", "world"], is_split_into_words=True, return_offsets_mapping=True)
        spans = [(w, s, e) for w, (s, e) in zip(enc.word_ids(), enc["offset_mapping"]) if w is not None and e > s]
        assert "".join(["Hello", "world"][w][s:e] for w, s, e in spans) == "Helloworld"


# ----------------------------------------------------------------------------------------------------
# masks, lengths, overflow, truncation


def test_special_tokens_mask_and_length_equal_transformers(pair, texts):
    ours_tok, hf = pair
    batch = texts[:30] + (MASKED if ours_tok.backend == "spm" else [])
    for kwargs in (dict(), dict(padding=True), dict(padding="max_length", max_length=20, truncation=True)):
        ours = ours_tok(batch, return_special_tokens_mask=True, return_length=True, **kwargs)
        theirs = hf(batch, return_special_tokens_mask=True, return_length=True, **kwargs)
        _same_rows(ours, theirs)
    ours = ours_tok(batch[:4], padding=True, return_length=True, return_special_tokens_mask=True, return_tensors="pt")
    theirs = hf(batch[:4], padding=True, return_length=True, return_special_tokens_mask=True, return_tensors="pt")
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


@pytest.mark.parametrize("side", ["right", "left"])
def test_overflowing_windows_equal_transformers(spm_pair, texts, side):
    """Every strategy, stride and max_length where transformers answers: the same rows, in the same order,
    with the same overflow_to_sample_mapping, word ids and sequence ids; a clear error where it fails."""
    ours_tok, hf = spm_pair
    question, long_text = "who is there", " ".join(texts[:12])
    compared = refused = 0
    try:
        ours_tok.truncation_side = hf.truncation_side = side
        for strategy, args in (
            ("only_second", (question, long_text)),
            ("only_first", (long_text, question)),
            ("longest_first", (long_text, texts[20])),
            ("longest_first", (long_text,)),
        ):
            for max_length in (10, 16, 31):
                for stride in (0, 1, 3):
                    kwargs = dict(truncation=strategy, max_length=max_length, stride=stride, return_overflowing_tokens=True)
                    try:
                        theirs = hf(*args, return_special_tokens_mask=True, **kwargs)
                    except BaseException:  # an Exception, or a Rust panic (stride too large)
                        with pytest.raises(InvalidInputError):
                            ours_tok(*args, **kwargs)
                        refused += 1
                        continue
                    ours = ours_tok(*args, return_special_tokens_mask=True, **kwargs)
                    assert len(theirs["input_ids"]) > 1
                    _same_rows(ours, theirs)
                    compared += 1
        batch_kwargs = dict(truncation="only_second", max_length=24, stride=4, return_overflowing_tokens=True, padding=True)
        ours = ours_tok([question, "why"], [long_text, texts[30]], return_tensors="pt", **batch_kwargs)
        theirs = hf([question, "why"], [long_text, texts[30]], return_tensors="pt", **batch_kwargs)
        assert set(ours) == set(theirs)
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), key
        assert ours["overflow_to_sample_mapping"].tolist()[-1] == 1
    finally:
        ours_tok.truncation_side = hf.truncation_side = "right"
    assert compared >= 20 and refused >= 1


def test_stride_too_large_is_a_clear_error(spm_pair):
    tok, _ = spm_pair
    with pytest.raises(InvalidInputError, match=r"stride=6 must be smaller than the 4 tokens"):
        tok("one two three four five six seven eight nine", max_length=6, stride=6, truncation=True,
            return_overflowing_tokens=True)


def test_max_length_alone_truncates_like_transformers(pair, texts):
    ours_tok, hf = pair
    long_texts = [" ".join(texts[i : i + 6]) for i in range(0, 60, 6)]
    for kwargs in (
        dict(max_length=12),  # truncation switched on, as in transformers
        dict(max_length=12, padding=True),  # padding given: no truncation
        dict(max_length=12, truncation=False),
        dict(max_length=40, padding="max_length"),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, theirs = ours_tok(long_texts, **kwargs), hf(long_texts, **kwargs)
        assert ours["input_ids"] == theirs["input_ids"], kwargs
    assert len(ours_tok.encode(long_texts[0], max_length=9)) == 9


def test_padding_and_truncation_side_equal_transformers(pair, texts):
    ours_tok, hf = pair
    batch = texts[:20]
    try:
        hf.padding_side = hf.truncation_side = "left"
        ours_tok.padding_side = ours_tok.truncation_side = "left"
        kwargs = dict(padding="max_length", truncation=True, max_length=9, return_offsets_mapping=False)
        _same_rows(ours_tok(batch, return_special_tokens_mask=True, **kwargs),
                   hf(batch, return_special_tokens_mask=True, **kwargs))
    finally:
        hf.padding_side = hf.truncation_side = "right"
        ours_tok.padding_side = ours_tok.truncation_side = "right"
    ours = ours_tok(batch, padding=True, padding_side="left")
    theirs = hf(batch, padding=True, padding_side="left")
    assert ours["input_ids"] == theirs["input_ids"] and ours["attention_mask"] == theirs["attention_mask"]
    with pytest.raises(InvalidInputError, match="padding_side"):
        ours_tok.padding_side = "middle"
    with pytest.raises(InvalidInputError, match="truncation_side"):
        ours_tok.truncation_side = None
    assert ours_tok.padding_side == "right"


def test_sides_and_input_names_from_tokenizer_config(tmp_path):
    src = fx.shared_model_dir("unigram")
    tok = Tokenizer.from_pretrained(src)
    tok.padding_side = "left"
    tok.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert again.padding_side == theirs.padding_side == "left" and again.truncation_side == "right"
    assert again.model_input_names == theirs.model_input_names == ["input_ids", "attention_mask", "token_type_ids"]
    (tmp_path / "tokenizer_config.json").write_text(
        (tmp_path / "tokenizer_config.json").read_text().replace('"padding_side": "left"', '"padding_side": "up"')
    )
    with pytest.raises(InvalidInputError, match="padding_side"):
        Tokenizer.from_pretrained(tmp_path)


def test_model_input_names_choose_default_fields(tmp_path):
    tok = Tokenizer.from_pretrained(fx.shared_model_dir("unigram"))
    tok.model_input_names = ["input_ids", "attention_mask"]
    try:
        assert set(tok("hello")) == {"input_ids", "attention_mask"}
        assert set(tok("hello", return_token_type_ids=True)) == {"input_ids", "token_type_ids", "attention_mask"}
    finally:
        tok.model_input_names = ["input_ids", "attention_mask", "token_type_ids"]


# ----------------------------------------------------------------------------------------------------
# special tokens mask, tokens to string


def test_get_special_tokens_mask_equals_transformers(pair, texts):
    ours_tok, hf = pair
    rows = ours_tok(texts[:20] + ["x [MASK] y"], padding=True)["input_ids"]
    for row in rows:
        expected = hf.get_special_tokens_mask(row, already_has_special_tokens=True)
        assert ours_tok.get_special_tokens_mask(row, already_has_special_tokens=True) == expected
    a = ours_tok.encode(texts[0], add_special_tokens=False)
    b = ours_tok.encode(texts[1], add_special_tokens=False)
    assert ours_tok.get_special_tokens_mask(a, b) == ours_tok(texts[0], texts[1], return_special_tokens_mask=True)[
        "special_tokens_mask"
    ]
    assert ours_tok.get_special_tokens_mask(a) == [1] + [0] * len(a) + [1]
    assert ours_tok.get_special_tokens_mask(torch.tensor(rows[0]), already_has_special_tokens=True) == hf.get_special_tokens_mask(rows[0], already_has_special_tokens=True)
    with pytest.raises(InvalidInputError, match="token_ids_1"):
        ours_tok.get_special_tokens_mask(a, b, already_has_special_tokens=True)


def test_convert_tokens_to_string_equals_transformers(pair, texts):
    ours_tok, hf = pair
    for text in texts[:60] + (MASKED if ours_tok.backend == "spm" else []):
        tokens = ours_tok(text).tokens()
        assert ours_tok.convert_tokens_to_string(tokens) == hf.convert_tokens_to_string(tokens), text
        assert ours_tok.convert_tokens_to_string(tokens[1:-1]) == hf.convert_tokens_to_string(tokens[1:-1])
    assert ours_tok.convert_tokens_to_string([]) == ""


def test_convert_tokens_to_string_joins_byte_fallback_pieces():
    folder = fx.shared_model_dir("bytefallback")
    tok = Tokenizer.from_pretrained(folder)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    text = "emoji 😀 and 中文 测试"
    pieces = sp.encode(text, out_type=str)
    assert any(p.startswith("<0x") for p in pieces)
    assert tok.convert_tokens_to_string(pieces) == sp.decode_pieces(pieces)


# ----------------------------------------------------------------------------------------------------
# pad() and transformers' data collators


def test_pad_equals_transformers(pair, texts):
    ours_tok, hf = pair
    features = [dict(ours_tok(t, return_special_tokens_mask=True)) | {"label": i % 3} for i, t in enumerate(texts[:8])]
    cases = [
        dict(),
        dict(padding="max_length", max_length=40),
        dict(pad_to_multiple_of=8),
        dict(padding_side="left", return_tensors="pt"),
        dict(return_attention_mask=False),
        dict(padding=False),
    ]
    for kwargs in cases:
        ours = ours_tok.pad([dict(f) for f in features], **kwargs)
        theirs = hf.pad([dict(f) for f in features], **kwargs)
        assert list(ours) == list(theirs), kwargs
        for key in theirs:
            same = torch.equal(ours[key], theirs[key]) if kwargs.get("return_tensors") else ours[key] == theirs[key]
            assert same, (kwargs, key)
    columns = {"input_ids": [f["input_ids"] for f in features]}
    assert ours_tok.pad(columns)["input_ids"] == hf.pad(columns)["input_ids"]
    single = {"input_ids": features[0]["input_ids"]}
    assert ours_tok.pad(single, padding="max_length", max_length=30) == hf.pad(single, padding="max_length", max_length=30)
    as_tensors = [{"input_ids": torch.tensor(f["input_ids"])} for f in features]
    ours, theirs = ours_tok.pad(as_tensors), hf.pad(as_tensors)
    assert torch.equal(ours["input_ids"], theirs["input_ids"]) and torch.equal(ours["attention_mask"], theirs["attention_mask"])
    assert ours_tok.pad({"input_ids": []}) == {"input_ids": []}


def test_pad_keeps_offsets_and_refuses_bad_input(spm_pair):
    tok, _ = spm_pair
    rows = [dict(tok(t, return_offsets_mapping=True)) for t in ("a b", "a longer text here")]
    padded = tok.pad(rows, return_tensors="pt")
    assert padded["offset_mapping"].shape == (*padded["input_ids"].shape, 2)
    assert padded["offset_mapping"][0, -1].tolist() == [0, 0]
    with pytest.raises(InvalidInputError, match="input_ids"):
        tok.pad([{"labels": [1, 2]}])
    with pytest.raises(TypeError, match="pad"):
        tok.pad("not an encoding")
    with pytest.raises(TypeError, match=r"input_ids\[1\]"):
        tok.pad({"input_ids": [[1, 2], [1, "x"]]})
    with pytest.raises(InvalidInputError, match="rows"):
        tok.pad({"input_ids": [[1, 2], [1]], "token_type_ids": [[0, 0]]})
    with pytest.raises(InvalidInputError, match="labels"):
        tok.pad([{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [1], "labels": [1]}], return_tensors="pt")


def test_data_collator_with_padding_runs_on_our_tokenizer(pair, texts):
    ours_tok, hf = pair
    features = [dict(ours_tok(t)) | {"label": i % 2} for i, t in enumerate(texts[:10])]
    for kwargs in (dict(), dict(pad_to_multiple_of=8), dict(padding="max_length", max_length=48)):
        ours = transformers.DataCollatorWithPadding(ours_tok, **kwargs)([dict(f) for f in features])
        theirs = transformers.DataCollatorWithPadding(hf, **kwargs)([dict(f) for f in features])
        assert set(ours) == set(theirs) >= {"input_ids", "attention_mask", "labels"}
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), (kwargs, key)


def test_data_collator_for_language_modeling_runs_on_our_tokenizer(pair, texts):
    ours_tok, hf = pair
    features = [dict(ours_tok(t)) for t in texts[:16]]
    ours = transformers.DataCollatorForLanguageModeling(ours_tok, mlm_probability=0.3, seed=7)
    theirs = transformers.DataCollatorForLanguageModeling(hf, mlm_probability=0.3, seed=7)
    got, want = ours([dict(f) for f in features]), theirs([dict(f) for f in features])
    assert set(got) == set(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    masked = got["labels"] != -100
    assert masked.any() and (got["input_ids"][masked] == ours_tok.mask_token_id).any()
    specials = torch.isin(got["input_ids"], torch.tensor([ours_tok.cls_token_id, ours_tok.sep_token_id]))
    assert not masked[specials].any()  # [CLS]/[SEP]/[PAD] never masked: get_special_tokens_mask at work
    plain_lists = ours([f["input_ids"] for f in features])  # lists of ids: padded by the collator itself
    assert plain_lists["input_ids"].shape == got["input_ids"].shape


# ----------------------------------------------------------------------------------------------------
# the preprocessing of transformers' example scripts, run with both tokenizers


def _qa_train_features(tokenizer, questions, contexts, answers, max_length=40, stride=8):
    """The start/end token positions transformers' run_qa.py computes (its prepare_train_features)."""
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    offset_mapping = enc.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offset_mapping):
        cls_index = enc["input_ids"][i].index(tokenizer.cls_token_id)
        sequence_ids = enc.sequence_ids(i)
        start_char, text = answers[sample_mapping[i]]
        end_char = start_char + len(text)
        token_start = sequence_ids.index(1)
        token_end = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        while token_start < len(offsets) and offsets[token_start][0] <= start_char:
            token_start += 1
        while offsets[token_end][1] >= end_char:
            token_end -= 1
        starts.append(token_start - 1)
        ends.append(token_end + 1)
    return enc["input_ids"], sample_mapping, starts, ends


def test_run_qa_preprocessing_gives_transformers_positions(spm_pair, texts):
    ours, hf = spm_pair
    contexts = [" ".join(texts[i : i + 8]) for i in range(0, 80, 8)]
    questions = [f"what about {texts[90 + i].split(' ')[0]}" for i in range(len(contexts))]
    answers = []
    for context in contexts:
        word = max(context.split(" "), key=len)
        answers.append((context.index(word), word))
    got = _qa_train_features(ours, questions, contexts, answers)
    want = _qa_train_features(hf, questions, contexts, answers)
    assert got == want
    assert len(got[1]) > len(contexts) and sum(s != 0 for s in got[2]) >= len(contexts)


def _ner_labels(tokenizer, words, tags):
    """transformers' run_ner.py tokenize_and_align_labels: the first sub-token of a word gets its tag."""
    enc = tokenizer(words, truncation=True, max_length=24, is_split_into_words=True)
    labels = []
    for i, sentence_tags in enumerate(tags):
        previous, row = None, []
        for word in enc.word_ids(batch_index=i):
            row.append(-100 if word is None or word == previous else sentence_tags[word])
            previous = word
        labels.append(row)
    return enc["input_ids"], labels


def test_run_ner_label_alignment_gives_transformers_labels(pair, texts):
    ours, hf = pair
    words = [t.split(" ") for t in texts[:50]]
    tags = [[(len(w) + k) % 5 for k, w in enumerate(sentence)] for sentence in words]
    assert _ner_labels(ours, words, tags) == _ner_labels(hf, words, tags)


def test_batch_encoding_pickles_small_and_keeps_its_accessors(spm_pair, texts):
    """A DataLoader worker sends BatchEncodings through pickle: the rows travel, the tokenizer does not."""
    import pickle

    tok, hf = spm_pair
    enc = tok(texts[:4], texts[4:8], padding=True, return_offsets_mapping=True, return_tensors="pt")
    blob = pickle.dumps(enc)
    assert len(blob) < len(pickle.dumps(tok)) // 10
    again = pickle.loads(blob)
    theirs = hf(texts[:4], texts[4:8], padding=True)
    for row in range(4):
        assert again.word_ids(row) == theirs.word_ids(row) and again.tokens(row) == theirs.tokens(row)
        assert again.sequence_ids(row) == theirs.sequence_ids(row)
        assert again.char_to_token(row, 2) == theirs.char_to_token(row, 2)
    assert torch.equal(again["input_ids"], enc["input_ids"]) and again.data.keys() == enc.keys()
    assert Tokenizer.from_pretrained(fx.shared_model_dir("unigram"))("x").input_ids == pickle.loads(pickle.dumps(tok))("x").input_ids
