"""Pretraining data: text files -> documents -> token ids packed into fixed-length rows on disk.

Packing. The documents' tokens are concatenated with one [SEP] between documents and cut into rows of
``seq_length - 2`` tokens, each stored as ``[CLS] tokens [SEP]``; the last row is padded with [PAD].
A row never begins with the separator (it would follow [CLS] directly). This follows the original
DeBERTa's ``prepare_data.py``, which tokenizes the whole corpus as one stream and cuts it into
``[CLS] chunk [SEP]`` examples; unlike it we mark document boundaries with [SEP] (as RoBERTa's
FULL-SENTENCES packing does) so the model is told where one text ends and an unrelated one begins.

Storage. Rows go to a standard ``.npy`` file of shape ``(num_sequences, seq_length)`` (uint16 when the
vocabulary fits, else int32) that :class:`PackedDataset` opens as a memory map, so a corpus larger than
memory works; a JSON header beside it (``train.json`` for ``train.npy``) records the sequence length,
counts, tokenizer and sources. Documents are read, shuffled within a bounded buffer (reproducible from
the seed), tokenized and written in chunks, so memory stays bounded too.

Held-out split: each document goes to the validation file or the training file as a whole, chosen by
a hash of its words and the seed (:func:`fastdeberta.pretraining.corpus.is_heldout`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FastDebertaError
from ..io import atomic_path, atomic_write_text
from .corpus import is_heldout, read_documents

__all__ = ["input_files", "iter_documents", "RowPacker", "pack_documents", "PackedWriter", "pack_corpus", "PackedDataset",
           "epoch_permutation", "DataFormatError", "HEADER_FORMAT"]

HEADER_FORMAT = "fastdeberta-packed-v1"
TEXT_SUFFIXES = (".txt", ".jsonl")


class DataFormatError(FastDebertaError, ValueError):
    """An input or packed data file is not in the expected format."""


# -------------------------------------------------------------------------------------- documents
def input_files(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The text files named by ``inputs``: files as given, folders searched for .txt / .jsonl (sorted)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file())
            files.extend(p for p in found if p.suffix in TEXT_SUFFIXES)
            skipped = [p for p in found if p.suffix not in TEXT_SUFFIXES and not p.name.startswith(".")]
            if skipped:
                warnings.warn(f"{path}: skipped {len(skipped)} file(s) that are not .txt/.jsonl (e.g. "
                              f"{skipped[0].relative_to(path)}); name such files explicitly to read them as text",
                              stacklevel=2)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"corpus input not found: {path} (give .txt/.jsonl files or folders of them)")
    if not files:
        raise FileNotFoundError(f"no .txt or .jsonl files in {[str(p) for p in inputs]}")
    return files


def _jsonl_documents(path: Path, field: str = "text") -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{number}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict) or not isinstance(row.get(field), str):
                raise DataFormatError(f"{path}:{number}: expected an object with a string field {field!r}")
            if row[field].strip():
                yield row[field]


def iter_documents(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> Iterator[str]:
    """Documents of text files, streamed: ``.txt`` files hold documents separated by blank lines,
    ``.jsonl`` files one ``{"text": ...}`` document per line; folders are searched for both (sorted)."""
    for path in input_files(inputs):
        if path.suffix == ".jsonl":
            yield from _jsonl_documents(path)
        else:
            yield from read_documents(path)


def _shuffled(items: Iterable[str], buffer_size: int, rng: random.Random) -> Iterator[str]:
    """Items in an order shuffled within consecutive windows of ``buffer_size`` (bounded memory)."""
    buffer: list[str] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            rng.shuffle(buffer)
            yield from buffer
            buffer = []
    rng.shuffle(buffer)
    yield from buffer


# ---------------------------------------------------------------------------------------- packing
class RowPacker:
    """Push-style packing (see the module doc): :meth:`add` one document's ids, get the rows it completes;
    :meth:`finish` returns the padded last row."""

    def __init__(self, seq_length: int, *, cls_id: int, sep_id: int, pad_id: int):
        if seq_length < 3:
            raise ValueError(f"seq_length must be at least 3 ([CLS], one token, [SEP]), got {seq_length}")
        self.width = seq_length - 2
        self.cls_id, self.sep_id, self.pad_id = int(cls_id), int(sep_id), int(pad_id)
        self.content: list[int] = []     # ids not yet in a row; never starts with the separator

    def add(self, doc: Sequence[int]) -> list[list[int]]:
        if len(doc) == 0:
            return []
        if self.content:                 # a separator right after a finished row would open the next one
            self.content.append(self.sep_id)
        self.content.extend(int(i) for i in doc)
        rows, start, width = [], 0, self.width
        while len(self.content) - start >= width:
            rows.append([self.cls_id, *self.content[start:start + width], self.sep_id])
            start += width
            if start < len(self.content) and self.content[start] == self.sep_id:
                start += 1
        del self.content[:start]
        return rows

    def finish(self) -> list[list[int]]:
        if not self.content:
            return []
        row = [self.cls_id, *self.content, self.sep_id] + [self.pad_id] * (self.width - len(self.content))
        self.content = []
        return [row]


def pack_documents(docs: Iterable[Sequence[int]], seq_length: int, *, cls_id: int, sep_id: int,
                   pad_id: int) -> Iterator[list[int]]:
    """Rows of exactly ``seq_length`` ids: ``[CLS] content [SEP]``, content = the documents' ids with one
    [SEP] between documents, cut every ``seq_length - 2`` ids; the last row padded with [PAD].

    A separator that would open a row is dropped; empty documents are skipped.
    """
    packer = RowPacker(seq_length, cls_id=cls_id, sep_id=sep_id, pad_id=pad_id)
    for doc in docs:
        yield from packer.add(doc)
    yield from packer.finish()


class PackedWriter:
    """Append rows to a packed ``.npy`` file; :meth:`close` writes it (and its JSON header) atomically.

    Rows are streamed to a temporary raw file first, since ``.npy`` needs the row count in its header.
    """

    def __init__(self, path: str | os.PathLike, seq_length: int, vocab_size: int, pad_id: int):
        self.path = Path(path)
        self.seq_length = seq_length
        self.pad_id = pad_id
        self.dtype = np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".rows", dir=self.path.parent)
        self._raw_path = Path(name)
        self._raw = os.fdopen(fd, "wb")
        self.rows = 0
        self.tokens = 0            # non-padding ids, [CLS]/[SEP] included
        self._pending: list[list[int]] = []

    def add(self, row: Sequence[int]) -> None:
        if len(row) != self.seq_length:
            raise ValueError(f"row of length {len(row)}, expected {self.seq_length}")
        self._pending.append(list(row))
        if len(self._pending) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            block = np.asarray(self._pending, dtype=self.dtype)      # (rows, seq_length)
            self._raw.write(block.tobytes())
            self.rows += len(block)
            self.tokens += int((block != self.pad_id).sum())
            self._pending = []

    def close(self, header: dict[str, Any]) -> dict[str, Any]:
        """Finish the ``.npy`` file and write ``header`` (plus shape, dtype, counts) beside it."""
        self._flush()
        self._raw.close()
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as out, open(self._raw_path, "rb") as raw:
                np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                           "fortran_order": False,
                                                           "shape": (self.rows, self.seq_length)})
                shutil.copyfileobj(raw, out, 1 << 20)
        finally:
            self._raw_path.unlink(missing_ok=True)
        header = {"format": HEADER_FORMAT, "data": self.path.name, "num_sequences": self.rows,
                  "seq_length": self.seq_length, "dtype": self.dtype.name, "tokens": self.tokens, **header}
        atomic_write_text(header_path(self.path), json.dumps(header, indent=2) + "\n")
        return header

    def abort(self) -> None:
        self._raw.close()
        self._raw_path.unlink(missing_ok=True)


def header_path(data_path: str | os.PathLike) -> Path:
    return Path(data_path).with_suffix(".json")


def _tokenizer_info(tokenizer: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"vocab_size": len(tokenizer)}
    for name in ("pad", "cls", "sep", "unk", "mask"):
        info[f"{name}_token_id"] = getattr(tokenizer, f"{name}_token_id", None)
    proto = getattr(getattr(tokenizer, "_backend", None), "model_proto", None)
    if proto:
        info["spm_sha256"] = hashlib.sha256(proto).hexdigest()
    return info


def pack_corpus(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    tokenizer: Any,
    output_dir: str | os.PathLike,
    *,
    seq_length: int = 128,
    valid_fraction: float = 0.0,
    split_names: tuple[str, str] = ("train", "valid"),
    seed: int = 0,
    shuffle_buffer: int = 10_000,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Tokenize and pack text files into ``output_dir/<split>.npy`` (+ ``<split>.json`` headers).

    valid_fraction: share of documents held out (by document) into the second split; 0 writes only
        the first split (e.g. to pack an already held-out ``valid.txt`` with ``split_names=("valid", "")``).
    shuffle_buffer: documents are shuffled within windows of this many (reproducible from ``seed``).
    Returns the header of each split written.
    """
    from tqdm.auto import tqdm

    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    output_dir = Path(output_dir)
    names = [split_names[0]] + ([split_names[1]] if valid_fraction > 0 else [])
    writers = {name: PackedWriter(output_dir / f"{name}.npy", seq_length, len(tokenizer), tokenizer.pad_token_id)
               for name in names}
    files = input_files(inputs)
    documents = dict.fromkeys(names, 0)
    try:
        rng = random.Random(seed)
        docs = _shuffled(iter_documents(files), shuffle_buffer, rng)
        bar = tqdm(docs, desc=f"packing {output_dir}", unit=" docs", disable=not progress, mininterval=1.0)
        # documents of both splits are tokenized in the order read; each packer sees only its own
        pending: dict[str, list[list[int]]] = {name: [] for name in names}
        packers = {name: RowPacker(seq_length, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
                                   pad_id=tokenizer.pad_token_id) for name in names}
        batch: list[tuple[str, str]] = []
        for doc in bar:
            split = names[1] if valid_fraction > 0 and is_heldout(doc, valid_fraction, seed) else names[0]
            batch.append((split, doc))
            if len(batch) >= batch_size:
                _encode_batch(tokenizer, batch, pending)
                batch = []
                _drain(pending, packers, writers, documents)
                bar.set_postfix(rows=sum(w.rows + len(w._pending) for w in writers.values()))
        _encode_batch(tokenizer, batch, pending)
        _drain(pending, packers, writers, documents)
        for name in names:
            for row in packers[name].finish():
                writers[name].add(row)
        bar.close()
        if not any(documents.values()):
            raise DataFormatError(f"no text in {[str(f) for f in files]}: every document was empty")
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    common = {"tokenizer": _tokenizer_info(tokenizer), "inputs": [str(f) for f in files], "seed": seed,
              "valid_fraction": valid_fraction, "shuffle_buffer": shuffle_buffer}
    return {name: writers[name].close({"split": name, "documents": documents[name], **common}) for name in names}


