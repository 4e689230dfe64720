"""Resolve a model reference (a local folder or a Hugging Face Hub repo id) to a local folder.

Hub access goes through ``huggingface_hub`` and therefore uses the standard cache layout
(``models--org--name/snapshots/<sha>``), honours ``HF_HUB_OFFLINE`` / ``HF_HOME`` /
``HF_HUB_CACHE`` and accepts a ``revision`` (branch, tag or commit sha).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError, InputTypeError, ModelNotFoundError, UnsafePathError

# Files a DeBERTa checkpoint folder may hold; anything else in a repo (TF/Flax weights, ONNX) is skipped.
CHECKPOINT_PATTERNS = [
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "spm.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "bpe_encoder.bin",
]


def resolve_model_dir(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """Return a local folder holding the files of ``name_or_path``.

    A path to an existing folder is returned as is. The name of the model shipped in the package
    (``fastdeberta.shipped.DEFAULT_MODEL``) gives its folder (the discriminator; ``load_model`` picks the
    generator for masked-LM). Anything else is taken as a Hub repo id and fetched (or found in the
    cache) with ``huggingface_hub.snapshot_download``.
    """
    name_or_path = _checked_reference(name_or_path)
    from .shipped import shipped_folder

    shipped = shipped_folder(name_or_path)
    if shipped is not None:
        return shipped
    path = _local_path(name_or_path)
    if path is not None and path.is_dir():
        return path
    if path is not None and path.is_file():
        raise ModelNotFoundError(
            f"{str(name_or_path)!r} is a file; pass the folder that holds config.json and the weights."
        )
    name = str(name_or_path)
    if name.count("/") > 1 or name.startswith((".", "/", "~")) or not name.strip():
        raise ModelNotFoundError(
            f"No folder at {name!r}, and it is not a Hub repo id of the form 'org/name'. "
            "Check the path, or pass a repo id such as 'microsoft/deberta-v3-base'."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}
    try:
        folder = snapshot_download(
            repo_id=name,
            revision=revision,
            cache_dir=None if cache_dir is None else str(cache_dir),
            local_files_only=offline,
            allow_patterns=CHECKPOINT_PATTERNS,
            token=token,
        )
    except LocalEntryNotFoundError as err:
        where = f" in cache {cache_dir}" if cache_dir else " in the Hugging Face cache"
        rev = f" at revision {revision!r}" if revision else ""
        if offline:
            why = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set"
            raise ModelNotFoundError(
                f"Model {name!r}{rev} is not a local folder and was not found{where} while offline "
                f"({why}). Download it once with network access, or pass a folder path."
            ) from err
        raise ModelNotFoundError(
            f"Model {name!r}{rev} is not a local folder, was not found{where}, and could not be downloaded: "
            "the Hugging Face Hub could not be reached (no network connection?). Check the name and the "
            "connection, or pass a folder path."
        ) from err
    except RepositoryNotFoundError as err:
        raise ModelNotFoundError(f"No Hub repo named {name!r} (or it is private: pass token=...).") from err
    except HfHubHTTPError as err:
        raise ModelNotFoundError(f"Could not fetch {name!r} from the Hub: {err}") from err
    except ValueError as err:  # invalid repo id / revision strings
        raise ModelNotFoundError(f"Could not resolve {name!r}: {err}") from err
    return Path(folder)


def _checked_reference(name_or_path: object) -> str | os.PathLike:
    """``name_or_path`` if it can name a folder or a repo; InputTypeError / ModelNotFoundError otherwise."""
    if isinstance(name_or_path, bytes) or not isinstance(name_or_path, (str, os.PathLike)):
        raise InputTypeError(f"a model is named by a folder path or a Hub repo id (a string), got "
                             f"{type(name_or_path).__name__} {name_or_path!r:.80}")
    if not str(os.fspath(name_or_path)).strip():
        raise ModelNotFoundError("the model name is empty; pass a folder path or a Hub repo id such as "
                                 "'microsoft/deberta-v3-base'")
    return name_or_path


def _local_path(name_or_path: str | os.PathLike) -> Path | None:
    """The existing file or folder ``name_or_path`` names (``~`` expanded where possible), else None;
    a name the file system refuses (too long, a NUL byte) names nothing here and is tried as a repo id."""
    path = Path(name_or_path)
    try:
        path = path.expanduser()
    except RuntimeError:          # "~user" of an unknown user: not a home folder
        pass
    try:
        path.stat()
    except (OSError, ValueError):
        return None
    return path


def _cache_blobs(folder: Path) -> Path | None:
    """The ``blobs`` folder of the cached repo whose snapshot ``folder`` is, else None.

    A Hub cache snapshot (``models--org--name/snapshots/<sha>``) holds symlinks into
    ``models--org--name/blobs``; files reached that way are still the repo's own.
    """
    snapshots = folder.parent
    repo = snapshots.parent
    if snapshots.name == "snapshots" and repo.name.startswith("models--") and (repo / "blobs").is_dir():
        return (repo / "blobs").resolve()
    return None


def contained_file(folder: str | os.PathLike, name: object, source: str | os.PathLike) -> Path:
    """``folder / name`` for a file name read from ``source`` (a shard index, a tokenizer config).

    The name is refused unless it is a non-empty relative path that, with every symlink resolved, stays
    inside ``folder`` -- or inside the cache's ``blobs`` folder of the same repo when ``folder`` is a
    Hub cache snapshot. A checkpoint therefore cannot make fastdeberta read ``../../other/model`` or
    ``/etc/passwd``. Raises :class:`UnsafePathError` (a CheckpointError, so a ValueError).
    """
    folder = Path(folder)
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise CheckpointError(f"{source} names the file {name!r}, which is not a file name; the file is corrupt.")
    relative = Path(name)
    resolved_folder = folder.resolve()
    candidate = (folder / relative).resolve()
    roots = [resolved_folder] + [blobs for blobs in (_cache_blobs(resolved_folder),) if blobs is not None]
    if relative.is_absolute() or not any(candidate.is_relative_to(root) for root in roots):
        raise UnsafePathError(
            f"{source} names the file {name!r}, which resolves to {candidate}, outside the checkpoint folder "
            f"{resolved_folder}. fastdeberta reads only files inside the checkpoint folder; this checkpoint "
            "is broken or was crafted to read other files. Do not use it, or fix the name in the file."
        )
    return folder / relative
