"""``fastdeberta serve``: an HTTP server with text-embeddings-inference's routes and dynamic batching."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import CliError

HELP = "serve a model over HTTP (TEI-compatible /embed, /predict, /rerank, /tokenize, plus /fill-mask, /zero-shot)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ..serve.settings import ENGINES, TASKS, ServeSettings

    defaults = ServeSettings()
    parser = subparsers.add_parser(
        "serve", help=HELP,
        description=HELP[0].upper() + HELP[1:] + ". Stops on SIGTERM / Ctrl-C after finishing the requests in "
        "flight. Routes and bodies: GET /docs or /openapi.json once it runs.",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--model", "-m", default=None,
                       help="checkpoint folder or Hugging Face Hub repo id (default: the model shipped with "
                            "fastdeberta, when there is one)")
    model.add_argument("--task", choices=list(TASKS), default="auto",
                       help="what to load the model for: auto (from config.json: classifier, masked-LM or "
                            "encoder), embed, classify, rerank, zero-shot, fill-mask (default auto)")
    model.add_argument("--pooling", choices=["mean", "cls", "max"], default="mean",
                       help="how /embed pools token vectors into one (default mean)")
    model.add_argument("--revision", default=None, help="Hub branch, tag or commit (default: main)")
    model.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    model.add_argument("--offline", action="store_true",
                       help="never download; use a local folder or the cache (also HF_HUB_OFFLINE=1)")

    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--engine", choices=list(ENGINES), default="torch",
                         help="torch, or onnxruntime for a folder holding an ONNX export (default torch)")
    runtime.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                         help="load the weights in this dtype (default: as stored)")
    runtime.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda (default: cpu)")
    runtime.add_argument("--threads", type=int, default=None,
                         help="torch threads for the model (default: torch's choice; 1 is often fastest on a "
                              "busy or small machine)")

    net = parser.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    net.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    net.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"], default="info",
                     help="uvicorn log level (default info)")

    limits = parser.add_argument_group("limits (TEI's names)")
    limits.add_argument("--max-batch-tokens", type=int, default=defaults.max_batch_tokens,
                        help=f"padded tokens per forward pass (default {defaults.max_batch_tokens})")
    limits.add_argument("--max-batch-requests", type=int, default=None,
                        help="inputs per forward pass (default: only the token budget limits it)")
    limits.add_argument("--max-concurrent-requests", type=int, default=defaults.max_concurrent_requests,
                        help=f"requests in flight before 429 (default {defaults.max_concurrent_requests})")
    limits.add_argument("--max-input-length", type=int, default=None,
                        help="tokens per input before 413 or truncation (default: the model's maximum)")
    limits.add_argument("--max-client-batch-size", type=int, default=defaults.max_client_batch_size,
                        help=f"inputs per request before 413 (default {defaults.max_client_batch_size})")
    limits.add_argument("--auto-truncate", action="store_true",
                        help="cut too long inputs when a request does not set \"truncate\" (default: 413)")
    limits.add_argument("--request-timeout", type=float, default=defaults.request_timeout,
                        help=f"seconds per request before 504 (default {defaults.request_timeout:g})")
    limits.add_argument("--payload-limit", type=int, default=defaults.payload_limit,
                        help=f"bytes per request body before 413 (default {defaults.payload_limit})")
    limits.add_argument("--tokenization-workers", type=int, default=defaults.tokenization_workers,
                        help=f"tokenization threads (default {defaults.tokenization_workers})")
    parser.add_argument("--json", action="store_true",
                        help="print the server's settings as one JSON line on stdout before it starts")
    parser.set_defaults(run=run)
    return parser


def _settings(args: argparse.Namespace):
    from ..serve.settings import ServeSettings

    try:
        return ServeSettings(
            max_batch_tokens=args.max_batch_tokens, max_batch_requests=args.max_batch_requests,
            max_concurrent_requests=args.max_concurrent_requests, max_client_batch_size=args.max_client_batch_size,
            auto_truncate=args.auto_truncate, request_timeout=args.request_timeout, payload_limit=args.payload_limit,
            tokenization_workers=args.tokenization_workers,
        )
    except ValueError as err:
        option = "--" + str(err).split(" ", 1)[0].replace("_", "-")
        raise CliError(f"{option}: {err}") from None


def run(args: argparse.Namespace) -> int:
    from ..serve.app import ServerState
    from ..serve.server import load_engine, serve

    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be in 0..65535, got {args.port}")
    settings = _settings(args)
    if args.threads is not None:
        if args.threads < 1:
            raise CliError(f"--threads must be a positive int, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    engine = load_engine(args.model, task=args.task, engine=args.engine, dtype=args.dtype, device=args.device,
                         pooling=args.pooling, max_input_length=args.max_input_length, revision=args.revision,
                         cache_dir=args.cache_dir, local_files_only=bool(args.offline))
    ServerState(engine, settings, args.engine)   # checks that the limits fit the model before binding the port
    if args.json:
        summary = {"model": engine.model_id, "task": engine.task, "host": args.host, "port": args.port,
                   "max_input_length": engine.max_input_length, **settings.as_dict()}
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    serve(engine, settings, host=args.host, port=args.port, engine_name=args.engine, log_level=args.log_level)
    return 0
