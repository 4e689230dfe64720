"""SQuAD v1.1 / v2.0 exact match and F1, computed as the official evaluation scripts do.

Normalisation: lowercase, drop punctuation (``string.punctuation``), drop the articles a / an / the,
collapse whitespace. EM: normalised strings equal. F1: bag-of-tokens overlap of the normalised
strings. Each question takes the best score over its gold answers; an unanswerable question (no gold
answer) scores 1 exactly when the prediction is empty. Scores are percentages, as the scripts print.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

from ..errors import InvalidInputError

__all__ = ["exact_match", "normalize_answer", "squad_scores", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not predicted_tokens or not gold_tokens:           # the v2 rule: both empty -> 1, else 0
        return float(predicted_tokens == gold_tokens)
    common = collections.Counter(predicted_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], gold: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """``predictions``: question id -> answer text ("" for no answer); ``gold``: id -> gold texts
    ([] for unanswerable). Returns exact_match and f1 (0-100) over all questions, and the same split
    into answerable (``has_answer_*``) and unanswerable (``no_answer_*``) questions when both occur."""
    missing = [qid for qid in gold if qid not in predictions]
    if missing:
        raise InvalidInputError(f"no prediction for {len(missing)} question(s), e.g. {missing[:3]}")
    em: dict[str, float] = {}
    f1: dict[str, float] = {}
    for qid, answers in gold.items():
        texts = [a for a in answers if normalize_answer(a)] or [""]   # the script drops answers that normalise to ""
        em[qid] = max(exact_match(predictions[qid], a) for a in texts)
        f1[qid] = max(token_f1(predictions[qid], a) for a in texts)

    def mean(values: dict[str, float], ids: list[str]) -> float:
        return 100.0 * sum(values[i] for i in ids) / len(ids) if ids else 0.0

    everyone = list(gold)
    out = {"exact_match": mean(em, everyone), "f1": mean(f1, everyone), "total": float(len(everyone))}
    has = [q for q in everyone if any(normalize_answer(a) for a in gold[q])]
    no = [q for q in everyone if q not in set(has)]
    if has and no:
        out.update(has_answer_exact_match=mean(em, has), has_answer_f1=mean(f1, has),
                   no_answer_exact_match=mean(em, no), no_answer_f1=mean(f1, no))
    return out
