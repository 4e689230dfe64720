"""Bad input to the tokenizer: text UTF-8 cannot encode (lone surrogates), wrong argument types and
values -- each a documented error of fastdeberta's own types, raised before anything is encoded, and
never a change in how the tokenizer behaves afterwards. Includes Hypothesis property tests
(derandomised, bounded) that ids equal sentencepiece's own for any encodable text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for a non-installed checkout

import tokenizer_fixtures as fx  # noqa: E402

from fastdeberta.errors import FastDebertaError, InputTypeError, InvalidInputError  # noqa: E402
from fastdeberta.tokenizer import TokenIdError, Tokenizer, UnencodableTextError  # noqa: E402

spm = pytest.importorskip("sentencepiece")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(
    len(fx.gettext_strings()) < 1000, reason="needs gettext catalogs in /usr/share/locale"
)

# bounded and reproducible: the same examples on every run, no per-example deadline on a busy CI machine
PROPERTY = settings(
    derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)


@pytest.fixture(scope="module", params=["unigram", "bytefallback", "bpe"])
def model(request):
    folder = fx.shared_model_dir(request.param)
    return Tokenizer.from_pretrained(folder), folder


@pytest.fixture(scope="module")
def unigram():
    folder = fx.shared_model_dir("unigram")
    return Tokenizer.from_pretrained(folder), spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))


# ----------------------------------------------------------------------------------------------------
# lone surrogates


def test_lone_surrogate_is_a_clear_error_naming_where(model):
    tok, _ = model
    with pytest.raises(UnencodableTextError) as err:
        tok("abc\ud800")
    assert (err.value.argument, err.value.position, err.value.character) == ("text", 3, "\ud800")
    assert "U+D800" in str(err.value) and "character 3" in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, FastDebertaError)
    cases = [
        (lambda: tok(["fine", "x\udcffy"]), "text[1]", 1),
        (lambda: tok("fine", "\ud83d\ude00"), "text_pair", 0),  # a surrogate *pair* is still not UTF-8
        (lambda: tok(["a", "b"], ["c", "ok\udfff"], padding=True), "text_pair[1]", 2),
        (lambda: tok([["ok", "b\ud800"]], is_split_into_words=True), "text[0][1]", 1),
        (lambda: tok("abc\ud800", return_offsets_mapping=True), "text", 3),
        (lambda: tok.encode("\ud800"), "text", 0),
        (lambda: tok.tokenize("xy\ud800"), "text", 2),
    ]
    for call, argument, position in cases:
        with pytest.raises(UnencodableTextError) as err:
            call()
        assert (err.value.argument, err.value.position) == (argument, position)
    assert tok.convert_tokens_to_ids("\ud800") == tok.unk_token_id  # no vocabulary holds one


def test_failed_call_leaves_the_tokenizer_working(model):
    """Regression: after one offsets call on a lone surrogate, every later offsets call failed with
    "immutable_proto is deprecated" (the tokenizer switched to a dead code path for good)."""
    tok, _ = model
    texts = ["hello world", "Grüße, 世界 😀"]
    before = tok(texts, return_offsets_mapping=True)
    for bad in ("abc\ud800", ["ok", "\udc00"]):
        for offsets in (True, False):
            with pytest.raises(UnencodableTextError):
                tok(bad, return_offsets_mapping=offsets)
    after = tok(texts, return_offsets_mapping=True)
    assert after["input_ids"] == before["input_ids"] and after["offset_mapping"] == before["offset_mapping"]
    assert after.char_to_token(0, 1) == before.char_to_token(0, 1)


def test_fresh_tokenizer_whose_first_call_fails_still_gives_offsets(model):
    _, folder = model
    tok = Tokenizer.from_pretrained(folder)
    with pytest.raises(UnencodableTextError):
        tok("\ud800", return_offsets_mapping=True)
    enc = tok("hello world", return_offsets_mapping=True)
    assert "".join("hello world"[s:e] for s, e in enc["offset_mapping"]).replace(" ", "") == "helloworld"


def _with_surrogates(text: str, insertions: list[tuple[int, str]]) -> str:
    for position, char in insertions:
        cut = position % (len(text) + 1)
        text = text[:cut] + char + text[cut:]
    return text


def _ids_equal_sentencepiece_or_documented_error(tok, sp, text: str) -> None:
    """Either ids equal sentencepiece's own encode (both code paths) or UnencodableTextError at the
    first surrogate -- never another exception."""
    first_bad = next((i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF), None)
    for offsets in (False, True):
        try:
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=offsets)
        except UnencodableTextError as err:
            assert err.position == first_bad
            continue
        assert first_bad is None
        assert enc["input_ids"] == sp.encode(text)
        if offsets:
            assert all(0 <= s <= e <= len(text) for s, e in enc["offset_mapping"])


@PROPERTY
@given(text=st.text(max_size=40), insertions=st.lists(st.tuples(st.integers(0, 100), SURROGATES), max_size=2))
def test_random_unicode_ids_equal_sentencepiece_or_documented_error(unigram, text, insertions):
    tok, sp = unigram
    text = _with_surrogates(text, insertions)
    assume(not any(special in text for special in tok.all_special_tokens))
    _ids_equal_sentencepiece_or_documented_error(tok, sp, text)


@pytest.mark.slow
@settings(derandomize=True, max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200), insertions=st.lists(st.tuples(st.integers(0, 400), SURROGATES), max_size=3))
def test_random_unicode_long_profile(unigram, text, insertions):
    """The same property on more and longer texts (run with ``-m slow``)."""
    tok, sp = unigram
    text = _with_surrogates(text, insertions)
    assume(not any(special in text for special in tok.all_special_tokens))
    _ids_equal_sentencepiece_or_documented_error(tok, sp, text)


@PROPERTY
@given(
    texts=st.lists(st.text(max_size=60), min_size=1, max_size=4),
    max_length=st.integers(3, 20),
    stride=st.integers(0, 4),
    side=st.sampled_from(["right", "left"]),
)
def test_random_overflowing_windows_cover_the_text(unigram, texts, max_length, stride, side):
    """Any batch cut into overflowing windows: rows of the same (padded) length, none longer than
    max_length, neighbouring windows of an input sharing exactly ``stride`` tokens, and together
    spelling the input's tokens -- or a documented InvalidInputError (stride too large)."""
    tok, _ = unigram
    assume(not any(special in t for t in texts for special in tok.all_special_tokens))
    tok.truncation_side = side
    try:
        enc = tok(texts, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True,
                  padding=True, return_offsets_mapping=True)
    except InvalidInputError as err:
        assert "stride" in str(err)
        assert stride >= max_length - 2
        return
    finally:
        tok.truncation_side = "right"
    rows = enc["input_ids"]
    assert len({len(r) for r in rows}) == 1
    assert all(sum(mask) <= max_length for mask in enc["attention_mask"])
    mapping = enc["overflow_to_sample_mapping"]
    assert mapping == sorted(mapping) and set(mapping) == set(range(len(texts)))
    for sample, text in enumerate(texts):
        full = tok(text, add_special_tokens=False)["input_ids"]
        windows = [
            [t for t, s in zip(rows[r], enc.sequence_ids(r)) if s == 0] for r in range(len(rows)) if mapping[r] == sample
        ]
        ordered = windows if side == "right" else windows[::-1]
        joined = list(ordered[0])
        for previous, window in zip(ordered, ordered[1:]):
            assert previous[len(previous) - stride :] == window[:stride]
            joined += window[stride:]
        assert joined == full
        for r in (r for r in range(len(rows)) if mapping[r] == sample):
            for start, end in enc["offset_mapping"][r]:
                assert 0 <= start <= end <= len(text)


