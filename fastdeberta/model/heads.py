"""Task heads. Parameter names follow transformers so checkpoints load in both directions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DebertaConfig
from ..errors import ConfigError
from .layers import LayerNorm, activation


class LegacyPredictionTransform(nn.Module):
    """dense (D -> E) -> act -> LayerNorm; the ``cls.predictions.transform`` layout."""

    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embed_dim)
        self.act = activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.embed_dim, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class LegacyPredictions(nn.Module):
    """``cls.predictions.*``: transform, then scores against the (tied) word embeddings + bias."""

    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.transform = LegacyPredictionTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), word_embeddings, self.bias)    # (B, L, V)


class LegacyMLMHead(nn.Module):
    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.predictions = LegacyPredictions(config)

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return self.predictions(hidden, word_embeddings)


class LMPredictionHead(nn.Module):
    """``lm_predictions.lm_head.*`` (the original DeBERTa layout): dense (D -> D) -> act -> LayerNorm,
    scores against the word embeddings + bias."""

    def __init__(self, config: DebertaConfig):
        super().__init__()
        if config.embed_dim != config.hidden_size:
            raise ConfigError(
                f"the lm_predictions MLM head needs embedding_size == hidden_size, got {config.embed_dim} "
                f"and {config.hidden_size}; use legacy=True (cls.predictions layout) for this config."
            )
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.LayerNorm(self.act(self.dense(hidden))), word_embeddings, self.bias)


class LMHead(nn.Module):
    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.lm_head = LMPredictionHead(config)

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden, word_embeddings)


class ContextPooler(nn.Module):
    """The [CLS] vector -> dropout -> dense -> act: the sentence vector for classification heads."""

    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.pooler_size, config.pooler_size)
        self.dropout = nn.Dropout(config.pooler_dropout)
        self.act = activation(config.pooler_hidden_act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(self.dropout(hidden[:, 0])))               # (B, P)


# ----------------------------------------------------------------------------- losses
def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None,
                                 num_labels: int) -> torch.Tensor:
    """Loss by ``problem_type``; when unset: MSE for one label, cross-entropy over labels >= 0 for
    class ids, soft-label cross-entropy for label distributions (transformers' behaviour)."""
    if problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype)) if num_labels == 1 \
            else F.mse_loss(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels).float(), labels.view(-1).long())
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    if num_labels == 1:
        return F.mse_loss(logits.view(-1), labels.view(-1).to(logits.dtype))
    if labels.dim() == 1 or labels.size(-1) == 1:
        labels = labels.view(-1).long()
        keep = labels >= 0
        if not bool(keep.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[keep].float(), labels[keep])
    return -(torch.log_softmax(logits.float(), dim=-1) * labels).sum(-1).mean()
