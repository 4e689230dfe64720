"""The original DeBERTa v1 vocabulary file ``bpe_encoder.bin``.

The tests build such a file in the original layout from a byte-level BPE they train on the machine's
gettext catalogs, with GPT-2 ids and DeBERTa ids deliberately different, and check fastdeberta's ids
against a plain re-statement of the original algorithm written here:

    text --GPT-2 regex--> words --UTF-8 bytes, byte-to-unicode--> symbols --lowest-rank merge first--> tokens
    token --encoder--> GPT-2 id g --symbol str(g) numbered in order of first appearance in
    [PAD], [CLS], [SEP], [UNK], *dict_map, [MASK]--> DeBERTa id
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for a non-installed checkout

import tokenizer_fixtures as fx  # noqa: E402

from fastdeberta.tokenizer import Tokenizer  # noqa: E402

torch = pytest.importorskip("torch")
regex = pytest.importorskip("regex")

pytestmark = pytest.mark.skipif(
    len(fx.gettext_strings()) < 1000, reason="needs gettext catalogs in /usr/share/locale"
)

GPT2_WORDS = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
FILLERS = ["madeupword0000", "madeupword0001"]


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


class OriginalGPT2Ids:
    """DeBERTa ids of a text as the original GPT2Tokenizer defines them, from the file's three fields."""

    def __init__(self, state: dict):
        self.encoder = state["encoder"]
        self.ranks = {tuple(pair): rank for rank, pair in enumerate(state["vocab"])}
        self.numbers: dict[str, int] = {}
        for symbol in ["[PAD]", "[CLS]", "[SEP]", "[UNK]", *(s for s, _ in state["dict_map"]), "[MASK]"]:
            if symbol not in self.numbers:
                self.numbers[symbol] = len(self.numbers)
        self.bytes = byte_to_unicode()

    def bpe(self, word: str) -> list[str]:
        parts = list(word)
        while len(parts) > 1:
            best = min(zip(parts, parts[1:]), key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def __call__(self, text: str) -> list[int]:
        ids = []
        for word in GPT2_WORDS.findall(text):
            symbols = "".join(self.bytes[b] for b in word.encode("utf-8"))
            ids.extend(self.numbers[str(self.encoder[token])] for token in self.bpe(symbols))
        return ids


def write_bpe_encoder(trained: Path, out: Path, seed: int = 0) -> dict:
    """A bpe_encoder.bin in the original layout, from a trained vocab.json + merges.txt.

    GPT-2 ids are a shuffle of the trained tokens, and dict_map lists them in another shuffled order,
    with a repeated symbol and filler words, so GPT-2 id, DeBERTa id and trained id all differ.
    """
    vocab = json.loads((trained / "vocab.json").read_text(encoding="utf-8"))
    lines = (trained / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    tokens = [t for t in vocab if not (t.startswith("[") and t.endswith("]") and len(t) > 2)]
    rng = random.Random(seed)
    rng.shuffle(tokens)
    encoder = {token: gpt2_id for gpt2_id, token in enumerate(tokens)}
    symbols = [str(gpt2_id) for gpt2_id in range(len(tokens))]
    rng.shuffle(symbols)
    dict_map = [(s, rng.randint(1, 10**6)) for s in symbols]
    dict_map.insert(7, (symbols[3], 5))  # a repeated symbol keeps its first number
    dict_map += [(f, 0) for f in FILLERS]
    state = {"encoder": encoder, "vocab": merges, "dict_map": dict_map}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / "bpe_encoder.bin")
    return state


@pytest.fixture(scope="module")
def corpus():
    return fx.split_corpus(fx.gettext_strings())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    folder = tmp_path_factory.mktemp("trained-bpe")
    fx.train_bytelevel_bpe(folder, corpus[0][:6000], vocab_size=1500)
    return folder


@pytest.fixture(scope="module")
def original(tmp_path_factory, trained):
    folder = tmp_path_factory.mktemp("bpe-encoder")
    state = write_bpe_encoder(trained, folder)
    return folder, state


@pytest.fixture(scope="module")
def texts(corpus):
    return [t for t in list(corpus[1][:600]) + fx.EDGE_CASES if "[MASK]" not in t]


def test_ids_equal_the_original_algorithm(original, texts):
    folder, state = original
    tok = Tokenizer.from_pretrained(folder)
    assert tok.backend == "bpe"
    reference = OriginalGPT2Ids(state)
    n_symbols = len({s for s, _ in state["dict_map"]})
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == 4 + n_symbols == reference.numbers["[MASK]"]
    assert tok.vocab_size == 5 + n_symbols
    # the ids really are remapped: GPT-2 ids and DeBERTa ids differ for most tokens
    first = state["dict_map"][0][0]
    assert tok.convert_tokens_to_ids(next(t for t, g in state["encoder"].items() if str(g) == first)) == 4
    changed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long edge cases warn about model_max_length
        for text in texts:
            expected = reference(text)
            assert tok.encode(text, add_special_tokens=False) == expected, text
            assert tok.encode(text) == [1, *expected, 2]
            gpt2 = [state["encoder"][t] for w in GPT2_WORDS.findall(text) for t in _bpe_words(reference, w)]
            changed += gpt2 != expected
    assert changed > len(texts) // 2
    # filler words keep their own string and number
    assert tok.convert_tokens_to_ids(FILLERS) == [reference.numbers[f] for f in FILLERS]


def _bpe_words(reference: OriginalGPT2Ids, word: str) -> list[str]:
    return reference.bpe("".join(reference.bytes[b] for b in word.encode("utf-8")))


def test_pairs_mask_and_truncation(original):
    folder, state = original
    tok = Tokenizer.from_pretrained(folder)
    reference = OriginalGPT2Ids(state)
    a, b = "Datei nicht gefunden", "Fichier introuvable"
    enc = tok(a, b)
    assert enc["input_ids"] == [1, *reference(a), 2, *reference(b), 2]
    assert enc["token_type_ids"] == [0] * (len(reference(a)) + 2) + [1] * (len(reference(b)) + 1)
    masked = tok.encode("Datei [MASK] gefunden", add_special_tokens=False)
    assert masked == [*reference("Datei"), tok.mask_token_id, *reference(" gefunden")]
    cut = tok(a, b, truncation="only_second", max_length=len(reference(a)) + 4)
    assert cut["input_ids"] == [1, *reference(a), 2, reference(b)[0], 2]


def test_equals_transformers_on_the_equivalent_vocab_json(tmp_path, original, texts):
    """vocab.json + merges.txt written here from the format's definition give the same ids in transformers."""
    transformers = pytest.importorskip("transformers")
    folder, state = original
    reference = OriginalGPT2Ids(state)
    token_of = {str(g): t for t, g in state["encoder"].items()}
    vocab = {token_of.get(symbol, symbol): number for symbol, number in reference.numbers.items()}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{x} {y}\n" for x, y in state["vocab"]), encoding="utf-8"
    )
    hf = transformers.DebertaTokenizer.from_pretrained(str(tmp_path))
    tok = Tokenizer.from_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (
            tok(texts, padding=True, truncation=True, max_length=40)["input_ids"]
            == hf(texts, padding=True, truncation=True, max_length=40)["input_ids"]
        )
    assert tok.mask_token_id == hf.mask_token_id


