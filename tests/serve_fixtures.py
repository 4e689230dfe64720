"""Shared helpers for the server tests: engines on the tiny test checkpoints, an in-process client
(httpx over ASGI, with the app's lifespan running), a gate that holds the model thread, a real
uvicorn subprocess on loopback, and TEI's documented response schemas with a small validator.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402

import fastdeberta  # noqa: E402
from fastdeberta.serve import ServeSettings, create_app  # noqa: E402
from fastdeberta.serve.engine import Engine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def load(folder: Path, **overrides: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # new head weights when the label count changes
        return fastdeberta.from_pretrained(folder, ignore_mismatched_sizes=bool(overrides), **overrides)


def reranker_model() -> Any:
    """The test classifier re-headed to one output (a cross-encoder), with a fixed random head."""
    import torch

    torch.manual_seed(5)
    return load(fx.classifier_checkpoint(), num_labels=1, id2label={0: "score"}, label2id={"score": 0})


def nli_model() -> Any:
    """The test classifier with NLI label names, so zero-shot classification accepts it."""
    labels = {0: "entailment", 1: "neutral", 2: "contradiction"}
    model = fastdeberta.from_pretrained(fx.classifier_checkpoint())
    model.config = model.config.replace(id2label=labels, label2id={v: k for k, v in labels.items()})
    return model


def app_for(model: Any, **settings: Any):
    return create_app(Engine(model, max_input_length=settings.pop("max_input_length", None)), ServeSettings(**settings))


def run_client(app: Any, body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    """Run ``body(client)`` against ``app`` in process, inside the app's lifespan (batcher running)."""
    async def main() -> Any:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve.test", timeout=30) as client:
                return await body(client)

    return asyncio.run(main())


class Gate:
    """Holds every forward pass of ``app``'s model thread until :meth:`open` (or a timeout)."""

    def __init__(self, app: Any, timeout: float = 20.0):
        self.state = app.state.server
        self.event = threading.Event()
        inner = self.state.batcher.run_batch

        def gated(kind: str, batch: Any) -> Any:
            self.event.wait(timeout)
            return inner(kind, batch)

        self.state.batcher.run_batch = gated

    def open(self) -> None:
        self.event.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.005)


# ----------------------------------------------------------------------------------------------------
# a real server process on loopback

