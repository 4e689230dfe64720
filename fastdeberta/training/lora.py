"""LoRA: low-rank adapters on chosen linear layers, trained while the base model stays frozen.

A wrapped layer computes ``W x + b + (alpha / r) * B (A dropout(x))`` with ``A`` (r x in, Kaiming
uniform) and ``B`` (out x r, zeros), so a fresh adapter changes nothing. Only the adapters and the
task head (``classifier``, ``pooler``, ``qa_outputs``) are trained.

Files follow peft's layout, so peft can load them onto the transformers model and the other way
round: ``adapter_model.safetensors`` with keys ``base_model.model.<module>.lora_A.weight`` /
``lora_B.weight`` (plus the head's weights as ``base_model.model.classifier.weight`` ...), and
``adapter_config.json`` (``peft_type: "LORA"``, ``r``, ``lora_alpha``, ``target_modules``,
``modules_to_save``, ...). :func:`merge_lora` folds the adapters into the base weights for export.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from ..io import atomic_path, atomic_write_text

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "HEAD_MODULES", "LoraConfig", "LoraLinear", "add_lora",
           "load_lora", "lora_state_dict", "merge_lora", "merged_state_dict", "save_lora", "save_merged",
           "trainable_parameters"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
# the head modules trained beside the adapters, by model task (peft's modules_to_save)
HEAD_MODULES = {
    "sequence-classification": ("classifier", "pooler"),
    "multiple-choice": ("classifier", "pooler"),
    "token-classification": ("classifier",),
    "question-answering": ("qa_outputs",),
}
_PEFT_TASK_TYPES = {"sequence-classification": "SEQ_CLS", "token-classification": "TOKEN_CLS",
                    "question-answering": "QUESTION_ANS", "multiple-choice": None}


@dataclass
class LoraConfig:
    r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["query_proj", "value_proj"])

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise InvalidInputError(f"LoRA rank r must be a positive int, got {self.r!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InvalidInputError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not self.target_modules:
            raise InvalidInputError("target_modules must name at least one linear layer, e.g. ['query_proj', 'value_proj']")

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, config: LoraConfig):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, config.r, bias=False,
                                device=base.weight.device, dtype=base.weight.dtype)
        self.lora_B = nn.Linear(config.r, base.out_features, bias=False,
                                device=base.weight.device, dtype=base.weight.dtype)
        self.lora_dropout = nn.Dropout(config.lora_dropout)
        self.scaling = config.scaling
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))   # peft's default initialisation
        nn.init.zeros_(self.lora_B.weight)
        base.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:        # code that reads layer.weight sees the base weight
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def delta_weight(self) -> torch.Tensor:
        """(out, in): the update the adapter adds to the base weight."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling


def _lora_layers(model: nn.Module) -> dict[str, LoraLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


def add_lora(model: nn.Module, config: LoraConfig | None = None) -> nn.Module:
    """Wrap every ``nn.Linear`` whose attribute name is in ``config.target_modules``; freeze all but the
    adapters and the task head. Changes ``model`` in place (and returns it)."""
    config = config or LoraConfig()
    if _lora_layers(model):
        raise InvalidInputError("this model already has LoRA adapters")
    if getattr(getattr(model, "config", None), "is_v1", False) and "in_proj" in config.target_modules:
        raise InvalidInputError("LoRA on DeBERTa v1's fused in_proj is not supported (its fast path reads the weight "
                         "directly); target other linear layers, e.g. pos_proj or the feed-forward 'dense'")
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in config.target_modules]
    if not targets:
        raise InvalidInputError(f"no nn.Linear named {config.target_modules} in {type(model).__name__}; linear layers "
                         f"are named e.g. {sorted({n.rsplit('.', 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})}")
    model.requires_grad_(False)
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoraLinear(module, config))
    for head in HEAD_MODULES.get(getattr(model, "task", ""), ()):
        if hasattr(model, head):
            getattr(model, head).requires_grad_(True)
    model.lora_config = config
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared tensors counted once; adapter weights included)."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _plain_name(name: str) -> str:
    """A parameter name without the wrapper level: ``x.query_proj.base.weight`` -> ``x.query_proj.weight``."""
    return name.replace(".base.", ".")


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter and head weights under peft's key names."""
    out = {}
    heads = HEAD_MODULES.get(getattr(model, "task", ""), ())
    for name, tensor in model.state_dict().items():
        if ".lora_A." in name or ".lora_B." in name or name.split(".", 1)[0] in heads:
            out[PEFT_PREFIX + name] = tensor.detach().contiguous().clone()
    return out


