"""fastdeberta: the complete, fast DeBERTa toolkit for PyTorch."""

from __future__ import annotations

from typing import Any

from .checkpoint import CheckpointError, load_model
from .config import ConfigError, DebertaConfig, preset_config
from .errors import (
    FastDebertaError,
    InputTypeError,
    InvalidInputError,
    TokenizerLoadError,
    UnsafePathError,
)
from .hub import ModelNotFoundError
from .model import (
    TASKS,
    DebertaForMaskedLM,
    DebertaForMultipleChoice,
    DebertaForQuestionAnswering,
    DebertaForSequenceClassification,
    DebertaForTokenClassification,
    DebertaModel,
)

__version__ = "0.1.0"

from_pretrained = load_model


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import fastdeberta` stays light.
    if name == "Tokenizer":
        from .tokenizer import Tokenizer

        return Tokenizer
    if name == "pipeline":
        from .inference.pipelines import pipeline

        return pipeline
    if name == "encode":
        from .inference.embed import encode

        return encode
    if name == "explain_attention":
        from .interpret import explain_attention

        return explain_attention
    raise AttributeError(f"module 'fastdeberta' has no attribute {name!r}")


__all__ = [
    "TASKS",
    "CheckpointError",
    "ConfigError",
    "DebertaConfig",
    "DebertaForMaskedLM",
    "DebertaForMultipleChoice",
    "DebertaForQuestionAnswering",
    "DebertaForSequenceClassification",
    "DebertaForTokenClassification",
    "DebertaModel",
    "FastDebertaError",
    "InputTypeError",
    "InvalidInputError",
    "ModelNotFoundError",
    "Tokenizer",
    "TokenizerLoadError",
    "UnsafePathError",
    "encode",
    "explain_attention",
    "from_pretrained",
    "pipeline",
    "preset_config",
]
