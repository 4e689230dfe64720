"""The ``fastdeberta`` command line: ``fill-mask``, ``embed`` and ``info`` subcommands."""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
