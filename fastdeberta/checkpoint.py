"""Reading and writing DeBERTa checkpoints (Hugging Face layout).

Weights are read from ``model.safetensors`` (preferred), sharded safetensors (``*.index.json``) or
``pytorch_model.bin`` through ``torch.load(weights_only=True)`` — never a plain pickle. Keys are
normalised by pure ``state_dict -> state_dict`` functions; anything left unexplained is an error
that names the keys.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from .compat import (
    check_config_overrides,
    read_sentence_transformers_files,
    transformers_load_options,
    weight_file_names,
)
from .config import DebertaConfig
from .errors import CheckpointError, InvalidInputError, TokenizerLoadError, UnsafePathError  # noqa: F401 (re-exported)
from .hub import contained_file, resolve_model_dir
from .io import _fsync_dir as fsync  # works on files too
from .model.deberta import TASK_BY_SUFFIX, TASKS, TIED_KEYS, DebertaForMaskedLM, DebertaPreTrained

logger = logging.getLogger("fastdeberta")

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
PREFIX = "deberta."
ABSOLUTE_POSITIONS = "deberta.embeddings.position_embeddings.weight"
# Heads a checkpoint may carry that a model for another task does not use.
HEAD_PREFIXES = ("cls.", "lm_predictions.", "mask_predictions.", "pooler.", "classifier.", "qa_outputs.")

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


# ----------------------------------------------------------------------------- reading files
def find_weight_file(folder: Path, names: tuple[str, ...] | None = None) -> Path:
    names = names or WEIGHT_FILES
    for name in names:
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise CheckpointError(
        f"no weights in {folder}: looked for {', '.join(names)}; the folder holds {present}. "
        "TensorFlow/Flax-only checkpoints must be converted to PyTorch first."
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({err}). The download may be incomplete or the "
            "file corrupt: delete it and download again."
        ) from err


def _read_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types here (UnpicklingError, RuntimeError, EOFError)
        raise CheckpointError(
            f"{path} could not be read as a PyTorch weights file with weights_only=True ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). It is corrupt, or it contains Python objects "
            "besides tensors, which fastdeberta refuses to unpickle. Convert it to safetensors."
        ) from err
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors (a state_dict).")
    return data


def _shard_files(index_path: Path) -> list[Path]:
    """The shard files a ``*.index.json`` names, each checked to lie inside the checkpoint folder."""
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{index_path} is not valid JSON ({err}); re-download it.") from err
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path} is not a valid shard index: it needs a non-empty 'weight_map' "
                              "object from weight names to shard file names.")
    names = []
    for name in weight_map.values():
        if not isinstance(name, str):
            raise CheckpointError(f"{index_path}: weight_map values must be shard file names, found {name!r}.")
        names.append(name)
    shards = []
    for name in sorted(set(names)):
        shard = contained_file(index_path.parent, name, index_path)
        if not name.endswith((".safetensors", ".bin")):   # an index naming an index would recurse forever
            raise CheckpointError(f"{index_path} names the shard {name!r}; shards are .safetensors or .bin files.")
        if not shard.is_file():
            raise CheckpointError(f"shard {name} listed in {index_path.name} is missing from {index_path.parent}")
        shards.append(shard)
    return shards


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read one weights file or a sharded index (whose shard names must stay inside its folder)."""
    if path.name.endswith(".index.json"):
        state: dict[str, torch.Tensor] = {}
        for shard in _shard_files(path):
            state.update(read_state_dict(shard))
        return state
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_bin(path)


def warn_non_finite(state: dict[str, torch.Tensor], source: str | os.PathLike) -> list[str]:
    """Warn, naming the tensors, when loaded weights hold NaN or Inf; returns their names."""
    # One float32 sum per tensor is NaN/Inf exactly when an element is (8x cheaper than isfinite().all():
    # ~0.1 s for a base-size model); the rare non-finite sum is confirmed element-wise (overflow).
    bad = [key for key, value in state.items()
           if value.is_floating_point() and not bool(torch.isfinite(value.sum(dtype=torch.float32)))
           and not bool(torch.isfinite(value).all())]
    if bad:
        listed = ", ".join(bad[:8]) + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else "")
        warnings.warn(f"{source}: {len(bad)} weight tensor(s) hold NaN or Inf values: {listed}. Outputs that "
                      "use them will be NaN; the file is damaged (download it again) or comes from a diverged "
                      "training run.", RuntimeWarning, stacklevel=3)
    return bad