class ServerProcess:
    """``python -m fastdeberta serve ... --port 0`` on 127.0.0.1; the port is read from uvicorn's log."""

    def __init__(self, *args: str, startup_timeout: float = 60.0):
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastdeberta", "serve", "--host", "127.0.0.1", "--port", "0", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._port_found = threading.Event()
        self.port = 0
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._port_found.wait(startup_timeout):
            self.kill()
            raise AssertionError("server did not start (it needs --log-level info to report its port):\n" + self.log)
        self.url = f"http://127.0.0.1:{self.port}"

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if found and not self._port_found.is_set():
                self.port = int(found.group(1))
                self._port_found.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def metric_value(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text page (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    target = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == target:
            return float(value)
    return 0.0


# ----------------------------------------------------------------------------------------------------
# TEI's documented response schemas, transcribed from huggingface/text-embeddings-inference
# docs/openapi.json (components.schemas). ErrorType is documented there as an enum of capitalised names
# but every example body in the same file uses the lowercase form ("validation", "overloaded", ...),
# which is what this server sends; the enum is therefore compared case-insensitively.

_FLOAT = {"type": "number"}
_PREDICTION = {"type": "object", "required": ["score", "label"],
               "properties": {"label": {"type": "string"}, "score": _FLOAT}}
_TOKEN = {"type": "object", "required": ["id", "text", "special"],
          "properties": {"id": {"type": "integer", "minimum": 0}, "special": {"type": "boolean"},
                         "start": {"type": "integer", "nullable": True, "minimum": 0},
                         "stop": {"type": "integer", "nullable": True, "minimum": 0},
                         "text": {"type": "string"}}}
TEI = {
    "EmbedResponse": {"type": "array", "items": {"type": "array", "items": _FLOAT}},
    "PredictResponse": {"oneOf": [{"type": "array", "items": _PREDICTION},
                                  {"type": "array", "items": {"type": "array", "items": _PREDICTION}}]},
    "RerankResponse": {"type": "array", "items": {
        "type": "object", "required": ["index", "score"],
        "properties": {"index": {"type": "integer", "minimum": 0}, "score": _FLOAT,
                       "text": {"type": "string", "nullable": True}}}},
    "TokenizeResponse": {"type": "array", "items": {"type": "array", "items": _TOKEN}},
    "EmbedAllResponse": {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": _FLOAT}}},
    "DecodeResponse": {"type": "array", "items": {"type": "string"}},
    "SimilarityResponse": {"type": "array", "items": _FLOAT},
    "OpenAICompatResponse": {
        "type": "object", "required": ["object", "data", "model", "usage"],
        "properties": {"object": {"type": "string"}, "model": {"type": "string"},
                       "data": {"type": "array", "items": {
                           "type": "object", "required": ["object", "embedding", "index"],
                           "properties": {"object": {"type": "string"}, "index": {"type": "integer", "minimum": 0},
                                          "embedding": {"oneOf": [{"type": "array", "items": _FLOAT},
                                                                  {"type": "string"}]}}}},
                       "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                                 "properties": {"prompt_tokens": {"type": "integer", "minimum": 0},
                                                "total_tokens": {"type": "integer", "minimum": 0}}}}},
    # openapi.json names the third field error_type, but TEI serialises it as "type" (serde rename), which
    # is what its clients read
    "OpenAICompatErrorResponse": {"type": "object", "required": ["message", "code", "type"],
                                  "properties": {"message": {"type": "string"},
                                                 "code": {"type": "integer", "minimum": 0},
                                                 "type": {"type": "string"}}},
    "Info": {"type": "object",
             "required": ["model_id", "model_dtype", "model_type", "max_concurrent_requests", "max_input_length",
                          "max_batch_tokens", "max_client_batch_size", "auto_truncate", "tokenization_workers",
                          "version"],
             "properties": {"model_id": {"type": "string"}, "model_sha": {"type": "string", "nullable": True},
                            "model_dtype": {"type": "string"},
                            "model_type": {"oneOf": [{"type": "object", "required": [kind]}
                                                     for kind in ("classifier", "embedding", "reranker")]},
                            "max_concurrent_requests": {"type": "integer", "minimum": 0},
                            "max_input_length": {"type": "integer", "minimum": 0},
                            "max_batch_tokens": {"type": "integer", "minimum": 0},
                            "max_batch_requests": {"type": "integer", "nullable": True, "minimum": 0},
                            "max_client_batch_size": {"type": "integer", "minimum": 0},
                            "auto_truncate": {"type": "boolean"},
                            "tokenization_workers": {"type": "integer", "minimum": 0},
                            "version": {"type": "string"}}},
    "ErrorResponse": {"type": "object", "required": ["error", "error_type"],
                      "properties": {"error": {"type": "string"},
                                     "error_type": {"type": "string", "enum_ci": ["Unhealthy", "Backend", "Overloaded",
                                                                                  "Validation", "Tokenizer"]}}},
}
# request fields TEI documents for the routes both servers have, with their defaults (prompt_name, which
# needs sentence-transformers prompts, is accepted but any value other than null is refused)
TEI_REQUEST_DEFAULTS = {
    "/embed": {"inputs": None, "normalize": True, "truncate": None, "truncation_direction": "Right",
               "prompt_name": None, "dimensions": None},
    "/embed_all": {"inputs": None, "truncate": None, "truncation_direction": "Right", "prompt_name": None},
    "/similarity": {"inputs": None, "parameters": None},
    "/v1/embeddings": {"input": None, "model": None, "user": None, "encoding_format": "float", "dimensions": None},
    "/decode": {"ids": None, "skip_special_tokens": True},
    "/predict": {"inputs": None, "raw_scores": False, "truncate": None, "truncation_direction": "Right"},
    "/rerank": {"query": None, "texts": None, "raw_scores": False, "return_text": False, "truncate": None,
                "truncation_direction": "Right"},
    "/tokenize": {"inputs": None, "add_special_tokens": True, "prompt_name": None},
}
REQUIRED_FIELDS = ("inputs", "input", "ids", "query", "texts")


def schema_errors(value: Any, schema: dict, where: str = "$") -> list[str]:
    """Errors of ``value`` against the JSON-schema subset TEI's schemas use (type, items, required,
    properties, nullable, minimum, oneOf, and enum_ci for a case-insensitive enum)."""
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null"]
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not schema_errors(value, s, where)]
        return [] if len(matches) == 1 else [f"{where}: matches {len(matches)} of oneOf"]
    kind = schema.get("type")
    checks = {"array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict),
              "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
    if kind and not checks[kind](value):
        return [f"{where}: {type(value).__name__} is not {kind}"]
    errors: list[str] = []
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: {value} < {schema['minimum']}")
    if "enum_ci" in schema and value.lower() not in [e.lower() for e in schema["enum_ci"]]:
        errors.append(f"{where}: {value!r} not in {schema['enum_ci']}")
    if kind == "array":
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{where}[{i}]")
    if kind == "object":
        errors += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += schema_errors(value[key], sub, f"{where}.{key}")
    return errors
