"""Classification and regression metrics (plain Python / torch; no scikit-learn needed)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["accuracy", "f1_scores", "macro_f1", "multilabel_scores", "pearson", "spearman"]


def accuracy(gold: Sequence[int], predicted: Sequence[int]) -> float:
    if not gold:
        return 0.0
    return sum(int(g == p) for g, p in zip(gold, predicted)) / len(gold)


def _prf(true_positive: int, predicted: int, actual: int) -> tuple[float, float, float]:
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def f1_scores(gold: Sequence[int], predicted: Sequence[int]) -> dict[int, float]:
    """F1 of each class that occurs in ``gold`` or ``predicted`` (scikit-learn's label set)."""
    out = {}
    for label in sorted(set(gold) | set(predicted)):
        tp = sum(1 for g, p in zip(gold, predicted) if g == p == label)
        out[label] = _prf(tp, sum(1 for p in predicted if p == label), sum(1 for g in gold if g == label))[2]
    return out


def macro_f1(gold: Sequence[int], predicted: Sequence[int]) -> float:
    """Unweighted mean of the per-class F1 (as ``sklearn.metrics.f1_score(average="macro")``)."""
    scores = f1_scores(gold, predicted)
    return sum(scores.values()) / len(scores) if scores else 0.0


def multilabel_scores(gold: torch.Tensor, predicted: torch.Tensor) -> dict[str, float]:
    """Micro/macro F1 and subset accuracy of 0/1 matrices of shape (N, num_labels)."""
    gold, predicted = gold.bool(), predicted.bool()
    tp = (gold & predicted).sum(0)
    n_pred, n_gold = predicted.sum(0), gold.sum(0)
    micro = _prf(int(tp.sum()), int(n_pred.sum()), int(n_gold.sum()))
    per_class = [_prf(int(tp[c]), int(n_pred[c]), int(n_gold[c]))[2] for c in range(gold.shape[1])
                 if n_pred[c] or n_gold[c]]
    return {"micro_precision": micro[0], "micro_recall": micro[1], "micro_f1": micro[2],
            "macro_f1": sum(per_class) / len(per_class) if per_class else 0.0,
            "subset_accuracy": float((gold == predicted).all(1).float().mean())}


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (0.0 when either side is constant)."""
    a = torch.as_tensor(list(x), dtype=torch.float64)
    b = torch.as_tensor(list(y), dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator else 0.0


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of the (tie-averaged) ranks."""
    return pearson(_ranks(list(x)), _ranks(list(y)))
