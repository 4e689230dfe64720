"""Deployment exports: ONNX graphs correct at every sequence length, and an onnxruntime engine that
plugs into fastdeberta's pipelines and ``encode``.

``onnx``/``onnxruntime`` are optional (``pip install 'fastdeberta[onnx]'``) and imported only when used.
"""

from __future__ import annotations

from .engine import OnnxRuntimeMissingError, OrtModel, is_onnx_folder, load_onnx_model
from .onnx import ExportError, ExportResult, ParityError, export_onnx

__all__ = [
    "ExportError",
    "ExportResult",
    "OnnxRuntimeMissingError",
    "OrtModel",
    "ParityError",
    "export_onnx",
    "is_onnx_folder",
    "load_onnx_model",
]