def _encode_batch(tokenizer: Any, batch: list[tuple[str, str]], pending: dict[str, list[list[int]]]) -> None:
    if not batch:
        return
    # documents longer than the model's maximum are expected here (they are cut into rows): no warning
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Token sequence length .* is longer than the maximum")
        ids = tokenizer([doc for _, doc in batch], add_special_tokens=False, verbose=False)["input_ids"]
    for (split, _), doc_ids in zip(batch, ids):
        pending[split].append(doc_ids)


def _drain(pending: dict[str, list[list[int]]], packers: dict[str, RowPacker], writers: dict[str, PackedWriter],
           documents: dict[str, int]) -> None:
    for name, docs in pending.items():
        for doc in docs:
            documents[name] += bool(doc)
            for row in packers[name].add(doc):
                writers[name].add(row)
        docs.clear()


# ---------------------------------------------------------------------------------------- reading
class PackedDataset(torch.utils.data.Dataset):
    """Map-style dataset over a packed ``.npy`` file, memory-mapped: ``dataset[i] -> {"input_ids": (L,) long}``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"packed data not found: {self.path} (build it with pack_corpus)")
        try:
            self.data = np.load(self.path, mmap_mode="r")
        except ValueError as err:
            raise DataFormatError(f"{self.path} is not a .npy file: {err}") from err
        if self.data.ndim != 2 or self.data.dtype.kind not in "ui":
            raise DataFormatError(f"{self.path}: expected a 2-d integer array (sequences, seq_length), "
                                  f"got shape {self.data.shape} dtype {self.data.dtype}")
        header = header_path(self.path)
        self.header: dict[str, Any] = json.loads(header.read_text()) if header.is_file() else {}
        expected = (self.header.get("num_sequences"), self.header.get("seq_length"))
        if self.header and tuple(self.data.shape) != expected:
            raise DataFormatError(f"{self.path} has shape {tuple(self.data.shape)} but {header} says {expected}; "
                                  "the two files come from different runs: rebuild them")

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise :class:`DataFormatError` if the data was packed with another vocabulary than ``tokenizer``'s
        (size, special ids, or the spm.model's hash differ); data without a header is not checked."""
        packed = self.header.get("tokenizer")
        if not packed:
            return
        current = _tokenizer_info(tokenizer)
        differences = {key: (packed[key], current[key]) for key in current
                       if key in packed and packed[key] != current[key]}
        if differences:
            details = ", ".join(f"{key}: data {a!r} vs tokenizer {b!r}" for key, (a, b) in differences.items())
            raise DataFormatError(f"{self.path} was packed with a different tokenizer ({details}); pass the "
                                  "tokenizer it was packed with, or pack the text again with this one")

    @property
    def seq_length(self) -> int:
        return int(self.data.shape[1])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} sequences")
        row = np.asarray(self.data[index], dtype=np.int64)                # (L,)
        return {"input_ids": torch.from_numpy(row)}


