"""Training checkpoints: written atomically, restored exactly.

A checkpoint is the folder ``checkpoint-<step>`` holding

    state.safetensors   every tensor of the model being trained (its own state_dict, tied ones once)
    model/              the user-facing model (the trainer's ``save_model``: e.g. a transformers folder)
    optimizer.pt        optimizer.state_dict()      (tensors and plain containers:
    scheduler.pt        scheduler.state_dict()       loadable with torch.load(weights_only=True))
    rng.pt              torch (CPU and CUDA), Python and numpy random states (under torchrun:
                        {"world_size": N, "ranks": [one such state per process]})
    trainer_state.json  step, best metric, pending log window, the arguments

It is assembled in a temporary sibling folder and renamed into place, so a checkpoint folder that
exists is complete; a crash mid-write leaves only a ``.checkpoint-<step>.*.tmp`` folder, which
``latest_checkpoint`` ignores and ``remove_partial`` deletes.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from torch import nn

from ..io import atomic_folder, atomic_write_text

__all__ = ["CHECKPOINT_PREFIX", "checkpoint_steps", "latest_checkpoint", "load_checkpoint", "read_rng_state",
           "remove_partial", "rng_state", "save_checkpoint", "set_rng_state"]

CHECKPOINT_PREFIX = "checkpoint-"
_CHECKPOINT = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
_STATE_FILES = ("state.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json")


def rng_state() -> dict[str, Any]:
    """Every random state a training step may draw from, as tensors and plain numbers (so that
    ``torch.load(weights_only=True)`` reads it back)."""
    _, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    _, python_state, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(python_state),
        "python_gauss": python_gauss,
        "numpy": torch.from_numpy(numpy_keys.astype(np.int64)),
        "numpy_pos": int(numpy_pos),
        "numpy_has_gauss": int(numpy_has_gauss),
        "numpy_gauss": float(numpy_gauss),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_steps(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir`` as (step, folder), oldest first."""
    found = []
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            match = _CHECKPOINT.match(child.name)
            if match and child.is_dir() and all((child / f).is_file() for f in _STATE_FILES):
                found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    steps = checkpoint_steps(output_dir)
    return steps[-1][1] if steps else None


def remove_partial(output_dir: Path) -> list[Path]:
    """Delete temporary folders left by a write that was interrupted; returns what was removed."""
    removed = []
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            if child.is_dir() and child.name.startswith(".") and child.name.endswith(".tmp"):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def save_checkpoint(output_dir: Path, step: int, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict[str, Any],
                    save_model: Callable[[nn.Module, Path], None] | None, rng: Any = None) -> Path:
    """Write ``checkpoint-<step>`` atomically; ``rng`` replaces this process's random state (default)."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    with atomic_folder(final) as folder:
        save_safetensors_model(model, str(folder / "state.safetensors"))
        if save_model is not None:
            save_model(model, folder / "model")
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(scheduler.state_dict(), folder / "scheduler.pt")
        torch.save(rng_state() if rng is None else rng, folder / "rng.pt")
        atomic_write_text(folder / "trainer_state.json", json.dumps(trainer_state, indent=2, default=str))
    return final


def load_checkpoint(folder: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, restore_rng: bool = True) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and (unless ``restore_rng=False``) RNG states; return the
    trainer state."""
    missing, unexpected = load_safetensors_model(model, str(folder / "state.safetensors"), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {folder} does not match the model being trained (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}); resume with the same model and task as the run that wrote it."
        )
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    if restore_rng:
        rng = read_rng_state(folder)
        set_rng_state(rng["ranks"][0] if "ranks" in rng else rng)
    return json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))


def read_rng_state(folder: Path) -> dict[str, Any]:
    """The saved random state(s) of ``checkpoint-<step>`` (see the module docstring for the layout)."""
    return torch.load(folder / "rng.pt", weights_only=True)
