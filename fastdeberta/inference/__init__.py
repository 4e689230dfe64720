"""Inference helpers: dynamic batching, sentence embeddings and task pipelines."""

from __future__ import annotations

from .batching import Batch, make_batches, plan_batches, restore_order
from .embed import POOLING, encode, pool
from .pipelines import SUPPORTED_TASKS, FeatureExtractionPipeline, FillMaskPipeline, Pipeline, pipeline

__all__ = [
    "POOLING",
    "SUPPORTED_TASKS",
    "Batch",
    "FeatureExtractionPipeline",
    "FillMaskPipeline",
    "Pipeline",
    "encode",
    "make_batches",
    "pipeline",
    "plan_batches",
    "pool",
    "restore_order",
]