def test_save_pretrained_writes_vocab_json_and_merges(tmp_path, original, texts):
    folder, state = original
    tok = Tokenizer.from_pretrained(folder)
    out = tmp_path / "saved"
    tok.save_pretrained(out)
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "bpe_encoder.bin").exists()
    again = Tokenizer.from_pretrained(out)
    batch = [*texts[:200], "The [MASK] is here"]
    assert again(batch)["input_ids"] == tok(batch)["input_ids"]
    assert again.mask_token_id == tok.mask_token_id and again.vocab_size == tok.vocab_size
    saved_vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    reference = OriginalGPT2Ids(state)
    for token, gpt2_id in list(state["encoder"].items())[:50]:
        assert saved_vocab[token] == reference.numbers[str(gpt2_id)]
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(str(out))
    assert auto(texts[:50])["input_ids"] == tok(texts[:50])["input_ids"]


def test_unpickling_is_weights_only(tmp_path):
    """A file that needs more than plain containers is refused, and nothing in it runs."""
    marker = tmp_path / "was-executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "model").mkdir()
    torch.save({"encoder": Payload(), "vocab": [], "dict_map": []}, tmp_path / "model" / "bpe_encoder.bin")
    with pytest.raises(ValueError, match=r"weights_only=True.*vocab\.json \+ merges\.txt"):
        Tokenizer.from_pretrained(tmp_path / "model")
    assert not marker.exists()


def test_bad_files(tmp_path, original):
    folder, state = original

    def load(name: str, content) -> Tokenizer:
        path = tmp_path / name
        path.mkdir()
        if isinstance(content, bytes):
            (path / "bpe_encoder.bin").write_bytes(content)
        else:
            torch.save(content, path / "bpe_encoder.bin")
        return Tokenizer.from_pretrained(path)

    with pytest.raises(ValueError, match=r"lacks \['dict_map'\].*found \['encoder', 'vocab'\]"):
        load("keys", {"encoder": {}, "vocab": []})
    with pytest.raises(ValueError, match="weights_only"):
        load("garbage", b"not a torch file at all")
    dropped = state["dict_map"][0][0]
    incomplete = dict(state, dict_map=[e for e in state["dict_map"] if e[0] != dropped])
    token = next(t for t, g in state["encoder"].items() if str(g) == dropped)
    with pytest.raises(ValueError, match=r"1 of the \d+ BPE tokens have no DeBERTa id") as err:
        load("incomplete", incomplete)
    assert repr(token) in str(err.value)
    with pytest.raises(ValueError, match="unexpected 'vocab' merge"):
        load("merges", dict(state, vocab=["a b"]))


def test_vocab_json_wins_over_bpe_encoder(tmp_path, original, trained):
    folder, _ = original
    both = tmp_path / "both"
    both.mkdir()
    for src in (folder / "bpe_encoder.bin", trained / "vocab.json", trained / "merges.txt"):
        (both / src.name).write_bytes(src.read_bytes())
    text = "Datei nicht gefunden"
    assert Tokenizer.from_pretrained(both).encode(text) == Tokenizer.from_pretrained(trained).encode(text)
    assert Tokenizer.from_pretrained(both).encode(text) != Tokenizer.from_pretrained(folder).encode(text)
