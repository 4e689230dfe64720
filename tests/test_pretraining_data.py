"""Pretraining data: corpus cleaning, masking statistics, packing, the memory-mapped dataset."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
import torch

from fastdeberta.pretraining import corpus as C
from fastdeberta.pretraining.data import (
    DataFormatError,
    PackedDataset,
    epoch_permutation,
    iter_documents,
    pack_corpus,
    pack_documents,
)
from fastdeberta.pretraining.masking import (
    IGNORE_INDEX,
    mask_tokens,
    span_start_rate,
    word_start_table,
)

PAD, CLS, SEP, UNK, MASK = 0, 1, 2, 3, 99
SPECIAL = [PAD, CLS, SEP, UNK]
VOCAB = 100
# ids 4..49 start a word ("▁..."), 50..98 continue one
WORD_START_IDS = range(4, 50)


def _word_table() -> torch.Tensor:
    pieces = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"] + [f"\u2581w{i}" if i in WORD_START_IDS else f"c{i}"
                                                     for i in range(4, VOCAB - 1)] + ["[MASK]"]
    return word_start_table(pieces, SPECIAL + [MASK])


def _batch(rows: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] pieces [SEP] [PAD]... rows of varying length; piece ids in 4..98."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((rows, length), PAD)
    lengths = torch.randint(length // 2, length + 1, (rows,), generator=g)
    for r, n in enumerate(lengths.tolist()):
        ids[r, 0] = CLS
        ids[r, 1:n - 1] = torch.randint(4, MASK, (n - 2,), generator=g)
        ids[r, n - 1] = SEP
    return ids, (ids != PAD).long()


def _mask(strategy: str, ids: torch.Tensor, attention: torch.Tensor, seed: int = 1, **kw):
    return mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL, attention_mask=attention,
                       generator=torch.Generator().manual_seed(seed), strategy=strategy,
                       word_starts=_word_table(), **kw)


def _words(row: torch.Tensor) -> list[list[int]]:
    """Positions of each word of a row (a word: a word-start piece and the continuation pieces after it)."""
    words: list[list[int]] = []
    for pos, tok in enumerate(row.tolist()):
        if tok in SPECIAL:
            words.append([])
        elif tok in WORD_START_IDS or not words or not words[-1]:
            words.append([pos])
        else:
            words[-1].append(pos)
    return [w for w in words if w]


# ------------------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("strategy", ["token", "whole_word", "span"])
def test_masking_rates_specials_and_labels(strategy):
    ids, attention = _batch(300, 128)
    masked, labels = _mask(strategy, ids, attention)
    selected = labels != IGNORE_INDEX
    eligible = (ids >= 4) & (ids != MASK)
    assert not selected[~eligible].any()                      # specials and padding never selected
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])     # nothing else changes
    rate = selected.sum().item() / eligible.sum().item()
    assert 0.135 < rate < 0.165, rate
    n = selected.sum().item()
    as_mask = (masked[selected] == MASK).sum().item() / n
    kept = (masked[selected] == ids[selected]).sum().item() / n
    assert 0.77 < as_mask < 0.83
    assert 0.08 < kept < 0.125                                 # 10% kept + random draws of the same id
    random_ids = masked[selected & (masked != MASK) & (masked != ids)]
    assert not torch.isin(random_ids, torch.tensor(SPECIAL + [MASK])).any()


@pytest.mark.parametrize("strategy", ["whole_word", "span"])
def test_whole_word_and_span_cover_whole_words(strategy):
    ids, attention = _batch(200, 96, seed=3)
    _, labels = _mask(strategy, ids, attention, seed=5)
    selected = labels != IGNORE_INDEX
    partial = 0
    for r in range(len(ids)):
        for word in _words(ids[r]):
            hits = selected[r, word]
            partial += bool(hits.any() and not hits.all())
    assert partial == 0


def test_span_lengths_follow_one_over_n():
    """Runs of selected words: lengths 1..3 (merged neighbours aside), mean near the 1/n weights' 18/11."""
    ids = torch.full((400, 128), 10)                          # every piece its own word
    ids[:, 0], ids[:, -1] = CLS, SEP
    _, labels = _mask("span", ids, torch.ones_like(ids), seed=7, max_span=3)
    selected = (labels != IGNORE_INDEX)[:, 1:-1]
    rate = selected.float().mean().item()
    assert 0.14 < rate < 0.16
    runs = []
    for row in selected.tolist():
        run = 0
        for flag in row + [False]:
            if flag:
                run += 1
            elif run:
                runs.append(run)
                run = 0
    runs_t = torch.tensor(runs, dtype=torch.float)
    # overlapping / adjacent spans merge into longer runs, so the mean is a little above 18/11 = 1.64
    assert 1.6 < runs_t.mean().item() < 1.95
    assert (runs_t == 1).float().mean().item() > 0.4          # single words are the most common span


