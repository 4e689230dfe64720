"""Dynamic masking for masked-language-model pretraining: token, whole-word and n-gram (span) selection.

Every function is pure: the randomness comes from the ``torch.Generator`` passed in, so a batch masked
twice with generators in the same state is masked identically, and a training loop gets fresh masks
every epoch simply by drawing from one generator that it saves with its checkpoint.

Selection (which positions are predicted), for ``probability`` p (15%):

* ``"token"``: each token independently with probability p (BERT).
* ``"whole_word"``: each *word* with probability p, then all of its pieces. A word starts at a
  SentencePiece piece that begins with "▁", at a lone punctuation piece, and after any special token
  (the rule of DeBERTa's ``part_of_whole_word``); see :func:`word_start_table`.
* ``"span"``: n-grams of whole words, n drawn from 1..``max_span`` with weights 1/n (as the original
  DeBERTa's NGramMaskGenerator and XLNet do), span starts placed at random with the rate that makes
  the expected share of selected words p.

Special tokens and padding are never selected. Each selected token then becomes [MASK] (80%), a random
non-special token (10%) or stays as it is (10%). Labels hold the original id at selected positions and
-100 (ignored by the loss) everywhere else.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

import torch

__all__ = ["IGNORE_INDEX", "STRATEGIES", "mask_tokens", "select_tokens", "replace_selected", "word_start_table",
           "word_index", "span_start_rate"]

IGNORE_INDEX = -100
STRATEGIES = ("token", "whole_word", "span")
WORD_START = "\u2581"     # SentencePiece's marker for a preceding space


def word_start_table(pieces: Sequence[str], special_ids: Iterable[int] = ()) -> torch.Tensor:
    """``(V,)`` bool: whether each vocabulary id starts a new word.

    pieces: the token string of every id (``tokenizer.convert_ids_to_tokens(range(V))``).
    True for pieces beginning with "▁", single punctuation or whitespace characters, and specials.
    """
    table = torch.zeros(len(pieces), dtype=torch.bool)
    for idx, piece in enumerate(pieces):
        lone_symbol = len(piece) == 1 and (piece.isspace() or unicodedata.category(piece).startswith("P"))
        table[idx] = piece.startswith(WORD_START) or lone_symbol
    for idx in special_ids:
        if 0 <= idx < len(pieces):
            table[idx] = True
    return table


def word_index(starts: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` long: the index of the word each position belongs to, counted from 0 in each row.

    starts: ``(B, L)`` bool, True where a new word begins (a row's first position always does).
    """
    starts = starts.clone()
    starts[:, 0] = True
    return starts.long().cumsum(dim=1) - 1


def span_start_rate(probability: float, max_span: int) -> float:
    """The rate of span starts per word that covers ``probability`` of the words on average.

    Span lengths n = 1..max_span have weights 1/n. A word is covered unless no span starting 0..n-1
    words before it is long enough: ``1 - prod_k (1 - q * P(n > k)) = probability``, solved for q.
    """
    weights = torch.tensor([1.0 / n for n in range(1, max_span + 1)], dtype=torch.float64)
    weights /= weights.sum()
    longer_than = [weights[k:].sum().item() for k in range(max_span)]     # P(n > k)
    low, high = 0.0, 1.0
    for _ in range(60):                                                   # bisection: coverage grows with q
        q = (low + high) / 2
        uncovered = 1.0
        for tail in longer_than:
            uncovered *= 1.0 - q * tail
        low, high = (q, high) if 1.0 - uncovered < probability else (low, q)
    return (low + high) / 2


def _uniform(shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator)


