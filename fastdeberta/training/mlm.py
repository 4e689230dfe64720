"""Masked-language-model training: BERT-style token masking and a small AdamW training loop.

``mask_tokens`` applies BERT's rule: each eligible token is selected with ``probability`` (15%);
of the selected tokens 80% become ``[MASK]``, 10% a random token and 10% stay unchanged. Labels
hold the original id at selected positions and -100 (ignored by the loss) everywhere else.
Special tokens ([CLS], [SEP], [PAD], ...) and padding are never selected.

``train_mlm`` trains a :class:`~fastdeberta.DebertaForMaskedLM` with AdamW, linear warmup then
linear decay, gradient clipping, and returns the per-step loss history. Under a fixed ``seed`` on
the same machine it is deterministic (batch order, masking and dropout all come from the seed).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

# the masking itself lives with the pretraining data code; re-exported here under its original name
from ..pretraining.masking import IGNORE_INDEX, mask_tokens
from .optim import lr_schedule, param_groups

__all__ = ["mask_tokens", "special_ids_of", "train_mlm"]


def special_ids_of(tokenizer: Any) -> list[int]:
    """The ids a tokenizer reserves for special tokens (pad, cls, sep, unk, mask)."""
    ids = getattr(tokenizer, "all_special_ids", None)
    if ids is None:
        ids = [getattr(tokenizer, f"{n}_token_id", None) for n in ("pad", "cls", "sep", "unk", "mask")]
    return sorted({int(i) for i in ids if i is not None})


def _text_batches(tokenizer: Any, texts: Sequence[str], batch_size: int, max_length: int,
                  generator: torch.Generator, group_by_length: bool) -> Iterator[Mapping[str, torch.Tensor]]:
    """Endless shuffled batches of the texts (a new permutation every epoch).

    group_by_length: within windows of 50 batches, put texts of similar length together (less
    padding, much faster on short texts); the order of the batches stays random.
    """
    if not texts:
        raise ValueError("no training texts")
    window = batch_size * 50
    while True:
        order = torch.randperm(len(texts), generator=generator).tolist()
        chunks: list[list[int]] = []
        for start in range(0, len(order), window if group_by_length else batch_size):
            part = order[start:start + (window if group_by_length else batch_size)]
            if group_by_length:
                part.sort(key=lambda i: len(texts[i]))
                chunks.extend(part[j:j + batch_size] for j in range(0, len(part), batch_size))
            else:
                chunks.append(part)
        if group_by_length:
            chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
        for chunk in chunks:
            yield tokenizer([texts[i] for i in chunk], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")


def train_mlm(
    model: nn.Module,
    data: Iterable[Mapping[str, torch.Tensor]] | Sequence[str],
    *,
    tokenizer: Any = None,
    steps: int = 1000,
    lr: float = 5e-4,
    batch_size: int = 32,
    max_length: int = 64,
    group_by_length: bool = True,
    warmup: int | float = 0.06,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
    mask_probability: float = 0.15,
    mask_token_id: int | None = None,
    special_ids: Iterable[int] | None = None,
    seed: int = 0,
    log_every: int = 0,
    time_limit: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[float]:
    """Train ``model`` (a masked-LM) for ``steps`` optimizer steps; return the loss of every step.

    data: either a sequence of strings (``tokenizer`` required; shuffled and batched into
        ``batch_size`` texts, each truncated to ``max_length`` tokens; ``group_by_length`` batches
        texts of similar length together), or an iterable of batches
        (mappings with ``input_ids`` and optionally ``attention_mask`` / ``token_type_ids``). Training
        stops early if the batch iterable runs out.
    warmup: number of warmup steps, or a fraction of ``steps`` if < 1.
    mask_token_id / special_ids: taken from ``tokenizer`` when not given.
    log_every: every this many steps, report the mean loss since the last report through ``log``
        (default: printed above the progress bar).
    time_limit: stop after this many seconds even if fewer than ``steps`` were taken (a safety net
        for slow machines; the result is then no longer reproducible step for step).
    The model is left in eval mode.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if tokenizer is not None:
        mask_token_id = tokenizer.mask_token_id if mask_token_id is None else mask_token_id
        special_ids = special_ids_of(tokenizer) if special_ids is None else special_ids
    if mask_token_id is None:
        raise ValueError("pass mask_token_id (or a tokenizer that has one)")
    special = list(special_ids or [])
    pad_id = getattr(getattr(model, "config", None), "pad_token_id", None)
    if pad_id is not None:
        special.append(int(pad_id))
    vocab_size = int(model.config.vocab_size)

    torch.manual_seed(seed)                              # dropout and anything else on the global RNG
    generator = torch.Generator().manual_seed(seed)      # batch order and masking
    if isinstance(data, Sequence) and (len(data) == 0 or isinstance(data[0], str)):
        if tokenizer is None:
            raise ValueError("training on raw texts needs a tokenizer")
        batches: Iterator[Mapping[str, torch.Tensor]] = _text_batches(
            tokenizer, data, batch_size, max_length, generator, group_by_length)
    else:
        batches = iter(data)

    warmup_steps = int(round(warmup * steps)) if isinstance(warmup, float) and warmup < 1 else int(warmup)
    optimizer = torch.optim.AdamW(param_groups(model, lr=lr, weight_decay=weight_decay), lr=lr, betas=(0.9, 0.98),
                                  eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule("linear", warmup_steps, steps))
    device = next(model.parameters()).device

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="mlm", unit="step", disable=not progress, dynamic_ncols=True)
    say = log or (lambda msg: tqdm.write(msg))
    history: list[float] = []
    started = time.perf_counter()
    model.train()
    try:
        for batch in batches:
            if len(history) >= steps:
                break
            if time_limit is not None and time.perf_counter() - started > time_limit:
                say(f"time limit of {time_limit:.0f} s reached after {len(history)} of {steps} steps")
                break
            step = len(history)
            input_ids = batch["input_ids"]
            attention_mask = batch.get("attention_mask")
            inputs, labels = mask_tokens(input_ids, mask_token_id=mask_token_id, vocab_size=vocab_size,
                                         special_ids=special, attention_mask=attention_mask,
                                         probability=mask_probability, generator=generator)
            if not (labels != IGNORE_INDEX).any():
                continue                                 # nothing selected (tiny batch): no loss to learn from
            kwargs = {"input_ids": inputs.to(device), "labels": labels.to(device)}
            if attention_mask is not None:
                kwargs["attention_mask"] = attention_mask.to(device)
            if batch.get("token_type_ids") is not None:
                kwargs["token_type_ids"] = batch["token_type_ids"].to(device)
            loss = model(**kwargs).loss
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm and max_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            history.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if log_every and len(history) % log_every == 0:
                recent = history[-log_every:]
                say(f"step {len(history):>5}/{steps}  loss {sum(recent) / len(recent):.4f}")
    finally:
        bar.close()
        model.eval()
    return history


def repeat_batch(batch: Mapping[str, torch.Tensor]) -> Iterator[Mapping[str, torch.Tensor]]:
    """The same batch forever (for overfitting checks)."""
    return itertools.repeat(batch)