# ----------------------------------------------------------------------------- key normalisation
def normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old-style names -> current: LayerNorm gamma/beta -> weight/bias; base-model keys get the
    ``deberta.`` prefix; non-persistent buffers (position_ids) are dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key.endswith(".gamma"):
            key = key[: -len("gamma")] + "weight"
        elif key.endswith(".beta"):
            key = key[: -len("beta")] + "bias"
        if key.startswith(("embeddings.", "encoder.")):
            key = PREFIX + key
        if key.startswith("bert."):
            key = PREFIX + key[len("bert."):]
        out[key] = value
    # The legacy MLM decoder is tied to the word embeddings; its bias is the head bias.
    decoder_bias = out.pop("cls.predictions.decoder.bias", None)
    if decoder_bias is not None:
        out.setdefault("cls.predictions.bias", decoder_bias)
    out.pop("cls.predictions.decoder.weight", None)
    return out


def mlm_head_layout(state: dict[str, torch.Tensor], config: DebertaConfig) -> str:
    if any(k.startswith("lm_predictions.lm_head.") for k in state):
        return "lm_predictions"
    if any(k.startswith("cls.predictions.") for k in state):
        return "legacy"
    return "legacy" if config.legacy else "lm_predictions"


# ----------------------------------------------------------------------------- building models
def build_model(config: DebertaConfig, task: str, state: dict[str, torch.Tensor] | None = None,
                enhanced_mask_decoder: bool | None = None) -> DebertaPreTrained:
    if task not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    cls = TASKS[task]
    if cls is DebertaForMaskedLM:
        if state is None:
            return DebertaForMaskedLM(config)
        emd = (not config.position_biased_input and config.relative_attention and ABSOLUTE_POSITIONS in state)
        if enhanced_mask_decoder is not None:   # the caller's choice wins over the checkpoint's
            emd = bool(enhanced_mask_decoder)
        return DebertaForMaskedLM(config, head_layout=mlm_head_layout(state, config), enhanced_mask_decoder=emd)
    return cls(config)