@PROPERTY
@given(text=st.text(max_size=40))
def test_random_unicode_byte_fallback_model_equals_sentencepiece(text):
    folder = fx.shared_model_dir("bytefallback")
    tok = _cached_tokenizer(folder)
    sp = _cached_processor(folder)
    assume(not any(special in text for special in tok.all_special_tokens))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == sp.encode(text) == tok.encode(text, add_special_tokens=False)


@PROPERTY
@given(text=st.text(max_size=40))
def test_random_unicode_byte_level_bpe_round_trips(text):
    """Byte-level BPE is lossless: decoding the ids gives the text back, whatever its characters."""
    tok = _cached_tokenizer(fx.shared_model_dir("bpe"))
    assume(not any(special in text for special in tok.all_special_tokens))
    ids = tok(text, add_special_tokens=False, return_offsets_mapping=True)["input_ids"]
    assert tok.decode(ids) == text


_TOKENIZERS: dict = {}


def _cached_tokenizer(folder: Path) -> Tokenizer:
    if folder not in _TOKENIZERS:
        _TOKENIZERS[folder] = Tokenizer.from_pretrained(folder)
    return _TOKENIZERS[folder]


def _cached_processor(folder: Path):
    key = ("spm", folder)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))
    return _TOKENIZERS[key]


