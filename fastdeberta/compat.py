"""Habits of transformers and sentence-transformers users, translated to fastdeberta.

* Loading keywords as transformers names them (``torch_dtype``, ``device_map``, ``attn_implementation``,
  ``use_safetensors``, ``low_cpu_mem_usage``, ``trust_remote_code``) -> this package's options; any
  keyword that is neither a loading option nor a config field is an error naming the closest known
  name (transformers' ``from_pretrained`` would fail later, or store it silently in the config).
* The files of a sentence-transformers model folder (``modules.json``, ``sentence_bert_config.json``,
  ``config_sentence_transformers.json``, ``1_Pooling/config.json``), written next to a saved model so
  that ``SentenceTransformer(folder)`` loads it with the same embeddings, and read back (prompts,
  pooling, similarity function) by :func:`fastdeberta.from_pretrained`.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from .errors import InputTypeError, InvalidInputError

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "SIMILARITY_FUNCTIONS",
    "SentenceTransformersMixin",
    "check_config_overrides",
    "read_sentence_transformers_files",
    "transformers_load_options",
    "weight_file_names",
    "write_sentence_transformers_files",
]

# transformers' attention names -> this package's implementations (the math is the same; "eager"
# materialises the probabilities like transformers' eager code, "sdpa" uses scaled_dot_product_attention)
ATTN_IMPLEMENTATIONS = {"eager": "reference", "sdpa": "fast", "reference": "reference", "fast": "fast"}

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
BIN_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")

# keywords of fastdeberta.from_pretrained itself (for "did you mean" suggestions)
LOAD_KEYWORDS = (
    "task", "revision", "cache_dir", "local_files_only", "token", "dtype", "device", "strict",
    "ignore_mismatched_sizes", "attention", "load_tokenizer", "torch_dtype", "device_map", "attn_implementation",
    "use_safetensors", "low_cpu_mem_usage", "trust_remote_code", "enhanced_mask_decoder", "engine",
)
# transformers' config attributes that are not DebertaConfig fields but may be set at load time
CONFIG_ATTRIBUTES = ("output_hidden_states", "output_attentions", "architectures", "tie_word_embeddings",
                     "dtype", "return_dict")


def _closest(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def transformers_load_options(*, dtype: Any, torch_dtype: Any, device: Any, device_map: Any, attention: str | None,
                              attn_implementation: str | None, use_safetensors: Any,
                              low_cpu_mem_usage: Any, trust_remote_code: Any) -> tuple[Any, Any, str]:
    """transformers' loading keywords -> (dtype, device, attention) for fastdeberta.from_pretrained.

    ``torch_dtype`` is an alias of ``dtype``; ``device_map`` names one device ("cpu", "cuda", "cuda:1",
    an int, a torch.device, "auto" = the GPU when there is one, else the CPU, or a dict mapping every
    module to the same device); ``attn_implementation`` "eager" / "sdpa" map to "reference" / "fast".
    ``low_cpu_mem_usage`` and ``trust_remote_code`` are accepted and change nothing (the weights are
    read once, memory-mapped from safetensors; no code is ever run from a checkpoint).
    """
    for name, value in (("use_safetensors", use_safetensors), ("low_cpu_mem_usage", low_cpu_mem_usage),
                        ("trust_remote_code", trust_remote_code)):
        if value is not None and not isinstance(value, bool):
            raise InputTypeError(f"{name} must be True, False or None, got {value!r}")
    if torch_dtype is not None:
        if dtype is not None and dtype != torch_dtype:
            raise InvalidInputError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; torch_dtype is "
                                    "transformers' older name of dtype: pass one of them")
        dtype = torch_dtype
    if device_map is not None:
        mapped = _device_of_map(device_map)
        if device is not None and str(device) != str(mapped):
            raise InvalidInputError(f"device={device!r} and device_map={device_map!r} disagree; pass one of them")
        device = mapped
    if attn_implementation is not None:
        if attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise InvalidInputError(
                f"attn_implementation {attn_implementation!r} is not available for DeBERTa; use 'eager' "
                "(= fastdeberta's 'reference': the equations, attention probabilities materialised) or 'sdpa' "
                "(= 'fast': fused bias + scaled_dot_product_attention, the default)")
        chosen = ATTN_IMPLEMENTATIONS[attn_implementation]
        if attention not in (None, chosen):
            raise InvalidInputError(f"attention={attention!r} and attn_implementation={attn_implementation!r} "
                                    "disagree; pass one of them")
        attention = chosen
    return dtype, device, attention or "fast"


def _device_of_map(device_map: Any) -> Any:
    """The one device a transformers ``device_map`` names (multi-device maps are refused)."""
    import torch

    if isinstance(device_map, dict):
        devices = {str(v) if not isinstance(v, int) else f"cuda:{v}" for v in device_map.values()}
        if len(devices) != 1:
            raise InvalidInputError(
                f"device_map places modules on {len(devices)} devices ({sorted(devices)}); fastdeberta runs a "
                "model on one device. DeBERTa checkpoints fit one GPU: pass device_map='cuda' or device='cuda:0'.")
        (only,) = devices
        return only
    if isinstance(device_map, int) and not isinstance(device_map, bool):
        return f"cuda:{device_map}" if device_map >= 0 else "cpu"
    if isinstance(device_map, torch.device):
        return device_map
    if isinstance(device_map, str):
        if device_map == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device_map in ("balanced", "balanced_low_0", "sequential"):
            raise InvalidInputError(f"device_map={device_map!r} splits a model over devices; fastdeberta runs "
                                    "it on one: pass device_map='auto', 'cuda' or 'cpu'")
        return device_map
    raise InputTypeError(f"device_map must be a device name, an int, a torch.device, 'auto' or a dict of one "
                         f"device, got {type(device_map).__name__}: {device_map!r}")


def weight_file_names(use_safetensors: bool | None) -> tuple[str, ...] | None:
    """The weight files to look for: None = all (safetensors first), True = safetensors, False = .bin."""
    if use_safetensors is None:
        return None
    return SAFETENSORS_FILES if use_safetensors else BIN_FILES


def check_config_overrides(overrides: dict[str, Any], config: Any, where: str = "fastdeberta.from_pretrained") -> None:
    """Refuse keywords that are neither config fields (DebertaConfig's, transformers' or config.json's)
    nor loading options, naming the closest known name."""
    config_names = {f.name for f in fields(config)} - {"extra"}
    known_config = config_names | set(CONFIG_ATTRIBUTES) | set(config.extra)
    unknown = [k for k in overrides if k not in known_config]
    if unknown:
        name = unknown[0]
        vocabulary = sorted(known_config | set(LOAD_KEYWORDS))
        raise InputTypeError(
            f"{where}() got an unknown keyword argument {name!r}.{_closest(name, vocabulary)} Keywords are loading "
            "options (dtype/torch_dtype, device/device_map, attn_implementation, revision, ...) or config.json "
            "fields to override (e.g. num_labels=3, output_hidden_states=True)"
            + (f"; also unknown: {unknown[1:]}" if len(unknown) > 1 else ""))


def check_known_keywords(kwargs: dict[str, Any], known: tuple[str, ...] | list[str], where: str,
                         accepted: str | None = None) -> None:
    """Raise InputTypeError for the first keyword of ``kwargs`` not in ``known`` (closest name suggested);
    ``accepted`` describes the known keywords (default: all of them listed)."""
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        accepted = accepted or f"Accepted: {', '.join(sorted(set(known)))}"
        raise InputTypeError(f"{where} got an unknown keyword argument {unknown[0]!r}."
                             f"{_closest(unknown[0], list(known))} {accepted}")


# ----------------------------------------------------------------------------- sentence-transformers files
SIMILARITY_FUNCTIONS = ("cosine", "dot", "euclidean", "manhattan")
ST_POOLING_MODES = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                    "max": "pooling_mode_max_tokens"}


def write_sentence_transformers_files(folder: str | os.PathLike, *, hidden_size: int, max_seq_length: int,
                                      pooling: str = "mean", normalize: bool = False,
                                      prompts: dict[str, str] | None = None, default_prompt_name: str | None = None,
                                      similarity_fn_name: str | None = None, do_lower_case: bool = False,
                                      include_prompt: bool = True) -> None:
    """Write the sentence-transformers module files beside a saved model (config.json, weights and
    tokenizer already in ``folder``): Transformer (the folder itself) -> Pooling [-> Normalize]."""
    from . import __version__
    from .io import atomic_write_text

    folder = Path(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    pooling_config = {"word_embedding_dimension": hidden_size, "pooling_mode_cls_token": False,
                      "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                      "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
                      "pooling_mode_lasttoken": False, "include_prompt": bool(include_prompt)}
    if pooling in ST_POOLING_MODES:   # the format every sentence-transformers version reads
        pooling_config[ST_POOLING_MODES[pooling]] = True
    else:                             # a mode read from a newer folder: kept in that (>= 6) format
        pooling_config = {"embedding_dimension": hidden_size, "pooling_mode": pooling,
                          "include_prompt": bool(include_prompt)}
    st_config = {"__version__": {"fastdeberta": __version__}, "prompts": dict(prompts or {}),
                 "default_prompt_name": default_prompt_name, "similarity_fn_name": similarity_fn_name or "cosine",
                 "model_type": "SentenceTransformer"}
    (folder / "1_Pooling").mkdir(exist_ok=True)
    dump = lambda data: json.dumps(data, indent=2) + "\n"  # noqa: E731
    atomic_write_text(folder / "1_Pooling" / "config.json", dump(pooling_config))
    atomic_write_text(folder / "sentence_bert_config.json",
                      dump({"max_seq_length": max_seq_length, "do_lower_case": do_lower_case}))
    atomic_write_text(folder / "config_sentence_transformers.json", dump(st_config))
    atomic_write_text(folder / "modules.json", dump(modules))


def read_sentence_transformers_files(folder: str | os.PathLike) -> dict[str, Any]:
    """What a sentence-transformers folder says about encoding: prompts, default_prompt_name,
    similarity_fn_name, pooling, normalize, max_seq_length (only the keys found)."""
    folder = Path(folder)
    found: dict[str, Any] = {}

    def load(name: str) -> dict[str, Any]:
        path = folder / name
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"{path} is not valid JSON ({err}); fix or delete it") from err
        return data if isinstance(data, dict) else {}

    st = load("config_sentence_transformers.json")
    prompts = st.get("prompts")
    if isinstance(prompts, dict):   # (a prompt saved as null means "none")
        found["prompts"] = {k: v for k, v in prompts.items() if isinstance(k, str) and isinstance(v, str)}
    if isinstance(st.get("default_prompt_name"), str):
        found["default_prompt_name"] = st["default_prompt_name"]
    if st.get("similarity_fn_name") in SIMILARITY_FUNCTIONS:
        found["similarity_fn_name"] = st["similarity_fn_name"]
    bert = load("sentence_bert_config.json")
    if isinstance(bert.get("max_seq_length"), int) and bert["max_seq_length"] > 0:
        found["max_seq_length"] = bert["max_seq_length"]
    modules_path = folder / "modules.json"
    if modules_path.is_file():
        try:
            modules = json.loads(modules_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"{modules_path} is not valid JSON ({err}); fix or delete it") from err
        types = [m.get("type", "") for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []
        found["normalize"] = any(t.endswith("Normalize") for t in types)
        pooling_dirs = [m.get("path", "") for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling")]
        safe = pooling_dirs and isinstance(pooling_dirs[0], str) and not Path(pooling_dirs[0]).is_absolute()
        if safe and ".." not in Path(pooling_dirs[0]).parts:  # a path read from a file stays in the folder
            pooling = load(str(Path(pooling_dirs[0]) / "config.json"))
            mode = pooling.get("pooling_mode")     # sentence-transformers >= 6; older: one flag per mode
            if mode is None:
                mode = next((m for m, key in ST_POOLING_MODES.items() if pooling.get(key)), None)
                if mode is None and any(v is True for k, v in pooling.items() if k.startswith("pooling_mode_")):
                    mode = next(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True)
            if mode is not None:   # a mode fastdeberta lacks is kept: encode() then names it in its error
                found["pooling"] = mode if isinstance(mode, str) else str(mode)
            if pooling.get("include_prompt") is False:
                found["include_prompt"] = False
    return found


# ----------------------------------------------------------------------------- sentence-transformers' model API
class SentenceTransformersMixin:
    """sentence-transformers' model API for fastdeberta models: ``encode`` (and ``encode_query`` /
    ``encode_document``), ``similarity``, prompts, ``max_seq_length``, ... The settings are read from a
    sentence-transformers folder on load and written to one on save. Kept out of the model classes'
    file: the model code does not depend on it, and this code needs only ``config``, ``tokenizer`` and
    ``base_model`` from the model."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.prompts: dict[str, str] = {}
        self.default_prompt_name: str | None = None
        self.similarity_fn_name: str | None = None     # None: "cosine" when similarity() is called
        self.pooling = "mean"
        self.normalize_embeddings = False
        self.truncate_dim: int | None = None
        self.include_prompt = True      # prompt tokens are pooled too (False is not supported by encode)
        self._max_seq_length: int | None = None

    def encode(self, texts: Any = None, **kwargs: Any) -> Any:
        """Sentence embeddings, sentence-transformers style; see ``fastdeberta.inference.encode``."""
        from .inference.embed import encode

        return encode(self, texts, **kwargs)

    def encode_query(self, texts: Any = None, **kwargs: Any) -> Any:
        """``encode`` with the "query" prompt when none is named (no prompt if the model has none)."""
        return self.encode(texts, **_with_prompt(kwargs, self.prompts.get("query", "")))

    def encode_document(self, texts: Any = None, **kwargs: Any) -> Any:
        """``encode`` with the "document" prompt when none is named (no prompt if the model has none: as
        sentence-transformers, which always defines "document", so its "passage" fallback never applies)."""
        return self.encode(texts, **_with_prompt(kwargs, self.prompts.get("document", "")))

    def sentence_transformers_settings(self, settings: dict[str, Any]) -> None:
        """Apply what a sentence-transformers folder says (:func:`read_sentence_transformers_files`)."""
        for name in ("prompts", "default_prompt_name", "similarity_fn_name", "pooling", "normalize", "include_prompt"):
            if name in settings:
                setattr(self, "normalize_embeddings" if name == "normalize" else name, settings[name])
        if "max_seq_length" in settings:
            self._max_seq_length = settings["max_seq_length"]

    @property
    def max_seq_length(self) -> int:
        """Texts are truncated to this many tokens by ``encode`` (default: the tokenizer's limit,
        capped by absolute position tables); assignable, as in sentence-transformers."""
        if self._max_seq_length is not None:
            return self._max_seq_length
        from .inference.embed import default_max_length

        tokenizer = self.tokenizer if self.tokenizer is not None else object()
        return default_max_length(self.base_model, tokenizer)

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidInputError(f"max_seq_length must be a positive int (or None for the default), got {value!r}")
        self._max_seq_length = value

    def get_embedding_dimension(self) -> int:
        """Length of the vectors ``encode`` returns (``truncate_dim`` when set, else hidden_size)."""
        return self.truncate_dim or self.config.hidden_size

    get_sentence_embedding_dimension = get_embedding_dimension   # the name before sentence-transformers 6

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        """(N, D) x (M, D) -> (N, M) tensor of scores with ``similarity_fn_name`` (cosine by default)."""
        from .inference.embed import similarity

        return similarity(embeddings1, embeddings2, self.similarity_fn_name or "cosine")

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        """(N, D) x (N, D) -> (N,) tensor: each row against the same row of the other."""
        from .inference.embed import similarity

        return similarity(embeddings1, embeddings2, self.similarity_fn_name or "cosine", pairwise=True)

    def save_sentence_transformers_files(self, folder: str | os.PathLike) -> None:
        """Write the sentence-transformers module files for this model's settings into ``folder``."""
        write_sentence_transformers_files(
            folder, hidden_size=self.config.hidden_size, max_seq_length=self.max_seq_length, pooling=self.pooling,
            normalize=self.normalize_embeddings, prompts=self.prompts, default_prompt_name=self.default_prompt_name,
            similarity_fn_name=self.similarity_fn_name, include_prompt=self.include_prompt)


def _with_prompt(kwargs: dict[str, Any], prompt: str) -> dict[str, Any]:
    """``kwargs`` with ``prompt`` unless the caller named a prompt (an empty one also blocks the default)."""
    if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
        return dict(kwargs, prompt=prompt)
    return kwargs