def epoch_permutation(num_sequences: int, seed: int, epoch: int) -> torch.Tensor:
    """``(num_sequences,)`` long: the order of the rows in ``epoch``, the same for the same (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_sequences, generator=generator)


def main(argv: list[str] | None = None) -> int:
    """``python -m fastdeberta.pretraining.data``: pack text files with a tokenizer."""
    import argparse

    from ..tokenizer import Tokenizer

    parser = argparse.ArgumentParser(prog="python -m fastdeberta.pretraining.data", description=main.__doc__)
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder (spm.model + configs)")
    parser.add_argument("--input", nargs="+", required=True, help=".txt/.jsonl files or folders")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--split", default="train", help="name of the output file (default train -> train.npy)")
    parser.add_argument("--valid-fraction", type=float, default=0.0,
                        help="hold out this share of documents into valid.npy (default 0: none)")
    parser.add_argument("--seq-length", type=int, default=128, help="row length, [CLS] and [SEP] included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    tokenizer = Tokenizer.from_pretrained(args.tokenizer)
    headers = pack_corpus(args.input, tokenizer, args.output, seq_length=args.seq_length,
                          valid_fraction=args.valid_fraction, split_names=(args.split, "valid"), seed=args.seed,
                          progress=not args.no_progress)
    print(json.dumps({name: {k: h[k] for k in ("num_sequences", "seq_length", "tokens", "documents")}
                      for name, h in headers.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
