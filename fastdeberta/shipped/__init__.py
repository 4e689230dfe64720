"""The model shipped inside the package: a small DeBERTa-v3 pretrained by this project (RTD + GDES on
open English text; see ``deberta-v3-tiny-en/README.md``, its model card). It is the offline default of
the pipelines, the CLI and ``make demo``.

``fastdeberta.from_pretrained(DEFAULT_MODEL)`` loads the discriminator (an encoder: embeddings,
classification fine-tuning) or, for ``task="masked-lm"``, the generator (a masked LM with the Enhanced
Mask Decoder: fill-mask).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "SHIPPED", "shipped_folder"]

DEFAULT_MODEL = "fastdeberta/deberta-v3-tiny-en"
SHIPPED = {DEFAULT_MODEL: Path(__file__).parent / "deberta-v3-tiny-en"}


def shipped_folder(name: str | os.PathLike, task: str | None = None) -> Path | None:
    """The folder of a shipped model for ``task`` (generator for masked-lm, discriminator otherwise), or
    None when ``name`` is not a shipped model's name."""
    root = SHIPPED.get(str(name))
    if root is None:
        return None
    folder = root / ("generator" if task == "masked-lm" else "discriminator")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"the shipped model {name!r} is missing from this installation ({folder} has no config.json); "
            "reinstall fastdeberta, or pass another model.")
    return folder
