"""Small generated data and tiny checkpoints for the fine-tuning tests (no network).

The tasks are synthetic but need the model to read the text: the class of a sentence is the
keyword it contains, an entity is a name from a fixed list (names split into several sub-word
pieces, so alignment matters), an answer is the word after "is". Keywords and filler are words the
test tokenizer (trained on licence texts) keeps whole.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

CLASSES = ["software", "license", "program"]
FILLER = ["the", "a", "with", "and", "free", "copy", "work", "file", "system", "of", "to", "you", "may", "this"]
NAMES = ["Alice", "Bob", "Carol"]
PLACES = ["Paris", "Rome", "Oslo"]


def sentence(rng: random.Random, keyword: str, length: int = 6) -> str:
    words = [rng.choice(FILLER) for _ in range(length)]
    words.insert(rng.randrange(len(words) + 1), keyword)
    return " ".join(words)


def classification_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(CLASSES)
        rows.append({"text": sentence(rng, label), "label": label})
    return rows


def regression_rows(n: int, seed: int = 0) -> list[dict]:
    """Target: 0.5 per 'free' in the sentence plus 0.25 (fractional, so read as regression)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        count = rng.randrange(3)
        words = [rng.choice(["the", "file", "system", "work"]) for _ in range(5)] + ["free"] * count
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": 0.5 * count + 0.25})
    return rows


def ner_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(3, 7)):
            r = rng.random()
            if r < 0.2:
                tokens.append(rng.choice(NAMES))
                tags.append("B-PER")
            elif r < 0.35:
                tokens += ["New", rng.choice(PLACES)]
                tags += ["B-LOC", "I-LOC"]
            else:
                tokens.append(rng.choice(FILLER))
                tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def qa_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        answer = rng.choice(CLASSES + NAMES)
        before = " ".join(rng.choice(FILLER) for _ in range(rng.randint(1, 4)))
        after = " ".join(rng.choice(FILLER) for _ in range(rng.randint(1, 4)))
        context = f"{before} the answer is {answer} {after} ."
        start = context.index(f"is {answer}") + 3
        rows.append({"id": f"q{i}", "question": "what is the answer ?", "context": context,
                     "answers": {"text": [answer], "answer_start": [start]}})
    return rows


def choice_rows(n: int, seed: int = 0) -> list[dict]:
    """The right choice repeats the keyword named in the question."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        keyword = rng.choice(CLASSES)
        others = [a for a in CLASSES if a != keyword]
        choices = [keyword] + others
        rng.shuffle(choices)
        rows.append({"question": sentence(rng, keyword, 3), "choices": choices, "label": choices.index(keyword)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    import csv

    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


@functools.cache
def tokenizer():
    from inference_fixtures import _tokenizer

    return _tokenizer()


def tiny_config(**overrides):
    from inference_fixtures import v3_config

    data = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    data.update(overrides)
    return v3_config(tokenizer().vocab_size, **data)


def base_checkpoint(folder: Path, seed: int = 0, **overrides) -> Path:
    """A randomly initialised tiny v3 encoder (no head) with the test tokenizer, saved in ``folder``."""
    import torch

    from fastdeberta import DebertaModel

    torch.manual_seed(seed)
    model = DebertaModel(tiny_config(**overrides))
    model.tokenizer = tokenizer()
    model.save_pretrained(folder)
    return folder
