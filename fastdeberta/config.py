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

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(
                f"model_type {self.model_type!r} is not a DeBERTa model type; expected one of {MODEL_TYPES} "
                "('deberta' for v1, 'deberta-v2' for v2/v3/mDeBERTa)."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        raw = self.pos_att_type
        given = ([x.strip().lower() for x in raw.split("|") if x.strip()] if isinstance(raw, str)
                 else [str(x).strip().lower() for x in (raw or [])])
        unknown = [t for t in given if t not in POSITION_TERMS]
        if unknown:
            raise ConfigError(f"pos_att_type has unknown terms {unknown}; allowed: 'c2p', 'p2c'.")
        if self.problem_type not in (None, "regression", "single_label_classification", "multi_label_classification"):
            raise ConfigError(
                f"problem_type {self.problem_type!r} is unknown; use 'regression', "
                "'single_label_classification' or 'multi_label_classification'."
            )
        if self.is_v1 and self.position_buckets > 0:
            raise ConfigError("position_buckets is a v2 feature; set model_type='deberta-v2' or remove it.")

    # ------------------------------------------------------------------ dict / json I/O
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DebertaConfig:
        data = copy.deepcopy(dict(data))
        model_type = data.get("model_type")
        if model_type is None:
            raise ConfigError(
                "config has no 'model_type'; expected 'deberta' (v1) or 'deberta-v2' (v2/v3/mDeBERTa)."
            )
        if model_type not in MODEL_TYPES:
            raise ConfigError(
                f"model_type {model_type!r} is not a DeBERTa model type; expected one of {MODEL_TYPES}."
            )
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = dict(_TYPE_DEFAULTS[model_type])
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in known:
                kwargs[key] = value
            else:
                extra[key] = value
        if kwargs.get("id2label") is not None:
            kwargs["id2label"] = {int(k): v for k, v in kwargs["id2label"].items()}
        if kwargs.get("label2id") is not None:
            kwargs["label2id"] = {str(k): int(v) for k, v in kwargs["label2id"].items()}
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as err:
            raise ConfigError(f"invalid DeBERTa config: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.name not in ("pad_token_id", "pos_att_type"):
                continue
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
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path} is not valid JSON ({err}); re-download or fix the file.") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a JSON object, found {type(data).__name__}.")
        return cls.from_dict(data)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "config.json"
        path.write_text(self.to_json_string(), encoding="utf-8")
        return path

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
