"""Entry point of the ``fastdeberta`` command (also ``python -m fastdeberta``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import (
    attention,
    embed,
    evaluate,
    export,
    fill_mask,
    info,
    predict,
    pretrain,
    serve,
    train,
    train_tokenizer,
)
from .common import CliError

# One module per subcommand, each with add_parser(subparsers); listed in the order --help shows them.
SUBCOMMANDS = (
    fill_mask,
    embed,
    info,
    train,
    evaluate,
    predict,
    train_tokenizer,
    pretrain,
    attention,
    export,
    serve,
)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("fastdeberta")
    except Exception:  # not installed: fall back to the source tree's version
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastdeberta",
        description="DeBERTa v1/v2/v3 for PyTorch: fill-mask, embeddings, checkpoint information, fine-tuning, "
                    "pretraining, attention analysis, ONNX export and an HTTP server.",
        epilog="Run 'fastdeberta COMMAND --help' for the options of a command. Set FASTDEBERTA_DEBUG=1 "
               "to see tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"fastdeberta {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..checkpoint import CheckpointError
    from ..config import ConfigError
    from ..hub import ModelNotFoundError

    return (CliError, CheckpointError, ConfigError, ModelNotFoundError, FileNotFoundError, NotImplementedError,
            ValueError, TypeError, PermissionError, IsADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    debug = os.environ.get("FASTDEBERTA_DEBUG", "").lower() in {"1", "true", "yes"}
    code = _run(args, debug)
    distributed = sys.modules.get("fastdeberta.training.distributed")   # loaded only by training commands
    return distributed.leave(code) if distributed is not None else code


def _run(args: argparse.Namespace, debug: bool) -> int:
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("fastdeberta: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `fastdeberta info ... | head`
        return 0
    except Exception as err:
        if debug:
            raise
        user_error = isinstance(err, _user_errors())
        message = str(err) or type(err).__name__
        if not user_error:
            message = f"{type(err).__name__}: {message} (set FASTDEBERTA_DEBUG=1 for the traceback)"
        print(f"fastdeberta {args.command}: error: {message}", file=sys.stderr)
        return 2 if user_error else 1


if __name__ == "__main__":
    sys.exit(main())