def _adapter_config(model: nn.Module, config: LoraConfig) -> dict[str, Any]:
    task = getattr(model, "task", "")
    return {"peft_type": "LORA", "task_type": _PEFT_TASK_TYPES.get(task), "r": config.r,
            "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
            "target_modules": sorted(config.target_modules), "bias": "none", "fan_in_fan_out": False,
            "inference_mode": True, "modules_to_save": list(HEAD_MODULES.get(task, ())),
            "base_model_name_or_path": getattr(model, "name_or_path", None), "init_lora_weights": True,
            "use_rslora": False, "use_dora": False, "layers_to_transform": None, "rank_pattern": {},
            "alpha_pattern": {}}


def save_lora(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``adapter_model.safetensors`` + ``adapter_config.json`` (peft layout) into ``folder``."""
    from safetensors.torch import save_file

    config = getattr(model, "lora_config", None)
    if config is None:
        raise InvalidInputError("this model has no LoRA adapters; call add_lora(model) first")
    folder = Path(folder)
    with atomic_path(folder / ADAPTER_WEIGHTS) as tmp:
        save_file(lora_state_dict(model), str(tmp), metadata={"format": "pt"})
    atomic_write_text(folder / ADAPTER_CONFIG, json.dumps(_adapter_config(model, config), indent=2) + "\n")
    return folder


def load_lora(model: nn.Module, folder: str | os.PathLike) -> nn.Module:
    """Add the adapters saved in ``folder`` to a base ``model`` (in place) and load their weights."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"no {path.name} in {folder}; a LoRA adapter folder holds {ADAPTER_CONFIG} "
                                    f"and {ADAPTER_WEIGHTS}")
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    if saved.get("peft_type", "LORA") != "LORA":
        raise InvalidInputError(f"{config_path}: peft_type {saved.get('peft_type')!r} is not LORA")
    targets = saved.get("target_modules") or []
    config = LoraConfig(r=int(saved["r"]), lora_alpha=float(saved["lora_alpha"]),
                        lora_dropout=float(saved.get("lora_dropout", 0.0)),
                        target_modules=[targets] if isinstance(targets, str) else list(targets))
    add_lora(model, config)
    state = {}
    for key, tensor in load_file(str(weights_path)).items():
        name = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        name = name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
        name = name.replace(".modules_to_save.default.", ".")
        state[name] = tensor
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise InvalidInputError(f"{weights_path} holds weights this model does not have, e.g. {unknown[:4]}; was the "
                         "adapter trained for another task or model size?")
    missing = [k for k in own if (".lora_A." in k or ".lora_B." in k) and k not in state]
    if missing:
        raise InvalidInputError(f"{weights_path} lacks adapter weights, e.g. {missing[:4]}")
    model.load_state_dict(state, strict=False)
    return model


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights with every adapter folded in, under the plain (adapter-free) key names."""
    layers = _lora_layers(model)
    out = {}
    for name, tensor in model.state_dict().items():
        if ".lora_A." in name or ".lora_B." in name:
            continue
        module_name = name.rsplit(".", 2)[0]
        if name.endswith(".base.weight") and module_name in layers:
            tensor = tensor + layers[module_name].delta_weight().to(tensor.dtype)
        out[_plain_name(name)] = tensor.detach().contiguous().clone()
    return out


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights and put the plain ``nn.Linear`` layers back (in place)."""
    with torch.no_grad():
        for name, layer in _lora_layers(model).items():
            layer.base.weight += layer.delta_weight().to(layer.base.weight.dtype)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer.base)
    if hasattr(model, "lora_config"):
        del model.lora_config
    model.requires_grad_(True)
    return model


def save_merged(model: nn.Module, folder: str | os.PathLike) -> Path:
    """A plain checkpoint (config.json + model.safetensors + tokenizer) with the adapters folded in; the
    live model keeps its adapters."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.export_config().save_pretrained(folder)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(merged_state_dict(model), str(tmp), metadata={"format": "pt"})
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(folder)
    return folder
