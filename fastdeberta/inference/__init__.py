"""Inference helpers: dynamic batching, sentence embeddings and task pipelines."""

from __future__ import annotations

from .batching import Batch, make_batches, plan_batches, restore_order
from .embed import POOLING, encode, pool, quantize_embeddings, similarity
from .pipelines import (
    SUPPORTED_TASKS,
    FeatureExtractionPipeline,
    FillMaskPipeline,
    Pipeline,
    SentenceEmbeddingPipeline,
    pipeline,
    register_pipeline,
)

__all__ = [
    "POOLING",
    "SUPPORTED_TASKS",
    "Batch",
    "FeatureExtractionPipeline",
    "FillMaskPipeline",
    "Pipeline",
    "SentenceEmbeddingPipeline",
    "encode",
    "make_batches",
    "pipeline",
    "plan_batches",
    "pool",
    "quantize_embeddings",
    "register_pipeline",
    "restore_order",
    "similarity",
]
