"""Input embeddings: word (+ token type) (+ absolute position, only if position_biased_input)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import DebertaConfig
from ..errors import InvalidInputError
from .layers import Dropout, LayerNorm


class DebertaEmbeddings(nn.Module):
    """Token embeddings -> (optional projection to hidden size) -> LayerNorm -> zero at padding.

    ``position_embeddings`` exists when the encoder adds absolute positions at the input
    (``position_biased_input``) or when ``keep_absolute_positions`` is set: DeBERTa checkpoints
    trained with the Enhanced Mask Decoder carry an absolute table that only the EMD uses.
    """

    def __init__(self, config: DebertaConfig, keep_absolute_positions: bool = False):
        super().__init__()
        E, D = config.embed_dim, config.hidden_size
        self.position_biased_input = config.position_biased_input
        pad = config.pad_token_id if config.pad_token_id is not None and config.pad_token_id < config.vocab_size else None
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=pad)
        if config.position_biased_input or keep_absolute_positions:
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, E)
        else:
            self.position_embeddings = None
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E) if config.type_vocab_size > 0 else None
        self.embed_proj = nn.Linear(E, D, bias=False) if E != D else None
        self.LayerNorm = LayerNorm(D, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def absolute_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        """(B or 1, L) ids -> (B or 1, L, E) absolute position embeddings."""
        if not torch.compiler.is_compiling() and int(position_ids.max()) >= self.max_positions:
            raise InvalidInputError(
                f"position id {int(position_ids.max())} is past the absolute position table "
                f"(max_position_embeddings={self.max_positions}); truncate the input to "
                f"{self.max_positions} tokens."
            )
        return self.position_embeddings(position_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,              # (B, L)
        token_type_ids: torch.Tensor | None,         # (B, L)
        position_ids: torch.Tensor | None,           # (B, L) or (1, L)
        mask: torch.Tensor | None,                   # (B, L) 1 = token, 0 = padding
        inputs_embeds: torch.Tensor | None = None,   # (B, L, E)
    ) -> torch.Tensor:
        embeddings = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, L, E)
        if self.position_biased_input:
            embeddings = embeddings + self.absolute_positions(position_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(embeddings.shape[:2], dtype=torch.long, device=embeddings.device)
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if self.embed_proj is not None:
            embeddings = self.embed_proj(embeddings)                           # (B, L, D)
        embeddings = self.LayerNorm(embeddings)
        if mask is not None:
            embeddings = embeddings * mask.unsqueeze(-1).to(embeddings.dtype)
        return self.dropout(embeddings)