def test_span_start_rate_solves_the_coverage_equation():
    q = span_start_rate(0.15, 3)
    tails = [1.0, 5 / 11, 2 / 11]                             # P(n > k) for weights 1, 1/2, 1/3
    uncovered = 1.0
    for t in tails:
        uncovered *= 1 - q * t
    assert abs((1 - uncovered) - 0.15) < 1e-9
    assert span_start_rate(0.15, 1) == pytest.approx(0.15)


def test_masking_is_deterministic_and_token_mode_matches_training_import():
    from fastdeberta.training import mask_tokens as training_mask_tokens

    ids, attention = _batch(16, 64)
    a = _mask("span", ids, attention, seed=11)
    b = _mask("span", ids, attention, seed=11)
    c = _mask("span", ids, attention, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert training_mask_tokens is mask_tokens                # one implementation under both names


def test_rtd_ratios_mask_every_selected_token():
    ids, attention = _batch(50, 64)
    masked, labels = _mask("token", ids, attention, mask_ratio=1.0, random_ratio=0.0)
    selected = labels != IGNORE_INDEX
    assert selected.any() and (masked[selected] == MASK).all()
    with pytest.raises(ValueError, match="mask_ratio"):
        _mask("token", ids, attention, mask_ratio=0.9, random_ratio=0.2)


def test_word_start_table_rules():
    table = word_start_table(["[PAD]", "\u2581the", "ing", ",", "\u2581", "x", "[MASK]"], special_ids=[0, 6])
    assert table.tolist() == [True, True, False, True, True, False, True]


def test_masking_rejects_bad_options():
    ids, attention = _batch(2, 16)
    with pytest.raises(ValueError, match="strategy"):
        _mask("words", ids, attention)
    with pytest.raises(ValueError, match="word_starts"):
        mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL, strategy="span")
    with pytest.raises(ValueError, match="probability"):
        _mask("token", ids, attention, probability=1.5)


# ------------------------------------------------------------------------------------------- packing
def _docs(seed: int = 0, count: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(4, 99, size=int(rng.integers(1, 60))).tolist() for _ in range(count)]


@pytest.mark.parametrize("seq_length", [8, 16, 33])
def test_packing_keeps_every_token_once_in_order(seq_length):
    docs = _docs() + [[]] + _docs(1, 5)
    rows = list(pack_documents(docs, seq_length, cls_id=CLS, sep_id=SEP, pad_id=PAD))
    assert all(len(r) == seq_length for r in rows)
    assert all(r[0] == CLS for r in rows)
    content: list[int] = []
    for r in rows[:-1]:
        assert r[-1] == SEP and PAD not in r
        content.extend(r[1:-1])
    last = rows[-1]
    end = len(last)
    while last[end - 1] == PAD:
        end -= 1
    assert last[end - 1] == SEP
    content.extend(last[1:end - 1])
    assert all(r[1] != SEP for r in rows)                    # no row opens with a separator
    # separators only between documents; removing them gives back all documents' ids in order
    assert [t for t in content if t != SEP] == [t for d in docs for t in d]
    assert content.count(SEP) <= len([d for d in docs if d]) - 1


def test_packing_rejects_tiny_rows():
    with pytest.raises(ValueError, match="seq_length"):
        list(pack_documents([[5]], 2, cls_id=CLS, sep_id=SEP, pad_id=PAD))


class _CharTokenizer:
    """A stand-in tokenizer: one id per letter (a=4 ...), enough to check the pipeline's bookkeeping."""

    pad_token_id, cls_token_id, sep_token_id, unk_token_id, mask_token_id = PAD, CLS, SEP, UNK, 40

    def __len__(self) -> int:
        return 41

    def __call__(self, texts, add_special_tokens=True, verbose=True):
        assert add_special_tokens is False and verbose is False     # the pipeline adds [CLS]/[SEP] itself
        return {"input_ids": [_letter_ids(t) for t in texts]}


