"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse

from ..shipped import DEFAULT_MODEL


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 2, no traceback."""


# how to get past a model whose own tokenizer files cannot be read
TOKENIZER_HINT = ("Pass --tokenizer FOLDER_OR_REPO_ID to use another tokenizer; the model's own tokenizer "
                  "files are then not read.")


def add_model_arguments(parser: argparse.ArgumentParser, tokenizer: bool = False) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", "-m", default=DEFAULT_MODEL,
                       help="checkpoint folder or Hugging Face Hub repo id (e.g. microsoft/deberta-v3-base); "
                            f"default: {DEFAULT_MODEL}, the small model shipped in the package (offline)")
    if tokenizer:
        group.add_argument("--tokenizer", default=None,
                           help="folder or Hub repo id of the tokenizer to use (default: the model's own)")
    group.add_argument("--revision", default=None, help="Hub branch, tag or commit (default: main)")
    group.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    group.add_argument("--offline", action="store_true",
                       help="never download; use a local folder or the cache (also HF_HUB_OFFLINE=1)")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)")
    group.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                       help="load the weights in this dtype (default: as stored, float32 for most checkpoints)")


def load_kwargs(args: argparse.Namespace) -> dict:
    return {"revision": args.revision, "cache_dir": args.cache_dir, "local_files_only": bool(args.offline)}
