"""Atomic writes: every file or folder the project writes appears complete or not at all.

A file is written to a temporary name in the same folder and renamed into place once complete
(``os.replace`` is atomic within one filesystem), so a crash, a full disk or an exception mid-write
leaves the previous file untouched and no partial file under the final name. A folder is built
under a temporary sibling name and swapped in the same way; the previous folder, if any, is kept
until the new one is in place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_folder"]


def _umask() -> int:
    mask = os.umask(0)          # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _default_mode(path: Path, *, folder: bool) -> None:
    """Give a temporary file/folder (created owner-only by tempfile) the permissions a plain
    open()/mkdir() would have given it, so atomic writes do not change who may read the result."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):           # not every platform/filesystem allows it
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it is renamed to ``path``.

    Write the file yourself (any library that takes a path: numpy, safetensors, pyarrow). On an
    exception the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    _default_mode(tmp, folder=False)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:        # flush the data to disk before the rename
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on normal exit it replaces ``path``.

    If ``path`` exists it is moved aside first and deleted only after the new folder is in place,
    so at every instant either the old or the new folder is complete under ``path`` (a crash between
    the two renames leaves the old one under ``.<name>.old-*``, never a half-written one under
    ``path``). On an exception the temporary folder is removed and ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    _default_mode(tmp, folder=True)
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            old.rmdir()
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
