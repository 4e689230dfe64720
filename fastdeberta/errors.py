"""The exceptions fastdeberta raises on bad input, in one place.

Every class derives from :class:`FastDebertaError` (catch that to catch them all) and from the built-in
exception a caller would already expect (``ValueError``, ``TypeError``, ``FileNotFoundError``), so
``except ValueError:`` clauses written before these classes existed keep working::

    FastDebertaError
    ├── ConfigError          (ValueError)         config.json / DebertaConfig field of the wrong type or range
    ├── CheckpointError      (ValueError, RuntimeError)  unreadable, corrupt or mismatched weights
    │   └── UnsafePathError                       a checkpoint names a file outside its folder
    ├── ModelNotFoundError   (FileNotFoundError)  no local folder and no (cached) Hub repo of that name
    ├── TokenizerLoadError   (ValueError)         the weights load but the tokenizer files do not
    ├── InvalidInputError    (ValueError)         an argument or tensor with a value that cannot be used
    └── InputTypeError       (TypeError)          an argument or tensor of the wrong type or dtype

Messages say what was wrong, the offending value, where it came from (file, field, argument) and what
to do. The classes are importable from ``fastdeberta`` and from here; ``ConfigError``,
``CheckpointError``, ``TokenizerLoadError`` and ``ModelNotFoundError`` also from the modules that
defined them before (``fastdeberta.config``, ``fastdeberta.checkpoint``, ``fastdeberta.hub``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CheckpointError",
    "ConfigError",
    "FastDebertaError",
    "InputTypeError",
    "InvalidInputError",
    "ModelNotFoundError",
    "TokenizerLoadError",
    "UnsafePathError",
]


class FastDebertaError(Exception):
    """Base class of every error fastdeberta raises on bad input, files or arguments."""


class ConfigError(FastDebertaError, ValueError):
    """A config.json (or DebertaConfig) that does not describe a DeBERTa model this package can build.

    ``field`` names the offending key (None when the problem is not one field), ``source`` the file it
    came from (None for a dict or keyword arguments); the message starts with the source when known.
    """

    def __init__(self, message: str, *, field: str | None = None, source: str | os.PathLike | None = None):
        self.message, self.field = message, field
        self.source = None if source is None else str(source)
        super().__init__(f"{self.source}: {message}" if self.source else message)

    def with_source(self, source: str | os.PathLike) -> ConfigError:
        """The same error, now naming the file it came from (a source already set is kept)."""
        if self.source is not None:
            return self
        error = ConfigError(self.message, field=self.field, source=source)
        error.__cause__ = self.__cause__
        return error


# CheckpointError subclassed RuntimeError before this module existed; it keeps that base so old
# `except RuntimeError` clauses still catch it, and gains ValueError like the other input errors.
class CheckpointError(FastDebertaError, ValueError, RuntimeError):
    """A checkpoint that cannot be loaded as asked: corrupt file, missing or mismatched weights."""


class UnsafePathError(CheckpointError):
    """A file named inside a checkpoint (shard index, tokenizer config) resolves outside its folder."""


class ModelNotFoundError(FastDebertaError, FileNotFoundError):
    """A model reference that resolves to neither a local folder nor a (cached) Hub repo."""


class TokenizerLoadError(FastDebertaError, ValueError):
    """The weights of a checkpoint load but its tokenizer files cannot be read."""

    def __init__(self, folder: str | os.PathLike, cause: BaseException, hint: str):
        self.folder, self.cause, self.hint = Path(folder), cause, hint
        reason = str(cause).strip() or type(cause).__name__
        if not isinstance(cause, (ValueError, OSError)):  # e.g. sentencepiece's RuntimeError: name the type
            reason = f"{type(cause).__name__}: {reason}"
        super().__init__(f"the weights in {folder} load, but its tokenizer files cannot be read: {reason} {hint}")

    def with_hint(self, hint: str) -> TokenizerLoadError:
        """The same error with another way out (for callers such as pipeline() or the command line)."""
        error = TokenizerLoadError(self.folder, self.cause, hint)
        error.__cause__ = self.cause
        return error


class InvalidInputError(FastDebertaError, ValueError):
    """An argument whose value cannot be used: a token id outside the vocabulary, a wrong shape, ..."""


class InputTypeError(FastDebertaError, TypeError):
    """An argument of the wrong type or dtype: a list where a tensor is needed, float token ids, ..."""