def _letter_ids(text: str) -> list[int]:
    return [4 + (ord(c) - 97) % 26 for c in text if c.isalpha()]


def _write_corpus(path, docs):
    path.write_text("".join(d + "\n\n" for d in docs), encoding="utf-8")


def test_pack_corpus_round_trip_split_and_determinism(tmp_path):
    rng = np.random.default_rng(0)
    docs = ["".join(chr(97 + int(x)) for x in rng.integers(0, 26, size=int(rng.integers(5, 80))))
            for _ in range(300)]
    _write_corpus(tmp_path / "a.txt", docs[:150])
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "b.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs[150:]))
    tok = _CharTokenizer()
    headers = pack_corpus([tmp_path / "a.txt", tmp_path / "more"], tok, tmp_path / "out", seq_length=16,
                          valid_fraction=0.1, seed=3, shuffle_buffer=64, batch_size=7, progress=False)
    train, valid = PackedDataset(tmp_path / "out/train.npy"), PackedDataset(tmp_path / "out/valid.npy")
    assert headers["train"]["documents"] + headers["valid"]["documents"] == 300
    assert 10 <= headers["valid"]["documents"] <= 55          # ~10% of 300, by document
    assert len(train) == headers["train"]["num_sequences"] and train.seq_length == 16
    assert np.load(tmp_path / "out/train.npy").dtype == np.uint16
    item = train[0]["input_ids"]
    assert item.dtype == torch.long and item.shape == (16,) and item[0] == CLS

    def letters(ds):
        return sorted(t for i in range(len(ds)) for t in ds[i]["input_ids"].tolist() if t >= 4)

    # every letter of every document lands in exactly one split, once
    expected = sorted(t for d in docs for t in _letter_ids(d))
    assert sorted(letters(train) + letters(valid)) == expected
    held_out = [d for d in docs if C.is_heldout(d, 0.1, 3)]
    assert letters(valid) == sorted(t for d in held_out for t in _letter_ids(d))

    again = pack_corpus([tmp_path / "a.txt", tmp_path / "more"], tok, tmp_path / "again", seq_length=16,
                        valid_fraction=0.1, seed=3, shuffle_buffer=64, batch_size=50, progress=False)
    assert np.array_equal(np.load(tmp_path / "out/train.npy"), np.load(tmp_path / "again/train.npy"))
    assert again["train"]["tokens"] == headers["train"]["tokens"]
    other = pack_corpus(tmp_path / "a.txt", tok, tmp_path / "other", seq_length=16, seed=4, progress=False)
    assert set(other) == {"train"}

    train.check_tokenizer(tok)                                 # the tokenizer it was packed with: accepted
    class _OtherMask(_CharTokenizer):
        mask_token_id = 39

    with pytest.raises(DataFormatError, match="mask_token_id: data 40 vs tokenizer 39"):
        train.check_tokenizer(_OtherMask())


