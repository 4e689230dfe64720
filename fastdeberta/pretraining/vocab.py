"""SentencePiece vocabularies with DeBERTa's layout of special tokens.

DeBERTa-v3's ``spm.model`` numbers ``[PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3`` and then the learned
pieces; ``[MASK]`` is not a piece of the model but an added token with the next id, ``len(spm)``.
Both fastdeberta's :class:`~fastdeberta.Tokenizer` and transformers' ``DebertaV2Tokenizer`` append it
there, and ``tokenizer_config.json`` records it in ``added_tokens_decoder`` so no reader has to guess.

``vocab_size`` below always counts every id the model's embedding needs: the pieces *and* [MASK].
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Iterable
from typing import Any

from ..errors import FastDebertaError
from ..io import atomic_folder

__all__ = ["SPECIAL_PIECES", "train_sentencepiece", "sample_lines", "train_tokenizer", "VocabTrainingError"]

# (name, piece) in id order: the ids the SentencePiece trainer is told to reserve
SPECIAL_PIECES = (("pad", "[PAD]"), ("bos", "[CLS]"), ("eos", "[SEP]"), ("unk", "[UNK]"))
# lines longer than this (in bytes) are skipped by the SentencePiece trainer; we cut them instead
MAX_LINE_BYTES = 4000


class VocabTrainingError(FastDebertaError, ValueError):
    """The vocabulary cannot be trained from the given text with the given settings."""


def train_sentencepiece(
    texts: Iterable[str],
    num_pieces: int,
    *,
    seed: int = 0,
    exact_size: bool = True,
    character_coverage: float = 0.9995,
    num_threads: int | None = None,
) -> bytes:
    """Train a unigram SentencePiece model; returns the serialized ``spm.model``.

    num_pieces: pieces of the model including the four specials ([MASK] is not among them).
    exact_size: fail if the text cannot support ``num_pieces`` pieces (otherwise the model may be
        smaller, which small demo corpora need).
    """
    import sentencepiece as spm

    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    ids = {f"{name}_id": i for i, (name, _) in enumerate(SPECIAL_PIECES)}
    pieces = {f"{name}_piece": piece for name, piece in SPECIAL_PIECES}
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type="unigram",
            vocab_size=num_pieces,
            hard_vocab_limit=exact_size,
            character_coverage=character_coverage,
            max_sentence_length=MAX_LINE_BYTES + 16,
            num_threads=num_threads or os.cpu_count() or 1,
            minloglevel=2,
            **ids,
            **pieces,
        )
    except RuntimeError as err:
        raise VocabTrainingError(
            f"SentencePiece could not train {num_pieces} pieces: {str(err).rstrip('.')}. Give it more text or ask for a "
            "smaller --vocab-size."
        ) from err
    return model.getvalue()


def sample_lines(inputs: Iterable[str | os.PathLike], max_lines: int | None, seed: int = 0) -> list[str]:
    """The non-empty lines of the documents in ``inputs`` (cut to :data:`MAX_LINE_BYTES`), or a uniform
    sample of ``max_lines`` of them (reservoir sampling, reproducible from ``seed``), in file order.

    inputs: ``.txt`` / ``.jsonl`` files or folders of them, read as :func:`~fastdeberta.pretraining.data.iter_documents` does.
    """
    from .data import iter_documents

    rng = random.Random(seed)
    sample: list[tuple[int, str]] = []
    seen = 0
    for document in iter_documents(list(inputs)):
        for line in document.split("\n"):
            line = line.strip()
            if not line:
                continue
            line = line.encode("utf-8")[:MAX_LINE_BYTES].decode("utf-8", errors="ignore")
            if max_lines is None or len(sample) < max_lines:
                sample.append((seen, line))
            else:
                slot = rng.randrange(seen + 1)
                if slot < max_lines:
                    sample[slot] = (seen, line)
            seen += 1
    sample.sort()
    return [line for _, line in sample]


def train_tokenizer(
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    vocab_size: int,
    *,
    max_sentences: int | None = 2_000_000,
    seed: int = 0,
    model_max_length: int = 512,
    exact_size: bool = True,
    character_coverage: float = 0.9995,
) -> dict[str, Any]:
    """Train a vocabulary on text and save a tokenizer folder both fastdeberta and transformers load.

    inputs: ``.txt`` files (one sentence or paragraph per line; blank lines separate documents),
        ``.jsonl`` files (``{"text": ...}`` per line) or folders of both.

    vocab_size: ids in all, [MASK] included: the SentencePiece model gets ``vocab_size - 1`` pieces
        ([PAD]=0, [CLS]=1, [SEP]=2, [UNK]=3, learned pieces) and [MASK] is ``vocab_size - 1``.
    max_sentences: train on a uniform sample of this many lines (bounds time and memory); None: all.
    Writes ``spm.model``, ``tokenizer_config.json``, ``special_tokens_map.json`` and
    ``added_tokens.json`` into ``output`` (atomically: the folder appears complete or not at all).
    Returns a summary (sizes, timings, sample tokenization).
    """
    from ..tokenizer import Tokenizer

    if vocab_size < len(SPECIAL_PIECES) + 2:
        raise VocabTrainingError(f"vocab_size must leave room for the specials, [MASK] and pieces; got {vocab_size}")
    from .data import input_files

    files = input_files(inputs)
    start = time.perf_counter()
    lines = sample_lines(files, max_sentences, seed)
    if not lines:
        raise VocabTrainingError(f"the input files contain no text: {[str(f) for f in files]}")
    read_seconds = time.perf_counter() - start
    proto = train_sentencepiece(lines, vocab_size - 1, seed=seed, exact_size=exact_size,
                                character_coverage=character_coverage)
    train_seconds = time.perf_counter() - start - read_seconds
    with atomic_folder(output) as folder:
        (folder / "spm.model").write_bytes(proto)
        tokenizer = Tokenizer.from_spm(folder / "spm.model", model_max_length=model_max_length)
        tokenizer.save_pretrained(folder)
    tokenizer = Tokenizer.from_pretrained(output)
    return {
        "output": str(output),
        "vocab_size": tokenizer.vocab_size,
        "pieces": tokenizer.vocab_size - 1,
        "mask_token_id": tokenizer.mask_token_id,
        "files": [str(f) for f in files],
        "sentences": len(lines),
        "read_seconds": round(read_seconds, 1),
        "train_seconds": round(train_seconds, 1),
    }
