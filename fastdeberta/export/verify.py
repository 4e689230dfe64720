"""Checks run on every export: fp32 parity with PyTorch at several lengths, int8 accuracy.

Both compare the ONNX graph in onnxruntime with the PyTorch model it came from (the fast path, as
users run it), on the real (unpadded) tokens of padded batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inference.batching import pad_rows
from ..model.deberta import DebertaPreTrained
from .engine import make_session

CHECK_LENGTHS = (1, 7, 128, 300, 512)
UNBOUNDED_CHECK_LENGTH = 512          # checked up to this length when the model has no hard limit
SAMPLE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital and most populous city of France.",
    "She opened the window to let the fresh air into the room.",
    "The committee will meet again next week to discuss the budget.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "He forgot his umbrella and got soaked on the way home.",
    "The museum holds a large collection of ancient coins.",
    "Our train was delayed by almost an hour because of the snow.",
    "Reading before bed helps many people fall asleep faster.",
    "The new library opens on Monday with extended hours.",
    "Farmers in the valley grow apples, pears and cherries.",
    "The doctor asked him to take the medicine twice a day.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The concert was cancelled at the last minute due to rain.",
    "My grandmother bakes bread every Sunday morning.",
    "The river flows through three countries before reaching the sea.",
)


def parity_lengths(traced_length: int, max_length: int | None, lengths: tuple[int, ...] | None = None) -> list[int]:
    """1, 7, 128, 300, 512 and one longer than the traced length, each capped at ``max_length``."""
    cap = max_length or max(UNBOUNDED_CHECK_LENGTH, *(lengths or (0,)))
    wanted = set(lengths or CHECK_LENGTHS) | {2 * traced_length + 1}
    return sorted({max(1, min(n, cap)) for n in wanted})


def random_batch(model: DebertaPreTrained, names: list[str], length: int, seed: int) -> dict[str, torch.Tensor]:
    """Rows of random ids (special ids < 5 avoided), padded to ``length`` at 3 different lengths
    (L, L - 2, L / 2); a (batch, choices, length) layout for multiple choice."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    real = sorted({length, max(1, length - 2), max(1, (length + 1) // 2)}, reverse=True)
    rows = [torch.randint(min(5, vocab - 1), vocab, (n,), generator=gen).tolist() for n in real]
    types = [[0] * (n // 2) + [1] * (n - n // 2) for n in real]
    ids, mask, token_types = pad_rows(rows, model.config.pad_token_id or 0, types)
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}
    if model.task == "multiple-choice":
        batch = {k: torch.stack([v, v.flip(0)], dim=1) for k, v in batch.items()}     # (B, 2, L)
    return {n: batch[n] for n in names}


def run_pytorch(model: DebertaPreTrained, inputs: dict[str, torch.Tensor], outputs: list[str]) -> dict[str, np.ndarray]:
    from .onnx import GraphModule

    with torch.inference_mode():
        values = GraphModule(model, list(inputs), outputs)(*inputs.values())
    return {name: v.float().numpy() for name, v in zip(outputs, values)}


def run_session(session: Any, inputs: dict[str, torch.Tensor], outputs: list[str]) -> dict[str, np.ndarray]:
    feed = {name: tensor.numpy() for name, tensor in inputs.items()}
    return dict(zip(outputs, session.run(outputs, feed)))


def real_tokens(name: str, value: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The entries of ``value`` at real tokens (outputs with a sequence axis), else all of it."""
    if name in ("last_hidden_state", "start_logits", "end_logits") or value.ndim == 3:
        return value[mask.reshape(value.shape[:2]).astype(bool)]
    return value


def check_parity(model: DebertaPreTrained, path: Path, names: list[str], outputs: list[str], *,
                 lengths: tuple[int, ...] | None, traced_length: int, max_length: int | None,
                 tolerance: float) -> dict[str, Any]:
    """onnxruntime vs PyTorch at each length: max abs difference per output on real tokens, allowed
    ``tolerance * max(1, max |reference|)`` (a bound on the relative error for outputs larger than 1)."""
    session = make_session(path)
    checks = []
    for i, length in enumerate(parity_lengths(traced_length, max_length, lengths)):
        inputs = random_batch(model, names, length, seed=i)
        expected, actual = run_pytorch(model, inputs, outputs), run_session(session, inputs, outputs)
        mask = inputs["attention_mask"].numpy()
        for name in outputs:
            ref, got = real_tokens(name, expected[name], mask), real_tokens(name, actual[name], mask)
            scale = float(np.abs(ref).max()) if ref.size else 0.0
            diff = float(np.abs(got - ref).max()) if ref.size else 0.0
            checks.append({"output": name, "batch": int(inputs["input_ids"].shape[0]), "length": length,
                           "max_abs_diff": diff, "max_abs_reference": scale,
                           "allowed": tolerance * max(1.0, scale)})
    passed = all(c["max_abs_diff"] <= c["allowed"] and np.isfinite(c["max_abs_diff"]) for c in checks)
    return {"passed": passed, "tolerance": tolerance, "rule": "max abs diff <= tolerance * max(1, max |reference|)",
            "max_abs_diff": max(c["max_abs_diff"] for c in checks), "lengths": sorted({c["length"] for c in checks}),
            "checks": checks}


# ----------------------------------------------------------------------------- int8 accuracy
def sample_batch(model: DebertaPreTrained, names: list[str]) -> tuple[dict[str, torch.Tensor], np.ndarray | None]:
    """Sample sentences (random ids without a tokenizer); for masked-LM one token per row is masked.
    Returns the inputs and a bool array of the masked positions (None: every real token counts)."""
    tok = model.tokenizer
    if tok is not None:
        rows = [list(map(int, r)) for r in tok(list(SAMPLE_TEXTS), truncation=True, max_length=64)["input_ids"]]
    else:
        gen = torch.Generator().manual_seed(1234)
        vocab = model.config.vocab_size
        rows = [torch.randint(min(5, vocab - 1), vocab, (8 + 3 * i,), generator=gen).tolist() for i in range(16)]
    masked = None
    if model.task == "masked-lm" and tok is not None and tok.mask_token_id is not None:
        for row in rows:
            row[len(row) // 2] = tok.mask_token_id
        masked = [len(row) // 2 for row in rows]
    ids, mask, types = pad_rows(rows, model.config.pad_token_id or 0)
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if model.task == "multiple-choice":
        inputs = {k: torch.stack([v, v.roll(1, 0)], dim=1) for k, v in inputs.items()}   # (N, 2, L)
    positions = None
    if masked is not None:
        positions = np.zeros(ids.shape, dtype=bool)
        positions[np.arange(len(rows)), masked] = True
    return {n: inputs[n] for n in names}, positions


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean()) if a.size else 1.0


def int8_accuracy(model: DebertaPreTrained, path: Path, names: list[str], outputs: list[str]) -> dict[str, Any]:
    """The int8 graph against the fp32 PyTorch model on sample inputs: hidden-state cosine, and the
    agreement of the head's decisions (fill-mask top-1, predicted class / tag / span ends)."""
    inputs, masked = sample_batch(model, names)
    reference = run_pytorch(model, inputs, outputs)
    quantized = run_session(make_session(path), inputs, outputs)
    mask = inputs["attention_mask"].numpy()
    report: dict[str, Any] = {"samples": int(inputs["input_ids"].shape[0]),
                              "inputs": "sample sentences" if model.tokenizer is not None else "random token ids"}
    if "last_hidden_state" in outputs:
        a = real_tokens("last_hidden_state", reference["last_hidden_state"], mask)
        b = real_tokens("last_hidden_state", quantized["last_hidden_state"], mask)
        cosine = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
        report["hidden_state_cosine_mean"] = float(cosine.mean())
        report["hidden_state_cosine_min"] = float(cosine.min())
    task = model.task
    if task == "masked-lm":
        where = masked if masked is not None else mask.astype(bool)
        report["fill_mask_top1_agreement"] = _agreement(reference["logits"][where], quantized["logits"][where])
        report["fill_mask_positions"] = "masked tokens" if masked is not None else "every real token"
    elif task in ("sequence-classification", "multiple-choice"):
        report["classification_agreement"] = _agreement(reference["logits"], quantized["logits"])
    elif task == "token-classification":
        report["classification_agreement"] = _agreement(real_tokens("logits", reference["logits"], mask),
                                                        real_tokens("logits", quantized["logits"], mask))
    elif task == "question-answering":
        for name in ("start_logits", "end_logits"):
            ref = np.where(mask.astype(bool), reference[name], -np.inf)
            got = np.where(mask.astype(bool), quantized[name], -np.inf)
            report[f"{name.split('_')[0]}_agreement"] = _agreement(ref, got)
    return report