def test_pack_corpus_refuses_empty_input(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    with pytest.raises(DataFormatError, match="no text"):
        pack_corpus(tmp_path / "empty.txt", _CharTokenizer(), tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").iterdir())             # no partial or temporary file left


def test_packed_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pack_corpus"):
        PackedDataset(tmp_path / "missing.npy")
    np.save(tmp_path / "flat.npy", np.arange(10, dtype=np.uint16))
    with pytest.raises(DataFormatError, match="2-d"):
        PackedDataset(tmp_path / "flat.npy")
    np.save(tmp_path / "x.npy", np.zeros((3, 8), dtype=np.uint16))
    (tmp_path / "x.json").write_text(json.dumps({"num_sequences": 4, "seq_length": 8}))
    with pytest.raises(DataFormatError, match="different runs"):
        PackedDataset(tmp_path / "x.npy")
    (tmp_path / "x.json").unlink()
    ds = PackedDataset(tmp_path / "x.npy")
    with pytest.raises(IndexError):
        ds[3]


def test_epoch_permutation_is_a_seeded_permutation():
    a, b, c = epoch_permutation(50, 0, 1), epoch_permutation(50, 0, 1), epoch_permutation(50, 0, 2)
    assert sorted(a.tolist()) == list(range(50))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_iter_documents_reads_txt_blocks_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("first line\nsecond line\n\n\n\nnext doc\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "json doc"}\n\n{"text": "  "}\n')
    assert list(iter_documents(tmp_path)) == ["first line\nsecond line", "next doc", "json doc"]
    (tmp_path / "c.jsonl").write_text('{"body": 1}\n')
    with pytest.raises(DataFormatError, match="c.jsonl:1"):
        list(iter_documents(tmp_path / "c.jsonl"))
    with pytest.raises(FileNotFoundError):
        list(iter_documents(tmp_path / "nope.txt"))


def test_folder_inputs_warn_about_skipped_files(tmp_path):
    (tmp_path / "a.txt").write_text("kept\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("markdown\n", encoding="utf-8")
    (tmp_path / ".hidden").write_text("x\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"skipped 1 file.*notes\.md"):
        assert list(iter_documents(tmp_path)) == ["kept"]
    assert list(iter_documents([tmp_path / "a.txt", tmp_path / "notes.md"])) == ["kept", "markdown"]   # named: read


# ------------------------------------------------------------------------------------ corpus cleaning
def test_normalize_dedup_and_split():
    assert C.normalize_whitespace(" a \t b\r\n\n\n  c\u00a0 d \x07") == "a b\nc d"
    docs = [C.Document("s", "Hello, world!"), C.Document("s", "Hello, world!"), C.Document("t", "hello world"),
            C.Document("t", "Another one")]
    kept, dropped = C.deduplicate(docs)
    assert [d.text for d in kept] == ["Hello, world!", "Another one"]
    assert dropped == {"exact": 1, "near": 1}
    many = [C.Document("s", f"document number {i}") for i in range(2000)]
    train, valid = C.split_documents(many, 0.05, seed=0)
    assert len(train) + len(valid) == 2000 and 60 < len(valid) < 140
    assert not {d.text for d in train} & {d.text for d in valid}
    # the split of a document does not depend on the other documents
    _, valid_half = C.split_documents(many[:1000], 0.05, seed=0)
    assert {d.text for d in valid_half} == {d.text for d in valid if int(d.text.split()[-1]) < 1000}


def test_write_and_read_documents(tmp_path):
    count, chars = C.write_documents(tmp_path / "d.txt", ["one\n\n two", "", "three"])
    assert (count, chars) == (2, len("one\ntwo") + len("three"))
    assert list(C.read_documents(tmp_path / "d.txt")) == ["one\ntwo", "three"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(C.CorpusFormatError, match="latin1.txt is not UTF-8"):
        list(C.read_documents(tmp_path / "latin1.txt"))


def test_sphinx_html_keeps_prose_drops_code_and_navigation():
    page = """<html><body><div class="related"><a href="x">next</a> | modules</div>
    <div class="body" role="main"><section><h1>textwrap<a class="headerlink" href="#">¶</a></h1>
    <p>The <code>textwrap</code> module wraps text.</p>
    <div class="highlight-python3 notranslate"><div class="highlight"><pre>print("code")</pre></div></div>
    <dl><dt class="sig sig-object py">textwrap.wrap(text)</dt><dd><p>Wraps the paragraph.<br/>Second line.</p></dd></dl>
    <table class="docutils"><tr><th><p>Code</p></th><th><p>Meaning</p></th></tr>
    <tr><td><p>%d</p></td><td><p>a day</p><p>of the month</p></td></tr></table>
    <h2>Examples</h2><p>More &amp; more.</p></section></div>
    <div class="footer">Copyright</div></body></html>"""
    sections = C.sphinx_html_sections(page)
    assert sections == ["textwrap\nThe textwrap module wraps text.\nWraps the paragraph.\nSecond line.\n"
                        "Code Meaning\n%d a day of the month",                # one line per table row
                        "Examples\nMore & more."]


def test_strip_wikitext():
    markup = """{{Infobox|name={{nested}}}}'''Anarchism''' is a [[political philosophy|philosophy]]
that rejects ({{IPA|x}}) [[hierarchy]].<ref>Source, p. 1</ref> See [http://example.org the site] for more text here.
[[File:A.jpg|thumb|A caption with [[link]]]]
{| class="wikitable"
| cell || cell
|}
== History ==
* a list item that has enough words in it
<!-- hidden comment --> Plain &amp; simple words in a sentence.
== References ==
{{reflist}} Everything after this is cut."""
    text = C.strip_wikitext(markup)
    assert text.split("\n") == [
        "Anarchism is a philosophy",
        "that rejects hierarchy. See the site for more text here.",
        "a list item that has enough words in it",
        "Plain & simple words in a sentence.",
    ]


def test_wiki_articles_skips_redirects_and_other_namespaces():
    dump = b"""<mediawiki><page><title>A</title><ns>0</ns><revision><text>Body of A</text></revision></page>
    <page><title>B</title><ns>0</ns><redirect title="A"/><revision><text>#REDIRECT [[A]]</text></revision></page>
    <page><title>Talk:A</title><ns>1</ns><revision><text>talk</text></revision></page></mediawiki>"""
    assert list(C.wiki_articles(dump)) == [("A", "Body of A")]


def test_sword_ztext_and_osis_chapters():
    book = ('<div osisID="Gen" type="book"/><title type="main">Genesis</title>'
            '<chapter n="1" sID="Gen.1"/><w lemma="x">In</w> <w>the</w> beginning<note placement="foot">a note</note>, '
            'God created .<div type="x-p"/><l>A poem line</l><chapter eID="Gen.1"/>'
            '<chapter n="2" sID="Gen.2"/>Second &amp; last.')
    data = zlib.compress(book.encode())
    index = struct.pack("<III", 0, 0, 0) + struct.pack("<III", 0, len(data), len(book.encode()))
    books = list(C.sword_ztext_books(index, data))
    assert books == [book]
    assert C.osis_chapters(books[0]) == ["In the beginning, God created.\nA poem line", "Second & last."]
    with pytest.raises(C.CorpusFormatError, match="multiple of 12"):
        list(C.sword_ztext_books(b"\x00" * 5, data))


def test_gcide_entries_and_cleaning():
    entry = ('Abuse \\A*buse"\\, v. t. To use ill; to {maltreat}.\n      [1913 Webster]\n\n'
             '            This principle shoots\n            rapidly.              --Froude.\n'
             '      [1913 Webster]\n')
    head = "00-database-info header\n"
    dictionary = (head + entry).encode()
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def number(n: int) -> str:
        digits = ""
        while True:
            digits = b64[n % 64] + digits
            n //= 64
            if not n:
                return digits

    index = (f"00-database-info\tA\t{number(len(head))}\n"
             f"Abuse\t{number(len(head))}\t{number(len(entry))}\nabuse\t{number(len(head))}\t{number(len(entry))}\n")
    entries = list(C.gcide_entries(dictionary, index))
    assert entries == [entry]                                # the shared entry once, database header skipped
    assert C.clean_gcide_entry(entries[0]) == "Abuse v. t. To use ill; to maltreat.\nThis principle shoots rapidly. — Froude."
    with pytest.raises(C.CorpusFormatError, match="line 1"):
        list(C.gcide_entries(dictionary, "broken line\n"))


def test_wordnet_fortunes_and_dialogue():
    data = ("  1 This software and database is being provided\n"
            "00001740 03 n 02 entity 0 thing(a) 1 001 @ 00001 n 0000 | that which is perceived; \"a thing\"  \n")
    assert list(C.wordnet_glosses(data)) == ['entity, thing: that which is perceived; "a thing"']
    assert C.fortune_entries("One fortune.\n%\nTwo lines\n  of verse\n%\n") == ["One fortune.", "Two lines\nof verse"]
    lines = ["hi there\thello", "how are you?\tfine."] * 3
    assert list(C.dialogue_documents(lines, turns_per_document=4)) == [
        "hi there\nhello\nhow are you?\nfine.\nhi there\nhello\nhow are you?\nfine.",
        "hi there\nhello\nhow are you?\nfine.",
    ]


def test_prepare_corpus_checksums_catch_a_changed_download(tmp_path, monkeypatch):
    import hashlib
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "prepare_corpus.py"
    spec = importlib.util.spec_from_file_location("prepare_corpus", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "prepare_corpus", module)     # dataclasses look their module up there
    spec.loader.exec_module(module)
    artefact = tmp_path / "pkg_1.0_all.deb"
    artefact.write_bytes(b"first download")
    sums = module.check_sums([artefact], tmp_path / "SHA256SUMS")
    assert sums == {artefact.name: hashlib.sha256(b"first download").hexdigest()}
    assert (tmp_path / "SHA256SUMS").read_text() == f"{sums[artefact.name]}  {artefact.name}\n"
    assert module.check_sums([artefact], tmp_path / "SHA256SUMS") == sums       # unchanged file: accepted
    artefact.write_bytes(b"tampered download")
    with pytest.raises(SystemExit, match="checksum mismatch"):
        module.check_sums([artefact], tmp_path / "SHA256SUMS")
