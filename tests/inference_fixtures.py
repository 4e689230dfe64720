"""Offline test checkpoints for the inference and CLI tests.

Each builder trains a small SentencePiece vocabulary on real text found on this machine (gettext
catalogs, falling back to /usr/share/common-licenses), builds a tiny randomly initialised fastdeberta
model on top of it and saves both with ``save_pretrained``. Results are cached for the whole test
session in one temporary folder, removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import gettext
import glob
import io
import random
import shutil
import tempfile
from pathlib import Path

_ROOT: Path | None = None


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="fastdeberta-inference-tests-"))
        atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    return _ROOT


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[str, ...]:
    """A few thousand real sentences: English licence texts plus translated UI strings."""
    lines: list[str] = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        try:
            text = Path(path).read_text(encoding="utf-8", errors="ignore")
        except OSError:
            continue
        lines.extend(x.strip() for x in text.splitlines() if len(x.strip()) > 20)
    for path in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo"))[:60]:
        try:
            with open(path, "rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog
        except Exception:  # unreadable catalogs are skipped
            continue
        lines.extend(v for k, v in sorted(catalog.items(), key=str) if k and isinstance(v, str) and v.strip())
    if len(lines) < 200:  # a bare container: synthesise something varied enough for a 400-piece vocabulary
        rng = random.Random(0)
        words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "away", "from", "home", "software",
                 "license", "copy", "free", "program", "work", "terms", "you", "may", "distribute"]
        lines += [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(3000)]
    random.Random(0).shuffle(lines)
    return tuple(lines[:20000])


def sentences() -> list[str]:
    """Short varied test sentences of different lengths."""
    base = [
        "The cat sat on the mat.",
        "Free software is a matter of liberty, not price.",
        "You may copy and distribute verbatim copies of the Program's source code.",
        "Hello",
        "",
        "This program is distributed in the hope that it will be useful, but WITHOUT ANY WARRANTY; "
        "without even the implied warranty of MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.",
        "a b c d e f g",
        "Überprüfen Sie die Einstellungen",
        "license terms",
        "ok",
    ]
    return base + [c[:120] for c in corpus()[:14]]


@functools.cache
def spm_model_bytes(vocab_size: int = 800) -> bytes:
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=out, vocab_size=vocab_size, model_type="unigram",
        character_coverage=0.9995, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]",
        bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]", num_threads=2, minloglevel=2,
        input_sentence_size=20000, shuffle_input_sentence=False, hard_vocab_limit=False,
    )
    return out.getvalue()


def _tokenizer(vocab_size: int = 800):
    from fastdeberta.tokenizer import Tokenizer

    folder = _root() / f"spm-{vocab_size}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spm.model").write_bytes(spm_model_bytes(vocab_size))
    return Tokenizer.from_spm(folder / "spm.model")


TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def v3_config(vocab_size: int, **overrides):
    from fastdeberta.config import DebertaConfig

    data = dict(model_type="deberta-v2", vocab_size=vocab_size, relative_attention=True, position_buckets=16,
                max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
                pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0, **TINY)
    data.update(overrides)
    return DebertaConfig.from_dict(data)


def _save(model, name: str) -> Path:
    folder = _root() / name
    model.save_pretrained(folder)
    return folder


@functools.cache
def mlm_checkpoint() -> Path:
    """A v3-style masked-LM checkpoint with an Enhanced Mask Decoder and an spm tokenizer."""
    import torch

    from fastdeberta.model.deberta import DebertaForMaskedLM

    tok = _tokenizer()
    torch.manual_seed(0)
    model = DebertaForMaskedLM(v3_config(tok.vocab_size), enhanced_mask_decoder=True)
    # random weights give near-uniform predictions; sharpen the output so that rankings are clear
    with torch.no_grad():
        model.deberta.embeddings.word_embeddings.weight.mul_(25)
    model.tokenizer = tok
    return _save(model, "mlm-v3")


@functools.cache
def v1_checkpoint() -> Path:
    """A v1-style (model_type "deberta") masked-LM checkpoint with the same spm vocabulary."""
    import torch

    from fastdeberta.config import DebertaConfig
    from fastdeberta.model.deberta import DebertaForMaskedLM

    tok = _tokenizer()
    torch.manual_seed(1)
    config = DebertaConfig.from_dict(dict(model_type="deberta", vocab_size=tok.vocab_size, relative_attention=True,
                                          max_relative_positions=-1, pos_att_type="c2p|p2c",
                                          position_biased_input=True, type_vocab_size=0, **TINY))
    model = DebertaForMaskedLM(config)
    model.tokenizer = tok
    return _save(model, "mlm-v1")


@functools.cache
def classifier_checkpoint() -> Path:
    """A v2-style sequence-classification checkpoint (3 labels, convolution layer)."""
    import torch

    from fastdeberta.model.deberta import DebertaForSequenceClassification

    tok = _tokenizer()
    torch.manual_seed(2)
    config = v3_config(tok.vocab_size, share_att_key=False, position_buckets=-1, conv_kernel_size=3,
                       num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"},
                       label2id={"neg": 0, "neu": 1, "pos": 2})
    model = DebertaForSequenceClassification(config)
    model.tokenizer = tok
    return _save(model, "cls-v2")


def with_unreadable_tokenizer(folder: Path, source: Path) -> Path:
    """``folder`` (created) holding ``source``'s config and weights beside a bpe_encoder.bin that is
    not a torch file, so the weights load and the tokenizer does not."""
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((source / name).read_bytes())
    (folder / "bpe_encoder.bin").write_bytes(b"not a torch file")
    return folder


def hub_cache_of(folder: Path, cache: Path, repo_id: str, sha: str = "c" * 40) -> Path:
    """Put the files of ``folder`` into ``cache`` as the Hub repo ``repo_id`` at revision ``sha`` (= main),
    in the standard Hugging Face cache layout; returns ``cache``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        if path.is_dir():   # e.g. the sentence-transformers 1_Pooling folder
            shutil.copytree(path, snapshot / path.name)
        else:
            shutil.copyfile(path, snapshot / path.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return cache
