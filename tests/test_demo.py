"""Masked-LM training utilities (fast) and the end-to-end demo (slow)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch

from fastdeberta import DebertaForMaskedLM, preset_config
from fastdeberta.training import mask_tokens, train_mlm

PAD, CLS, SEP, UNK, MASK = 0, 1, 2, 3, 99
SPECIAL = [PAD, CLS, SEP, UNK]
VOCAB = 100


def _batch(rows: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] words [SEP] [PAD]... rows of varying length, word ids in 4..98."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((rows, length), PAD)
    attention = torch.zeros((rows, length), dtype=torch.long)
    lengths = torch.randint(4, length + 1, (rows,), generator=g)
    for r, n in enumerate(lengths.tolist()):
        ids[r, 0] = CLS
        ids[r, 1:n - 1] = torch.randint(4, MASK, (n - 2,), generator=g)
        ids[r, n - 1] = SEP
        attention[r, :n] = 1
    return ids, attention


def test_mask_tokens_rates_and_labels():
    ids, attention = _batch(400, 128)
    g = torch.Generator().manual_seed(123)
    masked, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL,
                                 attention_mask=attention, generator=g)
    assert masked.shape == ids.shape and labels.shape == ids.shape
    eligible = (ids >= 4) & (ids != MASK)
    selected = labels != -100

    # never special tokens or padding; labels are the original ids where selected, -100 elsewhere
    assert not selected[~eligible].any()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])

    rate = selected.sum().item() / eligible.sum().item()
    assert 0.14 < rate < 0.16
    n = selected.sum().item()
    as_mask = (masked[selected] == MASK).sum().item() / n
    replaced = ((masked[selected] != MASK) & (masked[selected] != ids[selected])).sum().item() / n
    kept = (masked[selected] == ids[selected]).sum().item() / n
    assert 0.78 < as_mask < 0.82
    # random replacements can hit the original id by chance (1 in 95): "kept" gets that share
    assert 0.085 < replaced < 0.115
    assert 0.085 < kept < 0.115
    # random replacements are never special tokens or [MASK]
    random_ids = masked[selected & (masked != MASK) & (masked != ids)]
    assert not torch.isin(random_ids, torch.tensor(SPECIAL + [MASK])).any()

    # the input is not modified and a seed reproduces the result
    again = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL,
                        attention_mask=attention, generator=torch.Generator().manual_seed(123))
    assert torch.equal(again[0], masked) and torch.equal(again[1], labels)


def test_mask_tokens_without_attention_mask_still_skips_special_ids():
    ids, _ = _batch(50, 32)
    masked, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIAL,
                                 probability=1.0, generator=torch.Generator().manual_seed(0))
    special = torch.isin(ids, torch.tensor(SPECIAL))
    assert (labels[special] == -100).all()
    assert (labels[~special] == ids[~special]).all()       # probability 1: every word is selected
    assert torch.equal(masked[special], ids[special])


def _tiny_model(seed: int = 0) -> DebertaForMaskedLM:
    torch.manual_seed(seed)
    config = preset_config("deberta-v3-xsmall", vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                           position_buckets=16)
    return DebertaForMaskedLM(config)


def test_train_mlm_lowers_loss_and_is_deterministic():
    # 8 rows "[CLS] a b a b ... [SEP]", each with its own pair: learnable from the context in a few steps
    ids = torch.tensor([[CLS] + [4 + 2 * r, 5 + 2 * r] * 11 + [SEP] for r in range(8)])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def run() -> list[float]:
        model = _tiny_model()
        assert model.enhanced_mask_decoder
        return train_mlm(model, itertools.repeat(batch), steps=30, lr=1e-2, warmup=3,
                         mask_token_id=MASK, special_ids=SPECIAL, seed=0, progress=False)

    history = run()
    assert len(history) == 30
    first, last = sum(history[:3]) / 3, sum(history[-3:]) / 3
    assert last < 0.7 * first, (first, last)
    assert run() == history


class _ToyTokenizer:
    """Whitespace tokenizer over a fixed word list, with the tokenizer call signature train_mlm uses."""

    pad_token_id, cls_token_id, sep_token_id, unk_token_id, mask_token_id = PAD, CLS, SEP, UNK, MASK
    all_special_ids = [PAD, CLS, SEP, UNK, MASK]

    def __init__(self, words: list[str]):
        self.ids = {w: i + 4 for i, w in enumerate(words)}

    def __call__(self, texts, padding=True, truncation=True, max_length=16, return_tensors="pt"):
        rows = [[CLS] + [self.ids.get(w, UNK) for w in t.split()][: max_length - 2] + [SEP] for t in texts]
        width = max(map(len, rows))
        ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": (ids != PAD).long()}


def test_train_mlm_on_texts():
    words = "open save close the file folder changes could not be unable to".split()
    texts = ["could not open the file", "unable to save the changes", "close the folder",
             "could not save the file", "unable to open the folder"] * 4
    history = train_mlm(_tiny_model(), texts, tokenizer=_ToyTokenizer(words), steps=5, batch_size=4,
                        max_length=8, seed=0, progress=False)
    assert len(history) == 5 and all(h > 0 for h in history)


def test_clean_line():
    from fastdeberta.demo import clean_line

    assert clean_line("Could not open file “%s”: %s") == "Could not open file “ ”"
    assert clean_line("  -s, --stats        show statistics after each query\n") == "show statistics after each query"
    assert clean_line("_Save the document as") == "Save the document as"
    assert clean_line("OK") is None
    assert clean_line("%s: %d") is None


@pytest.mark.slow
def test_demo_train_tiny_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "fastdeberta.demo", "--train-tiny", "--out", str(out),
                             "--steps", "20"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "model" / "spm.model").is_file()
    for expected in ("fastdeberta info", "fill-mask", "cosine", "NOT"):
        assert expected in result.stdout


def test_demo_on_the_shipped_model(tmp_path):
    """make demo's main job: offline, on the shipped model: info, fill-mask, embeddings, attention page."""
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "fastdeberta.demo", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for expected in ("fastdeberta info", "fill-mask with the generator", "cosine similarity", "layer 0: c2c",
                     "fastdeberta/deberta-v3-tiny-en"):
        assert expected in result.stdout, expected
    assert (out / "attention" / "attention.html").is_file()
