"""Interpretability: DeBERTa's attention split into content and position terms, per layer and head.

* ``explain_attention`` / ``decompose_attention`` (decompose.py): the terms, scores and probabilities;
* summaries.py: per-head numbers (term shares, positional heads, distance profiles, special-token
  heads, entropy, order sensitivity);
* plots.py: matplotlib PNGs;  page.py: one self-contained interactive HTML page;
* ablation.py: ``switch_off_terms`` to measure what a term contributes.
"""

from .ablation import switch_off_terms
from .decompose import AttentionExplanation, LayerAttention, decompose_attention, explain_attention

__all__ = ["AttentionExplanation", "LayerAttention", "decompose_attention", "explain_attention",
           "switch_off_terms"]
