"""Resolve a model reference (a local folder or a Hugging Face Hub repo id) to a local folder.

Hub access goes through ``huggingface_hub`` and therefore uses the standard cache layout
(``models--org--name/snapshots/<sha>``), honours ``HF_HUB_OFFLINE`` / ``HF_HOME`` /
``HF_HUB_CACHE`` and accepts a ``revision`` (branch, tag or commit sha).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelNotFoundError

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

    A path to an existing folder is returned as is. Anything else is taken as a Hub repo id and
    fetched (or found in the cache) with ``huggingface_hub.snapshot_download``.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
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
        raise ModelNotFoundError(
            f"Model {name!r}{rev} is not a local folder and was not found{where} while offline "
            f"(HF_HUB_OFFLINE/local_files_only). Download it once with network access, or pass a folder path."
        ) from err
    except RepositoryNotFoundError as err:
        raise ModelNotFoundError(f"No Hub repo named {name!r} (or it is private: pass token=...).") from err
    except HfHubHTTPError as err:
        raise ModelNotFoundError(f"Could not fetch {name!r} from the Hub: {err}") from err
    except ValueError as err:  # invalid repo id / revision strings
        raise ModelNotFoundError(f"Could not resolve {name!r}: {err}") from err
    return Path(folder)