# ----------------------------------------------------------------------------------------------------
# bad arguments


BAD_CALLS = [
    # (keyword arguments of tok(...), error type, words the message must hold)
    (dict(padding="sideways"), InvalidInputError, "padding"),
    (dict(padding=1), InvalidInputError, "padding"),
    (dict(truncation="yes"), InvalidInputError, "truncation"),
    (dict(max_length=0), InvalidInputError, "max_length"),
    (dict(max_length="5"), InputTypeError, "max_length"),
    (dict(max_length=True), InputTypeError, "max_length"),
    (dict(stride=-1, max_length=8, truncation=True), InvalidInputError, "stride"),
    (dict(pad_to_multiple_of=0, padding=True), InvalidInputError, "pad_to_multiple_of"),
    (dict(return_tensors="tf"), InvalidInputError, "return_tensors"),
    (dict(padding_side="up", padding=True), InvalidInputError, "padding_side"),
    (dict(return_offsets_mapping="yes"), InputTypeError, "return_offsets_mapping"),
    (dict(add_special_tokens=None), InputTypeError, "add_special_tokens"),
    (dict(is_split_into_words=True), InputTypeError, "list of words"),
    (dict(return_offset_mapping=True), InputTypeError, "did you mean 'return_offsets_mapping'"),
    (dict(truncation=True, max_length=1), InvalidInputError, "too small"),
]


@pytest.mark.parametrize("kwargs,error,words", BAD_CALLS, ids=[str(c[0]) for c in BAD_CALLS])
def test_bad_call_arguments(unigram, kwargs, error, words):
    tok, _ = unigram
    with pytest.raises(error, match=words):
        tok("some text", **kwargs)


def test_bad_texts_and_ids(unigram):
    tok, _ = unigram
    bad = [
        (lambda: tok(b"bytes"), InputTypeError, "bytes"),
        (lambda: tok([["a", 1]], is_split_into_words=True), InputTypeError, r"text\[0\]\[1\]"),
        (lambda: tok(["a", ["b"]]), InputTypeError, r"text\[1\]"),
        (lambda: tok.tokenize(None), InputTypeError, "NoneType"),
        (lambda: tok.decode(["a"]), InputTypeError, r"ids\[0\]"),
        (lambda: tok.decode([1.5]), InputTypeError, "float"),
        (lambda: tok.decode(None), InputTypeError, "NoneType"),
        (lambda: tok.decode([10**9]), TokenIdError, "out of range"),
        (lambda: tok.convert_ids_to_tokens(-1), TokenIdError, "out of range"),
        (lambda: tok.convert_ids_to_tokens("7"), InputTypeError, "str"),
        (lambda: tok.convert_tokens_to_ids(5), InputTypeError, "int"),
        (lambda: tok.convert_tokens_to_string("abc"), InputTypeError, "list of str"),
        (lambda: tok.convert_tokens_to_string(["a", None]), InputTypeError, r"tokens\[1\]"),
        (lambda: tok.get_special_tokens_mask("abc"), InputTypeError, "token_ids_0"),
        (lambda: tok.get_special_tokens_mask([1, 2], already_has_special_tokens="y"), InputTypeError, "already"),
        (lambda: tok("x").word_ids(3), InvalidInputError, "out of range"),
        (lambda: tok.pad({"input_ids": [[1, 2]]}).word_ids(), InvalidInputError, "pad"),
        (lambda: tok.batch_decode(5), InputTypeError, "sequences"),
    ]
    for call, error, words in bad:
        with pytest.raises(error, match=words):
            call()
    # an id error is also an IndexError, as list indexing would raise
    with pytest.raises(IndexError):
        tok.decode([10**9])
    assert tok.decode(torch.tensor([5, 6])) == tok.decode([5, 6])


def test_bad_construction_arguments_and_files(tmp_path):
    folder = fx.shared_model_dir("unigram")
    with pytest.raises(InputTypeError, match="model_max_length"):
        Tokenizer.from_pretrained(folder, model_max_length="512")
    with pytest.raises(InvalidInputError, match="model_max_length"):
        Tokenizer.from_spm(folder / "spm.model", model_max_length=-5)
    (tmp_path / "spm.model").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(InvalidInputError, match="SentencePiece model"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "spm.model").write_bytes((folder / "spm.model").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="tokenizer_config.json"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"added_tokens_decoder": {"x": {"content": "[MASK]"}}}')
    with pytest.raises(InvalidInputError, match="must be an integer"):
        Tokenizer.from_pretrained(tmp_path)
