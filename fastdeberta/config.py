"""DeBERTa configuration: one dataclass for v1 (``model_type="deberta"``) and v2/v3/mDeBERTa
(``model_type="deberta-v2"``), read from and written to the Hugging Face ``config.json`` format.

Missing keys take the same defaults transformers uses for that ``model_type``, so a checkpoint's
``config.json`` means the same model here as there. Keys this class does not know are kept in
``extra`` and written back unchanged.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import atomic_write_text

MODEL_TYPES = ("deberta", "deberta-v2")
POSITION_TERMS = ("c2p", "p2c")

# Size defaults that differ between the two model types (transformers' class defaults).
_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "deberta": dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072),
    "deberta-v2": dict(vocab_size=128100, hidden_size=1536, num_hidden_layers=24, num_attention_heads=24,
                       intermediate_size=6144),
}


@dataclass
class DebertaConfig:
    model_type: str = "deberta-v2"
    vocab_size: int = 128100
    hidden_size: int = 1536
    num_hidden_layers: int = 24
    num_attention_heads: int = 24
    intermediate_size: int = 6144
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-7
    pad_token_id: int | None = 0
    # --- disentangled attention
    relative_attention: bool = False
    max_relative_positions: int = -1      # < 1 means "use max_position_embeddings"
    position_buckets: int = -1            # > 0: log-bucketed relative positions (v2/v3)
    pos_att_type: str | list[str] | None = None  # "c2p|p2c" or ["c2p", "p2c"]; kept in the form read
    share_att_key: bool = False           # position keys/queries reuse the content projections (v3)
    norm_rel_ebd: str = "none"            # "layer_norm": LayerNorm on the relative embeddings (v2/v3)
    position_biased_input: bool = True    # add absolute position embeddings at the input (BERT-style)
    talking_head: bool = False            # v1 only: mix attention heads before/after softmax
    # --- embeddings / convolution
    embedding_size: int | None = None     # None: same as hidden_size
    conv_kernel_size: int = 0             # > 0: v2 convolution after the first layer
    conv_act: str = "tanh"
    conv_groups: int = 1
    # --- heads
    pooler_hidden_size: int | None = None  # None: same as hidden_size
    pooler_dropout: float = 0.0
    pooler_hidden_act: str = "gelu"
    cls_dropout: float | None = None
    legacy: bool = True                   # MLM head naming: cls.predictions.* (True) or lm_predictions.* (False)
    num_labels: int | None = None
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None
    problem_type: str | None = None
    # --- keys we do not interpret, written back verbatim
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()
        if self.num_labels is None:  # as transformers: the number of id2label entries, else 2
            self.num_labels = self.labels_count

    # ------------------------------------------------------------------ derived values
    @property
    def attention_terms(self) -> tuple[str, ...]:
        """The position terms in use, normalised: a subset of ("c2p", "p2c")."""
        raw = self.pos_att_type
        if raw is None:
            items: list[str] = []
        elif isinstance(raw, str):
            items = [x.strip().lower() for x in raw.split("|") if x.strip()]
        else:
            items = [str(x).strip().lower() for x in raw]
        return tuple(t for t in POSITION_TERMS if t in items)

    @property
    def is_v1(self) -> bool:
        return self.model_type == "deberta"

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def embed_dim(self) -> int:
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    @property
    def relative_span(self) -> int:
        """Number of relative-position slots on each side (the table has 2 * span rows)."""
        if self.position_buckets > 0 and not self.is_v1:
            return self.position_buckets
        return self.max_relative_distance

    @property
    def max_relative_distance(self) -> int:
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def labels_count(self) -> int:
        if self.num_labels is not None:
            return self.num_labels
        if self.id2label:
            return len(self.id2label)
        return 2

    @property
    def pooler_size(self) -> int:
        return self.pooler_hidden_size if self.pooler_hidden_size is not None else self.hidden_size

    # ------------------------------------------------------------------ transformers' config attributes
    # Kept in ``extra`` (so config.json round-trips unchanged) and read with transformers' defaults.
    @property
    def architectures(self) -> list[str] | None:
        return self.extra.get("architectures")

    @property
    def dtype(self) -> Any:
        """config.json's ``dtype`` / ``torch_dtype`` as a ``torch.dtype`` (None when not stated)."""
        name = self.extra.get("dtype") or self.extra.get("torch_dtype")
        if not name:
            return None
        import torch

        found = getattr(torch, str(name).removeprefix("torch."), None)
        return found if isinstance(found, torch.dtype) else None

    torch_dtype = dtype  # transformers' older name

    @property
    def name_or_path(self) -> str:
        return str(self.extra.get("_name_or_path", ""))

    @name_or_path.setter
    def name_or_path(self, value: str) -> None:
        self.extra["_name_or_path"] = str(value)

    @property
    def output_hidden_states(self) -> bool:
        """Default of the models' ``output_hidden_states`` (a load-time option in transformers)."""
        return bool(self.extra.get("output_hidden_states", False))

    @output_hidden_states.setter
    def output_hidden_states(self, value: bool) -> None:
        self.extra["output_hidden_states"] = bool(value)

    @property
    def output_attentions(self) -> bool:
        """Default of the models' ``output_attentions``."""
        return bool(self.extra.get("output_attentions", False))

    @output_attentions.setter
    def output_attentions(self, value: bool) -> None:
        self.extra["output_attentions"] = bool(value)

    @property
    def tie_word_embeddings(self) -> bool:
        """The MLM output projection is the word embedding matrix (always so in DeBERTa)."""
        return bool(self.extra.get("tie_word_embeddings", True))

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field's type and range, then the fields against each other.

        Raises :class:`ConfigError` naming the field and the offending value. Lossless conversions are
        made in place: 0/1 for booleans, integers for floats, string keys of ``id2label`` to integers
        (JSON object keys are always strings).
        """
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(
                f"model_type {self.model_type!r} is not a DeBERTa model type; expected one of {MODEL_TYPES} "
                "('deberta' for v1, 'deberta-v2' for v2/v3/mDeBERTa).", field="model_type")
        for name, rule in _FIELD_RULES.items():
            setattr(self, name, rule(name, getattr(self, name)))
        self.id2label = _label_names(self.id2label)
        self.label2id = _label_ids(self.label2id)
        self.pos_att_type = _position_terms(self.pos_att_type)
        self._check_extra()
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads}): each head gets hidden_size / num_attention_heads dimensions.",
                field="hidden_size")
        if self.conv_kernel_size > 0 and self.hidden_size % self.conv_groups:
            raise ConfigError(
                f"conv_groups ({self.conv_groups}) must divide hidden_size ({self.hidden_size}) when the "
                f"convolution is on (conv_kernel_size={self.conv_kernel_size}).", field="conv_groups")
        if self.is_v1 and self.position_buckets > 0:
            raise ConfigError("position_buckets is a v2 feature; set model_type='deberta-v2' or remove it.",
                              field="position_buckets")
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(
                f"problem_type {self.problem_type!r} is unknown; use 'regression', "
                "'single_label_classification' or 'multi_label_classification'.", field="problem_type")
        if self.problem_type == "single_label_classification" and self.labels_count == 1:
            raise ConfigError("problem_type 'single_label_classification' needs num_labels >= 2; use "
                              "num_labels=2 for binary classification or problem_type 'regression'.",
                              field="problem_type")

    def _check_extra(self) -> None:
        """The keys this class does not interpret but the package reads: architectures, torch_dtype."""
        architectures = self.extra.get("architectures")
        if architectures is not None and (not isinstance(architectures, list)
                                          or not all(isinstance(a, str) for a in architectures)):
            raise ConfigError(f"architectures must be a list of class names such as "
                              f"[\"DebertaV2ForMaskedLM\"], got {architectures!r}.", field="architectures")
        for name in ("torch_dtype", "dtype"):
            value = self.extra.get(name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string such as \"float32\" or \"bfloat16\", got {value!r}.",
                                  field=name)

    # ------------------------------------------------------------------ dict / json I/O
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DebertaConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a dict (a JSON object), got {type(data).__name__}.")
        data = copy.deepcopy(dict(data))
        model_type = data.get("model_type")
        if model_type is None:
            raise ConfigError(
                "config has no 'model_type'; expected 'deberta' (v1) or 'deberta-v2' (v2/v3/mDeBERTa).",
                field="model_type")
        if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
            raise ConfigError(
                f"model_type {model_type!r} is not a DeBERTa model type; expected one of {MODEL_TYPES}.",
                field="model_type")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = dict(_TYPE_DEFAULTS[model_type])
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in known:
                kwargs[key] = value
            else:
                extra[key] = value
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.name not in ("pad_token_id", "pos_att_type"):
                continue
            if f.name == "num_labels" and value == (len(self.id2label) if self.id2label else 2):
                continue  # implied, as transformers writes it
            if f.name == "id2label":
                value = {str(k): v for k, v in value.items()}
            out[f.name] = copy.deepcopy(value)
        out.update(copy.deepcopy(self.extra))
        return out

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> DebertaConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except IsADirectoryError as err:
            raise ConfigError(f"{path} is a folder, not a config.json file.") from err
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise ConfigError(f"{path} is not valid JSON ({err}); re-download or fix the file.") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object, found {type(data).__name__}.")
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise err.with_source(path) from err.__cause__

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(folder / "config.json", self.to_json_string())

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **hub_kwargs: Any) -> DebertaConfig:
        from .hub import resolve_model_dir

        folder = resolve_model_dir(name_or_path, **hub_kwargs)
        path = folder / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"No config.json in {folder}; a DeBERTa checkpoint folder needs one.")
        return cls.from_json_file(path)

    def replace(self, **changes: Any) -> DebertaConfig:
        data = self.to_dict()
        data.update(changes)
        return DebertaConfig.from_dict(data)


# ----------------------------------------------------------------------------- field rules
# JSON has no int/float distinction a careless writer respects, and Python's bool is an int: each
# rule accepts exactly the values that mean one thing and converts them losslessly, nothing else.
PROBLEM_TYPES = (None, "regression", "single_label_classification", "multi_label_classification")
NORM_REL_EBD = ("none", "layer_norm")


def _kind(value: Any) -> str:
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


# Upper bounds far beyond any real model, so that no accepted config describes a tensor whose size in
# bytes overflows int64 (torch then fails deep inside, even on the meta device).
MAX_INDEX = 2**31 - 1          # vocabulary / position / label counts: int32 ids
MAX_WIDTH = 2**20              # hidden, intermediate and embedding widths
MAX_LAYERS = 10_000


def _integer(minimum: int | None = None, maximum: int | None = None, *, optional: bool = False):
    def rule(name: str, value: Any) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)                       # 768.0 means 768; 1e10 is checked as 10000000000
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " (write the number without quotes)" if isinstance(value, str) else ""
            raise ConfigError(f"{name} must be an integer{' or null' if optional else ''}, got {value!r} "
                              f"({_kind(value)}){hint}.", field=name)
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}.", field=name)
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, got {value}; no DeBERTa model is that large, "
                              "so the config.json is probably damaged.", field=name)
        return value
    return rule


def _number(minimum: float, maximum: float | None = None, *, strict_minimum: bool = False,
            optional: bool = False):
    def rule(name: str, value: Any) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(f"{name} must be a number, got {value!r} ({_kind(value)}).", field=name)
        low_ok = value > minimum if strict_minimum else value >= minimum
        if not low_ok or (maximum is not None and value > maximum):
            bounds = (f"{'above' if strict_minimum else 'at least'} {minimum}"
                      + (f" and at most {maximum}" if maximum is not None else ""))
            raise ConfigError(f"{name} must be {bounds}, got {value}.", field=name)
        return float(value)
    return rule


def _boolean(name: str, value: Any) -> bool:
    # "no" / "false" strings are refused rather than parsed: bool("no") is True, which is how
    # transformers would read them, so a guess either way could silently build another model.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name} must be true or false (a JSON boolean, without quotes), got {value!r} "
                      f"({_kind(value)}).", field=name)


def _text(choices: tuple[str, ...] | None = None):
    def rule(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r} ({_kind(value)}).", field=name)
        if choices is not None:
            unknown = [part for part in value.lower().split("|") if part.strip() not in choices]
            if unknown:
                raise ConfigError(f"{name} {value!r} is not one of {list(choices)}.", field=name)
        return value
    return rule


def _activation(name: str, value: Any) -> str:
    from .model.layers import ACTIVATIONS  # imported late: the model package imports this module

    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise ConfigError(f"{name} {value!r} is not a supported activation; use one of {sorted(ACTIVATIONS)}.",
                          field=name)
    return value


_FIELD_RULES = {
    "vocab_size": _integer(1, MAX_INDEX),
    "hidden_size": _integer(1, MAX_WIDTH),
    "num_hidden_layers": _integer(1, MAX_LAYERS),
    "num_attention_heads": _integer(1, MAX_WIDTH),
    "intermediate_size": _integer(1, MAX_WIDTH),
    "hidden_act": _activation,
    "hidden_dropout_prob": _number(0.0, 1.0),
    "attention_probs_dropout_prob": _number(0.0, 1.0),
    "max_position_embeddings": _integer(1, MAX_INDEX),
    "type_vocab_size": _integer(0, MAX_INDEX),
    "initializer_range": _number(0.0),
    "layer_norm_eps": _number(0.0, strict_minimum=True),
    "pad_token_id": _integer(0, MAX_INDEX, optional=True),
    "relative_attention": _boolean,
    "max_relative_positions": _integer(None, MAX_INDEX),
    "position_buckets": _integer(None, MAX_INDEX),
    "share_att_key": _boolean,
    "norm_rel_ebd": _text(NORM_REL_EBD),
    "position_biased_input": _boolean,
    "talking_head": _boolean,
    "embedding_size": _integer(1, MAX_WIDTH, optional=True),
    "conv_kernel_size": _integer(0, MAX_WIDTH),
    "conv_act": _activation,
    "conv_groups": _integer(1, MAX_WIDTH),
    "pooler_hidden_size": _integer(1, MAX_WIDTH, optional=True),
    "pooler_dropout": _number(0.0, 1.0),
    "pooler_hidden_act": _activation,
    "cls_dropout": _number(0.0, 1.0, optional=True),
    "legacy": _boolean,
    "num_labels": _integer(1, MAX_INDEX, optional=True),
}


def _label_names(id2label: Any) -> dict[int, str] | None:
    """id2label with integer keys ("0" in JSON -> 0); refused when a key is not an integer."""
    if id2label is None:
        return None
    if not isinstance(id2label, dict):
        raise ConfigError(f"id2label must be an object mapping class ids to names, got {id2label!r}.",
                          field="id2label")
    out: dict[int, str] = {}
    for key, name in id2label.items():
        try:
            index = int(key) if not isinstance(key, (bool, float)) else None
        except ValueError:
            index = None
        if index is None or index < 0:
            raise ConfigError(f"id2label key {key!r} is not a class id (an integer >= 0, e.g. \"0\").",
                              field="id2label")
        if not isinstance(name, str):
            raise ConfigError(f"id2label[{key!r}] must be a label name (a string), got {name!r}.",
                              field="id2label")
        out[index] = name
    return out


def _label_ids(label2id: Any) -> dict[str, int] | None:
    if label2id is None:
        return None
    if not isinstance(label2id, dict):
        raise ConfigError(f"label2id must be an object mapping names to class ids, got {label2id!r}.",
                          field="label2id")
    for name, index in label2id.items():
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError(f"label2id[{name!r}] must be a class id (an integer >= 0), got {index!r}.",
                              field="label2id")
    return {str(name): index for name, index in label2id.items()}


def _position_terms(raw: Any) -> str | list[str] | None:
    """pos_att_type in the form read ("c2p|p2c" or a list), after checking every term."""
    if raw is None:
        return None
    if isinstance(raw, str):
        given = [x.strip().lower() for x in raw.split("|") if x.strip()]
    elif isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
        given = [x.strip().lower() for x in raw]
        raw = list(raw)
    else:
        raise ConfigError(f"pos_att_type must be a string such as \"c2p|p2c\" or a list of strings, "
                          f"got {raw!r}.", field="pos_att_type")
    unknown = [t for t in given if t not in POSITION_TERMS]
    if unknown:
        raise ConfigError(f"pos_att_type has unknown terms {unknown}; allowed: 'c2p', 'p2c'.",
                          field="pos_att_type")
    return raw


# Small named presets (architecture only) for building models from scratch.
PRESETS: dict[str, dict[str, Any]] = {
    "deberta-v3-xsmall": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "deberta-v3-small": dict(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072),
    "deberta-v3-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "deberta-v3-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
_V3_COMMON = dict(model_type="deberta-v2", vocab_size=128100, relative_attention=True, position_buckets=256,
                  norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type="p2c|c2p",
                  layer_norm_eps=1e-7, max_relative_positions=-1, position_biased_input=False,
                  max_position_embeddings=512, type_vocab_size=0, hidden_act="gelu")


def preset_config(name: str, **overrides: Any) -> DebertaConfig:
    """A v3-style config by size name (e.g. ``"deberta-v3-base"``), with optional overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
    data = dict(_V3_COMMON, **PRESETS[name])
    data.update(overrides)
    return DebertaConfig.from_dict(data)