def _model_keys(model: DebertaPreTrained) -> dict[str, torch.Tensor]:
    """The model's state dict with every key in checkpoint form (``deberta.`` prefix for the base);
    tied copies (``cls.predictions.decoder.*``) are left out, as in transformers' files."""
    sd = {k: v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    if model.task == "base":
        return {PREFIX + k: v for k, v in sd.items()}
    return dict(sd)


def check_state_shapes(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming every weight whose shape differs between ``state`` and the model."""
    mismatched = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if mismatched:
        lines = "; ".join(f"{k}: checkpoint {a} vs model {b}" for k, a, b in mismatched[:8])
        more = f" (+{len(mismatched) - 8} more)" if len(mismatched) > 8 else ""
        hint = " config.json does not describe these weights (sizes such as vocab_size or hidden_size differ)."
        if any(k.startswith(("classifier.", "qa_outputs.")) for k, _, _ in mismatched):
            hint = " The head was trained for another number of labels: pass num_labels to match, or " \
                   "ignore_mismatched_sizes=True to start a new head."
        raise CheckpointError(f"weights in {source} have the wrong shape: {lines}{more}.{hint}")


def check_shapes_against_config(config: DebertaConfig, task: str, state: dict[str, torch.Tensor], source: str,
                                ignore_mismatched_sizes: bool = False) -> None:
    """Compare the checkpoint with the model the config describes before memory is allocated for it:
    a config claiming a 10-billion-word vocabulary over a 2,000-row table fails here, not in the
    allocator. With ``ignore_mismatched_sizes`` the mismatched weights are dropped (started anew)."""
    layers = [int(key.split(".")[3]) for key in state if key.startswith(PREFIX + "encoder.layer.")
              and key.split(".")[3].isdigit()]
    stored = max(layers) + 1 if layers else 0
    if config.num_hidden_layers > stored:       # even a meta model of 10^9 layers would take forever to build
        raise CheckpointError(
            f"config.json says num_hidden_layers={config.num_hidden_layers}, but {source} holds weights for "
            f"{stored} layers (no {PREFIX}encoder.layer.{stored}.* weights); the config does not describe "
            "these weights.")
    with torch.device("meta"):
        expected = _model_keys(build_model(config, task, state))
    if not ignore_mismatched_sizes:
        check_state_shapes(expected, state, source)
        return
    for key in [k for k in state if k in expected and state[k].shape != expected[k].shape]:
        warnings.warn(f"{key}: shape {tuple(state[key].shape)} in the checkpoint, "
                      f"{tuple(expected[key].shape)} in the model; starting it anew.", stacklevel=3)
        del state[key]


def load_state(model: DebertaPreTrained, state: dict[str, torch.Tensor], *, strict: bool = True,
               source: str = "checkpoint") -> dict[str, list[str]]:
    """Copy ``state`` (normalised keys) into ``model``; raise on anything unexplained.

    Returns the lists of newly initialised and ignored keys.
    """
    expected = _model_keys(model)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    check_state_shapes(expected, state, source)

    head_keys = [k for k in missing if k.startswith(HEAD_PREFIXES)]
    core_missing = [k for k in missing if k not in head_keys]
    if model.task == "masked-lm" and ABSOLUTE_POSITIONS in core_missing:
        core_missing.remove(ABSOLUTE_POSITIONS)
        head_keys.append(ABSOLUTE_POSITIONS)
    if core_missing:
        raise CheckpointError(
            f"{source} lacks {len(core_missing)} encoder weights this config needs, e.g. {core_missing[:6]}. "
            "The config.json does not match the weights (wrong model_type, layer count or attention type?)."
        )
    ignorable = [k for k in unexpected if k.startswith(HEAD_PREFIXES) or k == ABSOLUTE_POSITIONS]
    unknown = [k for k in unexpected if k not in ignorable]
    if unknown and strict:
        raise CheckpointError(
            f"{source} has {len(unknown)} weights that a DeBERTa {model.task!r} model does not have, e.g. "
            f"{unknown[:6]}. Is this a DeBERTa checkpoint? Pass strict=False to ignore them."
        )
    if head_keys:
        message = (f"{model.hf_architecture}: newly initialised weights not in {source}: "
                   f"{', '.join(head_keys[:6])}{' ...' if len(head_keys) > 6 else ''} — train this head before use.")
        warnings.warn(message, stacklevel=3)
    if ignorable:
        logger.info("ignored %d checkpoint weights not used by task %r: %s", len(ignorable), model.task,
                    ignorable[:6])
    own = {(k[len(PREFIX):] if model.task == "base" else k): state[k] for k in expected if k in state}
    model.load_state_dict(own, strict=False)
    return {"initialised": head_keys, "ignored": ignorable + unknown}


DTYPE_CHOICES = (
    "'float32' (or 'fp32', 'float'), 'bfloat16' ('bf16'), 'float16' ('fp16', 'half'), each also as "
    "'torch.<name>'; 'auto' (the torch_dtype of config.json); None (as stored); or a floating-point "
    "torch.dtype such as torch.bfloat16"
)


def check_dtype(dtype: Any) -> torch.dtype | str | None:
    """``dtype`` as a floating-point ``torch.dtype``, ``"auto"`` or None; refused before any file is read."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        if dtype.is_floating_point:
            return dtype
        raise InvalidInputError(f"dtype {dtype} is not a floating-point type, so the weights cannot be loaded in it; "
                         f"accepted: {DTYPE_CHOICES}")
    if isinstance(dtype, str):
        if dtype == "auto":
            return "auto"
        name = dtype.removeprefix("torch.")
        if name in DTYPES:
            return DTYPES[name]
    raise InvalidInputError(f"unknown dtype {dtype!r}; accepted: {DTYPE_CHOICES}")


def _resolve_dtype(dtype: torch.dtype | str | None, config: DebertaConfig) -> torch.dtype | None:
    """The checked ``dtype`` with "auto" replaced by config.json's ``torch_dtype`` (None: keep as stored)."""
    if dtype != "auto":
        return dtype
    name = config.extra.get("torch_dtype") or config.extra.get("dtype")
    return DTYPES.get(str(name), None) if name else None


def cpu_bf16_fallback(dtype: torch.dtype | None, device: torch.device | None) -> torch.dtype | None:
    """bfloat16 on a CPU without native bf16 (no avx512_bf16 / AMX) is emulated and several times slower
    than float32 (0.15x measured on a Zen 3): load in float32 instead, and say so.
    ``FASTDEBERTA_FORCE_BF16=1`` keeps bf16 anyway (e.g. to check bf16 numerics on such a CPU)."""
    if dtype != torch.bfloat16 or (device is not None and device.type != "cpu"):
        return dtype
    if os.environ.get("FASTDEBERTA_FORCE_BF16", "").lower() in {"1", "true", "yes"}:
        return dtype
    from .hardware import bf16_support

    native, reason = bf16_support("cpu")
    if native:
        return dtype
    warnings.warn(f"bfloat16 requested, but {reason}; loading in float32 instead (set FASTDEBERTA_FORCE_BF16=1 "
                  "to keep bf16).", RuntimeWarning, stacklevel=3)
    return torch.float32


def check_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a ``torch.device``; refused before any weights are read when it cannot be used."""
    if device is None:
        return None
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InvalidInputError(
            f"device {device!r} is not a torch device ({err}); use e.g. 'cpu' or 'cuda:0'"
        ) from err
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInputError(
                f"device {device!r} needs CUDA, which torch {torch.__version__} cannot use here (no GPU, "
                "or a CPU-only build of torch); use device='cpu'."
            )
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise InvalidInputError(
                f"device {device!r} does not exist: torch sees {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0; use one of them."
            )
    return target


def infer_task(config: DebertaConfig) -> str:
    for arch in config.extra.get("architectures") or []:
        for suffix, task in TASK_BY_SUFFIX.items():
            if arch.endswith(suffix) and arch.startswith("Deberta"):
                return task
    return "base"


def load_model(
    name_or_path: str | os.PathLike,
    task: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    dtype: Any = None,
    device: str | torch.device | None = None,
    strict: bool = True,
    ignore_mismatched_sizes: bool = False,
    attention: str | None = None,
    load_tokenizer: bool = True,
    torch_dtype: Any = None,
    device_map: Any = None,
    attn_implementation: str | None = None,
    use_safetensors: bool | None = None,
    low_cpu_mem_usage: bool | None = None,
    trust_remote_code: bool | None = None,
    enhanced_mask_decoder: bool | None = None,
    **config_overrides: Any,
) -> DebertaPreTrained:
    """Load a DeBERTa checkpoint from a folder or the Hugging Face Hub.

    ``task``: "base", "masked-lm", "sequence-classification", "token-classification",
    "question-answering", "multiple-choice"; None picks it from config.json's ``architectures``.
    Extra keyword arguments override config fields (e.g. ``num_labels=3``).
    ``dtype``: "float32", "bfloat16", "float16" (and their short names), "auto" (config.json's
    ``torch_dtype``), a floating-point ``torch.dtype`` or None (as stored); checked, like ``device``,
    before any file is read. Tokenizer files that cannot be read raise :class:`TokenizerLoadError`
    (a ``ValueError``); ``load_tokenizer=False`` loads the model without them.

    transformers' names work too (see :mod:`fastdeberta.compat`): ``torch_dtype`` (= ``dtype``),
    ``device_map`` (one device, or "auto"), ``attn_implementation`` ("eager" = "reference", "sdpa" =
    "fast"), ``use_safetensors`` (True: only safetensors files; False: only .bin), ``output_hidden_states``
    / ``output_attentions`` (the forward defaults), ``low_cpu_mem_usage`` and ``trust_remote_code``
    (accepted, no effect). ``enhanced_mask_decoder`` (masked-LM) overrides the checkpoint's choice. Any
    other keyword must be a config field, else it is an error naming the closest known keyword.
    """
    dtype, device, attention = transformers_load_options(
        dtype=dtype, torch_dtype=torch_dtype, device=device, device_map=device_map, attention=attention,
        attn_implementation=attn_implementation, use_safetensors=use_safetensors,
        low_cpu_mem_usage=low_cpu_mem_usage, trust_remote_code=trust_remote_code)
    device = check_device(device)
    dtype = check_dtype(dtype)
    from .shipped import shipped_folder

    folder = shipped_folder(name_or_path, task) or resolve_model_dir(
        name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    engine = config_overrides.pop("engine", None)   # "torch", "onnxruntime"; None: onnxruntime for an ONNX export
    if engine not in (None, "torch", "onnxruntime"):
        raise ValueError(f"unknown engine {engine!r}; choose 'torch' or 'onnxruntime'")
    if engine == "onnxruntime" or (engine is None and _is_onnx_folder(folder)):
        from .export.engine import load_onnx_model

        return load_onnx_model(folder, task, device=device, dtype=dtype, load_tokenizer=load_tokenizer,
                               name_or_path=str(name_or_path), **config_overrides)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"no config.json in {folder}; a DeBERTa checkpoint folder needs one.")
    config = DebertaConfig.from_json_file(config_path)
    check_config_overrides(config_overrides, config)
    if config_overrides:
        if "id2label" in config_overrides and "num_labels" not in config_overrides:
            config_overrides["num_labels"] = len(config_overrides["id2label"])
        config = config.replace(**config_overrides)
    task = task or infer_task(config)
    weights = find_weight_file(folder, weight_file_names(use_safetensors))
    state = normalise_keys(read_state_dict(weights))
    warn_non_finite(state, weights)
    check_shapes_against_config(config, task, state, str(weights), ignore_mismatched_sizes)
    model = build_model(config, task, state, enhanced_mask_decoder)
    load_state(model, state, strict=strict, source=str(weights))
    model.set_attention_implementation(attention)
    torch_dtype = cpu_bf16_fallback(_resolve_dtype(dtype, config), device)
    if torch_dtype is not None:
        model.to(torch_dtype)
    if device is not None:
        model.to(device)
    model.eval()
    model.name_or_path = model.config.name_or_path = str(name_or_path)
    if load_tokenizer:
        model.tokenizer = _try_tokenizer(folder)
    model.sentence_transformers_settings(read_sentence_transformers_files(folder))
    return model


LOAD_TOKENIZER_HINT = (
    "To load the model without it, pass load_tokenizer=False to fastdeberta.from_pretrained, then give a "
    "tokenizer separately (e.g. tokenizer=fastdeberta.Tokenizer.from_pretrained(FOLDER_OR_REPO_ID))."
)


def _is_onnx_folder(folder: Path) -> bool:
    from .export.engine import is_onnx_folder

    return is_onnx_folder(folder)


def _try_tokenizer(folder: Path):
    vocab_files = ("spm.model", "vocab.json", "tokenizer.json", "bpe_encoder.bin")
    if not any((folder / f).is_file() for f in vocab_files):
        return None
    from .tokenizer import Tokenizer

    try:
        return Tokenizer.from_pretrained(folder)
    except Exception as err:  # unreadable or inconsistent tokenizer files; the libraries raise many types
        raise TokenizerLoadError(folder, err, LOAD_TOKENIZER_HINT) from err


# ----------------------------------------------------------------------------- saving
def export_state_dict(model: DebertaPreTrained) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' key names, each tensor contiguous and unshared."""
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if k not in TIED_KEYS}


def save_checkpoint(model: DebertaPreTrained, folder: str | os.PathLike, *, tokenizer: Any = None) -> Path:
    """Write config.json + model.safetensors (+ the files of ``tokenizer``) into ``folder``.

    Nothing is lost on failure: every file is first written complete into a temporary folder inside
    ``folder``, then moved into place with ``os.replace``, config.json last. An error while writing
    (disk full, a tensor that cannot be saved, a tokenizer that fails) leaves the folder exactly as it
    was, so a model saved there before still loads. Other files in ``folder`` are left alone.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fastdeberta-save-", dir=folder))
    try:
        save_file(export_state_dict(model), str(staging / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        model.export_config().save_pretrained(staging)
        written = sorted(staging.iterdir(), key=lambda p: (p.name == "config.json", p.name))
        for path in written:              # on disk before any is renamed over an old file
            fsync(path)
        for path in written:
            os.replace(path, folder / path.name)
        fsync(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder

