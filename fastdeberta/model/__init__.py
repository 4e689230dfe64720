"""The DeBERTa model: embeddings, disentangled attention, encoder, heads."""

from .attention import DisentangledSelfAttention
from .deberta import (
    TASKS,
    DebertaForMaskedLM,
    DebertaForMultipleChoice,
    DebertaForQuestionAnswering,
    DebertaForSequenceClassification,
    DebertaForTokenClassification,
    DebertaModel,
    DebertaPreTrained,
)

__all__ = [
    "TASKS",
    "DebertaForMaskedLM",
    "DebertaForMultipleChoice",
    "DebertaForQuestionAnswering",
    "DebertaForSequenceClassification",
    "DebertaForTokenClassification",
    "DebertaModel",
    "DebertaPreTrained",
    "DisentangledSelfAttention",
]
