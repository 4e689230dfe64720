"""Vocabulary training: DeBERTa's special-token layout, loading by fastdeberta and transformers, the CLI."""

from __future__ import annotations

import json
import random

import pytest

from fastdeberta.pretraining.vocab import VocabTrainingError, sample_lines, train_tokenizer

WORDS = ("the of and to in is was for on that with as by at from his her they this which be are have one "
         "river mountain city people water language music history science century government church "
         "king queen army school island north south energy light animal plant small large early later "
         "became known called used built found written played moved opened between during after before "
         "system number family village road station bridge tower garden forest winter summer morning").split()


def _corpus(path, lines=3000, seed=0):
    rng = random.Random(seed)
    text = []
    for i in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 14))]
        text.append(" ".join(words).capitalize() + ("." if i % 3 else ","))
        if i % 7 == 6:
            text.append("")                                     # document breaks are ignored by training
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    corpus = _corpus(folder / "corpus.txt")
    summary = train_tokenizer([corpus], folder / "tok", 200, max_sentences=2000, seed=0, model_max_length=128)
    return folder, summary


def test_special_token_layout(trained):
    import sentencepiece as spm

    folder, summary = trained
    assert summary["vocab_size"] == 200 and summary["mask_token_id"] == 199 and summary["sentences"] == 2000
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tok/spm.model"))
    assert sp.get_piece_size() == 199                           # pieces only; [MASK] comes after them
    assert [sp.id_to_piece(i) for i in range(4)] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    config = json.loads((folder / "tok/tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "DebertaV2Tokenizer" and config["model_max_length"] == 128
    assert config["added_tokens_decoder"]["199"]["content"] == "[MASK]"
    assert json.loads((folder / "tok/special_tokens_map.json").read_text())["mask_token"] == "[MASK]"
    assert sorted(p.name for p in (folder / "tok").iterdir()) == [
        "added_tokens.json", "special_tokens_map.json", "spm.model", "tokenizer_config.json"]


def test_fastdeberta_and_transformers_give_equal_ids(trained):
    from transformers import DebertaV2Tokenizer

    from fastdeberta import Tokenizer

    folder, _ = trained
    ours = Tokenizer.from_pretrained(folder / "tok")
    theirs = DebertaV2Tokenizer.from_pretrained(str(folder / "tok"))
    assert len(ours) == len(theirs) == 200
    for name in ("pad", "cls", "sep", "unk", "mask"):
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id") == \
            {"pad": 0, "cls": 1, "sep": 2, "unk": 3, "mask": 199}[name]
    texts = ["The river was known as the early road.", "A [MASK] city, between mountain and forest!",
             "unseen wörds ☃ and  spaces", "Pair one", ""]
    for text in texts:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
    assert ours("Pair one", "pair two")["input_ids"] == theirs("Pair one", "pair two")["input_ids"]
    assert ours.convert_ids_to_tokens(list(range(200))) == theirs.convert_ids_to_tokens(list(range(200)))


def test_same_seed_same_vocabulary(trained, tmp_path):
    folder, _ = trained
    train_tokenizer([folder / "corpus.txt"], tmp_path / "again", 200, max_sentences=2000, seed=0)
    assert (tmp_path / "again/spm.model").read_bytes() == (folder / "tok/spm.model").read_bytes()


def test_sample_lines_is_a_reproducible_uniform_sample(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" + ("\n" if i % 5 == 0 else "") for i in range(1000)))
    everything = sample_lines([path], None)
    assert everything == [f"line {i}" for i in range(1000)]
    sample = sample_lines([path], 100, seed=1)
    assert len(sample) == 100 and sample == sample_lines([path], 100, seed=1)
    assert sample != sample_lines([path], 100, seed=2)
    numbers = [int(s.split()[1]) for s in sample]
    assert numbers == sorted(numbers)                            # file order kept
    assert 30 < sum(n < 500 for n in numbers) < 70               # spread over the whole file


def test_sample_lines_reads_jsonl_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n\nthree\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "four\nfive"}) + "\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not read\n")
    assert sample_lines([tmp_path], None) == ["one", "two", "three", "four", "five"]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="input not found"):
        train_tokenizer([tmp_path / "missing.txt"], tmp_path / "out", 300)
    small = _corpus(tmp_path / "small.txt", lines=20)
    with pytest.raises(VocabTrainingError, match="smaller --vocab-size"):
        train_tokenizer([small], tmp_path / "out", 5000)
    assert not (tmp_path / "out").exists()                      # nothing half-written
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(VocabTrainingError, match="no text"):
        train_tokenizer([tmp_path / "empty.txt"], tmp_path / "out", 300)


def test_cli_train_tokenizer(tmp_path, capsys):
    from fastdeberta.cli.main import main

    corpus = _corpus(tmp_path / "c.txt", lines=400)
    code = main(["train-tokenizer", "--input", str(tmp_path), "--vocab-size", "5000", "--output",
                 str(tmp_path / "tok"), "--allow-smaller", "--max-sentences", "0"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == [str(corpus)]
    assert summary["vocab_size"] < 5000 and summary["mask_token_id"] == summary["vocab_size"] - 1
    assert main(["train-tokenizer", "--input", str(corpus), "--vocab-size", "300", "--output",
                 str(tmp_path / "x"), "--max-sentences", "-1"]) == 2
    assert "--max-sentences" in capsys.readouterr().err
