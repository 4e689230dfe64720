"""Loading the served model and running uvicorn with a graceful shutdown.

On SIGTERM / SIGINT uvicorn stops accepting connections, lets every request in flight finish (up to
``graceful_timeout`` seconds), then runs the app's lifespan shutdown, which drains the batcher. While
that happens /health answers 503 so that a load balancer stops sending traffic.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from ..errors import FastDebertaError
from .engine import Engine
from .settings import ENGINES, TASKS, ServeSettings, default_model

__all__ = ["NoModelError", "load_engine", "serve"]


class NoModelError(FastDebertaError, ValueError):
    """``serve`` was called without a model and no default model ships yet."""


def resolve_model(model: str | os.PathLike | None) -> str:
    if model is not None:
        return str(model)
    fallback = default_model()
    if fallback is None:
        raise NoModelError(
            "no --model given and this fastdeberta version ships no default model yet; pass --model FOLDER_OR_REPO_ID "
            "(e.g. --model microsoft/deberta-v3-base, or a folder written by save_pretrained)"
        )
    return fallback


def load_engine(model: str | os.PathLike | None = None, *, task: str = "auto", engine: str = "torch",
                dtype: str | None = None, device: str | None = None, pooling: str = "mean",
                max_input_length: int | None = None, **load_kwargs: Any) -> Engine:
    """Load the model to serve (``model`` None: the shipped default) and wrap it in an :class:`Engine`."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    name = resolve_model(model)
    loaded = _load(name, TASKS[task], engine, dtype=dtype, device=device, **load_kwargs)
    return Engine(loaded, pooling=pooling, max_input_length=max_input_length, model_id=name)


def onnx_engine_available() -> bool:
    """Whether this fastdeberta has the onnxruntime engine (``fastdeberta.export``)."""
    import importlib.util

    return importlib.util.find_spec("fastdeberta.export.engine") is not None


def _load(name: str, task: str | None, engine: str, **load_kwargs: Any) -> Any:
    """``fastdeberta.from_pretrained`` with the engine asked for (the ONNX export loader returns a
    model-like object with the same call signature, ``base_model`` and ``tokenizer``)."""
    import torch

    import fastdeberta

    if not onnx_engine_available():
        if engine == "onnxruntime":
            raise NotImplementedError("--engine onnxruntime needs fastdeberta's ONNX support (fastdeberta.export), "
                                      "which this installation does not have; use --engine torch")
        return fastdeberta.from_pretrained(name, task=task, **load_kwargs)
    loaded = fastdeberta.from_pretrained(name, task=task, engine=engine, **load_kwargs)
    if engine == "onnxruntime" and isinstance(loaded, torch.nn.Module):
        raise ValueError(f"{name!r} loaded as a PyTorch model, not an ONNX export; export it to ONNX first or use "
                         "--engine torch")
    return loaded


def serve(engine: Engine, settings: ServeSettings | None = None, *, host: str = "127.0.0.1", port: int = 8080,
          engine_name: str = "torch", graceful_timeout: float | None = None, log_level: str = "info") -> None:
    """Serve ``engine`` over HTTP until SIGTERM / SIGINT, then shut down gracefully."""
    import uvicorn

    from .app import create_app

    settings = settings or ServeSettings()
    app = create_app(engine, settings, engine_name=engine_name)
    state = app.state.server
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=graceful_timeout or settings.request_timeout + 5,
                            lifespan="on")

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.draining = True      # /health turns 503 at once; requests in flight still finish
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:  # a finished graceful shutdown exits 0 instead of re-raising SIGTERM
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list) and sig in captured:
                    captured.remove(sig)

    Server(config).run()
