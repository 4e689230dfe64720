"""``fastdeberta embed``: embed every text of a .txt / .jsonl / .csv file into .npy or .parquet."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..io import atomic_path
from .common import TOKENIZER_HINT, CliError, add_model_arguments, add_runtime_arguments, load_kwargs

HELP = "embed the texts of a file (one vector per text) into .npy or .parquet"
INPUT_TYPES = (".txt", ".jsonl", ".csv", ".tsv")
OUTPUT_TYPES = (".npy", ".parquet")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "embed", help=HELP, description=HELP.capitalize() + ". Input: .txt (one text per line), .jsonl "
        "(field 'text' or --text-column), .csv/.tsv (column 'text' or --text-column). Output: .npy (N x D "
        "float32) or .parquet (columns text, embedding). Prints a one-line JSON summary.",
    )
    add_model_arguments(parser, tokenizer=True)
    parser.add_argument("--input", "-i", required=True, help="input file: " + ", ".join(INPUT_TYPES))
    parser.add_argument("--output", "-o", required=True, help="output file: " + ", ".join(OUTPUT_TYPES))
    parser.add_argument("--text-column", default="text", help="field / column holding the text (default: text)")
    parser.add_argument("--keep-empty", action="store_true",
                        help=".txt input: keep empty lines (embedded as [CLS] [SEP]) instead of skipping them")
    parser.add_argument("--pooling", choices=["mean", "cls", "max"], default=None,
                        help="mean (padding excluded, [CLS]/[SEP] included), cls or max (default: the pooling a "
                             "sentence-transformers folder names, else mean)")
    parser.add_argument("--normalize", action="store_true", help="L2-normalise every vector")
    parser.add_argument("--layer", type=int, default=-1,
                        help="hidden state to pool: -1 last layer (default), 0 embeddings, k layer k")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch (default 32)")
    parser.add_argument("--max-tokens", type=int, default=None, help="cap on padded tokens per batch")
    parser.add_argument("--max-length", type=int, default=None,
                        help="truncate texts to this many tokens (default: the model's maximum)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_runtime_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def read_texts(path: Path, column: str = "text", keep_empty: bool = False) -> list[str]:
    """The texts of a .txt / .jsonl / .csv / .tsv file, in file order."""
    suffix = path.suffix.lower()
    if suffix not in INPUT_TYPES:
        raise CliError(f"unsupported input file type {suffix or '(none)'!r} for {path}; use one of {', '.join(INPUT_TYPES)}")
    if not path.is_file():
        raise CliError(f"input file not found: {path}")
    try:
        with path.open(encoding="utf-8-sig", newline="" if suffix in (".csv", ".tsv") else None) as fh:
            if suffix == ".txt":
                lines = [line.rstrip("\r\n") for line in fh]
                return lines if keep_empty else [x for x in lines if x.strip()]
            if suffix == ".jsonl":
                return _read_jsonl(fh, path, column)
            return _read_csv(fh, path, column, "\t" if suffix == ".tsv" else ",")
    except UnicodeDecodeError as err:
        raise CliError(f"{path} is not UTF-8 text: {err}") from err


def _read_jsonl(fh, path: Path, column: str) -> list[str]:
    texts = []
    for n, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise CliError(f"{path}:{n}: not valid JSON ({err.msg})") from err
        if not isinstance(row, dict) or column not in row:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise CliError(f"{path}:{n}: no field {column!r} (found {keys}); pick one with --text-column")
        value = row[column]
        if not isinstance(value, str):
            raise CliError(f"{path}:{n}: field {column!r} is a {type(value).__name__}, not a string")
        texts.append(value)
    return texts


def _read_csv(fh, path: Path, column: str, delimiter: str) -> list[str]:
    reader = csv.DictReader(fh, delimiter=delimiter)
    columns = reader.fieldnames or []
    if column not in columns:
        raise CliError(f"{path} has no column {column!r}; its columns are {columns}. Pick one with --text-column")
    texts = []
    for n, row in enumerate(reader, 2):
        value = row.get(column)
        if value is None:
            raise CliError(f"{path}:{n}: row has no value for column {column!r}")
        texts.append(value)
    return texts


def _check_output(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_TYPES:
        raise CliError(f"unsupported output file type {suffix or '(none)'!r} for {path}; use .npy or .parquet")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError as err:
            raise CliError("writing .parquet needs pyarrow: pip install pyarrow "
                           "(or pip install 'fastdeberta[parquet]'), or write .npy instead") from err
    if not path.parent.exists():
        raise CliError(f"output folder does not exist: {path.parent}")


def write_embeddings(path: Path, texts: list[str], vectors) -> None:
    """Write ``vectors`` (N, D) to .npy, or .parquet (columns text, embedding), atomically: the file
    is written under a temporary name beside ``path`` and renamed over it only when complete, so a
    failure mid-write (disk full, file-size limit) leaves a previous ``path`` intact."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".npy":
            with tmp.open("wb") as fh:
                np.save(fh, vectors)
        else:
            _write_parquet(tmp, texts, vectors)


def _write_parquet(path: Path, texts: list[str], vectors) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(len(texts) + 1, dtype=np.int32) * dim, type=pa.int32())
    embedding = pa.ListArray.from_arrays(offsets, flat)
    table = pa.table({"text": pa.array(texts, type=pa.string()), "embedding": embedding})
    pq.write_table(table, str(path))


def run(args: argparse.Namespace) -> int:
    for name in ("batch_size", "max_tokens", "max_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    input_path, output_path = Path(args.input), Path(args.output)
    _check_output(output_path)
    texts = read_texts(input_path, args.text_column, args.keep_empty)
    if not texts:  # refused before loading the model: an empty output would hide a wrong input file
        blank = input_path.suffix.lower() == ".txt" and not args.keep_empty
        raise CliError(f"no texts found in {input_path}; nothing to embed"
                       + (" (blank lines are skipped unless --keep-empty is given)" if blank else ""))

    from ..checkpoint import TokenizerLoadError, load_model
    from ..inference.embed import encode

    start = time.perf_counter()
    try:
        model = load_model(args.model, task="base", dtype=args.dtype, device=args.device,
                           load_tokenizer=args.tokenizer is None, **load_kwargs(args))
    except TokenizerLoadError as err:
        raise err.with_hint(TOKENIZER_HINT) from err.cause
    tokenizer = None
    if args.tokenizer is not None:
        from ..tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(args.tokenizer, **load_kwargs(args))
    vectors = encode(model, texts, tokenizer=tokenizer, batch_size=args.batch_size, pooling=args.pooling,
                     layer=args.layer, normalize=args.normalize, convert_to="numpy", max_length=args.max_length,
                     max_tokens=args.max_tokens, show_progress_bar=not args.no_progress)
    write_embeddings(output_path, texts, vectors)
    summary = {"count": len(texts), "dim": int(vectors.shape[1]), "output": str(output_path),
               "seconds": round(time.perf_counter() - start, 3)}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
