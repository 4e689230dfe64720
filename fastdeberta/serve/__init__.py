"""An HTTP inference server with text-embeddings-inference's routes and dynamic batching.

``fastdeberta serve --model FOLDER`` on the command line; in Python::

    from fastdeberta.serve import ServeSettings, create_app, load_engine
    app = create_app(load_engine("my-model"), ServeSettings(max_batch_tokens=8192))   # any ASGI server

FastAPI and uvicorn are needed (``pip install fastdeberta[serve]``); they are imported on first use,
so ``fastdeberta.serve.settings`` (limits, tasks, the default model) stays importable without them.
"""

from __future__ import annotations

from typing import Any

from .settings import DEFAULT_MODEL, ENGINES, TASKS, ServeSettings, default_model

_LAZY = {"create_app": "app", "ServerState": "app", "Engine": "engine", "load_engine": "server", "serve": "server"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fastdeberta.serve' has no attribute {name!r}")


__all__ = ["DEFAULT_MODEL", "ENGINES", "TASKS", "Engine", "ServeSettings", "ServerState", "create_app",
           "default_model", "load_engine", "serve"]