def select_tokens(
    eligible: torch.Tensor,
    *,
    probability: float = 0.15,
    strategy: str = "token",
    word_starts: torch.Tensor | None = None,
    max_span: int = 3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(B, L)`` bool: the positions to predict.

    eligible: ``(B, L)`` bool, False at special tokens and padding (never selected).
    word_starts: ``(B, L)`` bool, True where a word begins; required by "whole_word" and "span".
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown masking strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    if strategy == "token":
        return (_uniform(eligible.shape, generator) < probability) & eligible
    if word_starts is None:
        raise ValueError(f"strategy {strategy!r} needs word_starts (see word_start_table)")
    # an ineligible position (special, padding) is a word of its own, so no word spans across it
    words = word_index(word_starts | ~eligible | torch.roll(~eligible, 1, dims=1))       # (B, L)
    if strategy == "whole_word":
        chosen_words = _uniform(eligible.shape, generator) < probability                # (B, W<=L)
    else:
        if max_span < 1:
            raise ValueError(f"max_span must be at least 1, got {max_span}")
        chosen_words = _span_cover(eligible.shape, probability, max_span, generator)
    return chosen_words.gather(1, words) & eligible


def _span_cover(shape: torch.Size, probability: float, max_span: int,
                generator: torch.Generator | None) -> torch.Tensor:
    """``(B, W)`` bool: words covered by spans that start at random words with random lengths."""
    starts = _uniform(shape, generator) < span_start_rate(probability, max_span)
    weights = torch.tensor([1.0 / n for n in range(1, max_span + 1)])
    lengths = torch.multinomial(weights, shape.numel(), replacement=True, generator=generator).view(shape) + 1
    covered = starts.clone()
    for k in range(1, max_span):                  # a start at word j covers j..j+length-1
        reach = starts & (lengths > k)
        covered[:, k:] |= reach[:, :-k]
    return covered


def replace_selected(
    input_ids: torch.Tensor,
    selected: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    mask_ratio: float = 0.8,
    random_ratio: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(masked_ids, labels)``: selected positions become [MASK] (``mask_ratio``), a random non-special
    id (``random_ratio``) or stay unchanged (the rest); labels are -100 where not selected."""
    if mask_ratio < 0 or random_ratio < 0 or mask_ratio + random_ratio > 1:
        raise ValueError(f"mask_ratio ({mask_ratio}) and random_ratio ({random_ratio}) must be >= 0 with a sum <= 1")
    special = sorted({int(i) for i in special_ids} | {int(mask_token_id)})
    to_mask = selected & (_uniform(input_ids.shape, generator) < mask_ratio)
    # of the tokens not masked, random_ratio / (1 - mask_ratio) get a random id; the rest stay
    rest = 1.0 - mask_ratio
    to_random = selected & ~to_mask & (_uniform(input_ids.shape, generator) < (random_ratio / rest if rest else 0.0))

    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[[i for i in special if 0 <= i < vocab_size]] = False
    replacements = allowed.nonzero().squeeze(1)
    if len(replacements) == 0:
        raise ValueError("vocab_size leaves no non-special token to draw random replacements from")
    random_ids = replacements[torch.randint(len(replacements), input_ids.shape, generator=generator)]

    masked = input_ids.clone()
    masked[to_mask] = int(mask_token_id)
    masked[to_random] = random_ids[to_random]
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[selected] = input_ids[selected]
    return masked, labels


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Iterable[int] = (),
    attention_mask: torch.Tensor | None = None,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
    strategy: str = "token",
    word_starts: torch.Tensor | None = None,
    max_span: int = 3,
    mask_ratio: float = 0.8,
    random_ratio: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a batch for MLM. Returns ``(masked_input_ids, labels)``, both ``(B, L)``; ``input_ids`` is
    not modified.

    special_ids: ids never selected and never drawn as random replacements (e.g. ``special_ids_of(tokenizer)``);
        [MASK] is always among them. Positions where ``attention_mask == 0`` are never selected either.
    word_starts: ``(V,)`` bool table over the vocabulary (:func:`word_start_table`), required by the
        "whole_word" and "span" strategies.
    generator: a seeded CPU ``torch.Generator`` makes the result reproducible.
    """
    special = sorted({int(i) for i in special_ids} | {int(mask_token_id)})
    ids = input_ids.long()
    cpu_ids = ids.cpu()
    eligible = ~torch.isin(cpu_ids, torch.tensor(special, dtype=torch.long))
    if attention_mask is not None:
        eligible &= attention_mask.cpu().bool()
    starts = None
    if strategy != "token":
        if word_starts is None:
            raise ValueError(f"strategy {strategy!r} needs word_starts, the (vocab_size,) table of word_start_table")
        starts = word_starts.cpu()[cpu_ids.clamp(0, len(word_starts) - 1)]
    selected = select_tokens(eligible, probability=probability, strategy=strategy, word_starts=starts,
                             max_span=max_span, generator=generator)
    masked, labels = replace_selected(cpu_ids, selected, mask_token_id=mask_token_id, vocab_size=vocab_size,
                                      special_ids=special, mask_ratio=mask_ratio, random_ratio=random_ratio,
                                      generator=generator)
    return masked.to(ids.device), labels.to(ids.device)
