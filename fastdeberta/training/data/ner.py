"""Token-classification data: JSON Lines (``tokens`` + ``tags`` per line) or CoNLL files.

CoNLL: one token per line with its tag in the last (whitespace-separated) column, a blank line
between sentences; ``-DOCSTART-`` lines are skipped. Other columns (POS, chunk) are ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .readers import DataError, _check_file, read_rows

__all__ = ["CONLL_TYPES", "TaggedSentence", "read_tagged"]

CONLL_TYPES = (".conll", ".conllu", ".txt", ".iob", ".bio", ".bioes")


@dataclass
class TaggedSentence:
    tokens: list[str]
    tags: list[str] | None      # None when the file holds no tags (prediction input)
    where: str
    text: str | None = None     # raw text, when a prediction input gives text instead of tokens


def read_tagged(path: str | os.PathLike, tokens_column: str = "tokens", tags_column: str = "tags",
                require_tags: bool = True, text_column: str = "text") -> list[TaggedSentence]:
    """Sentences with word-level tags from a .jsonl or CoNLL file.

    Without ``require_tags`` (prediction input) a .jsonl / .csv / .tsv / .parquet file may give raw
    text in ``text_column`` instead of a token list.
    """
    path = Path(path)
    _check_file(path)
    if not require_tags and path.suffix.lower() in (".jsonl", ".json", ".csv", ".tsv", ".parquet"):
        rows = read_rows(path)
        if tokens_column not in rows[0].data and text_column in rows[0].data:
            return [_text_row(row, text_column) for row in rows]
    if path.suffix.lower() in (".jsonl", ".json"):
        sentences = _read_jsonl(path, tokens_column, tags_column, require_tags)
    elif path.suffix.lower() in CONLL_TYPES:
        sentences = _read_conll(path, require_tags)
    else:
        raise DataError(f"unsupported token-classification file type {path.suffix or '(none)'!r} for {path}; "
                        f"use .jsonl (fields {tokens_column!r} and {tags_column!r}) or CoNLL "
                        f"({', '.join(CONLL_TYPES)})")
    if not sentences:
        raise DataError(f"{path} holds no sentences; it is empty")
    return sentences


def _text_row(row, text_column: str) -> TaggedSentence:
    text = row.get(text_column)
    if not isinstance(text, str):
        raise DataError(f"{row.where}: field {text_column!r} must be text, found {text!r:.60} (fields: {sorted(row.data)})")
    return TaggedSentence(text.split(), None, row.where, text=text)


def _read_jsonl(path: Path, tokens_column: str, tags_column: str, require_tags: bool) -> list[TaggedSentence]:
    out = []
    for row in read_rows(path, allow_empty=True):
        tokens = row.get(tokens_column)
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataError(f"{row.where}: field {tokens_column!r} must be a list of strings, found "
                            f"{tokens!r:.80} (fields: {sorted(row.data)})")
        tags = row.get(tags_column)
        if tags is None and require_tags:
            raise DataError(f"{row.where}: no field {tags_column!r} (fields: {sorted(row.data)})")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, (str, int)) for t in tags):
                raise DataError(f"{row.where}: field {tags_column!r} must be a list of tag names, found {tags!r:.80}")
            if len(tags) != len(tokens):
                raise DataError(f"{row.where}: {len(tokens)} tokens but {len(tags)} tags; give one tag per token")
            tags = [str(t) for t in tags]
        out.append(TaggedSentence(tokens, tags, row.where))
    return out


def _read_conll(path: Path, require_tags: bool) -> list[TaggedSentence]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text; re-save it as UTF-8") from err
    out: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1
    columns = None

    def flush() -> None:
        if tokens:
            out.append(TaggedSentence(list(tokens), list(tags) if columns != 1 else None, f"{path}:{start}"))
        tokens.clear()
        tags.clear()

    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            flush()
            start = n + 1
            continue
        if fields[0] == "-DOCSTART-":
            start = n + 1
            continue
        if columns is None:
            columns = len(fields)
        if columns == 1 and require_tags:
            raise DataError(f"{path}:{n}: a token without a tag; CoNLL lines are 'TOKEN ... TAG' (tag in the last "
                            "column)")
        if len(fields) != columns:
            raise DataError(f"{path}:{n}: {len(fields)} columns, but earlier lines have {columns}: {line!r:.80}")
        if not tokens:
            start = n
        tokens.append(fields[0])
        tags.append(fields[-1])
    flush()
    return out
