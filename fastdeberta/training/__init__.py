"""Training utilities: masked-language-model pretraining (the base later pretraining work builds on)."""

from .mlm import mask_tokens, special_ids_of, train_mlm

__all__ = ["mask_tokens", "special_ids_of", "train_mlm"]
