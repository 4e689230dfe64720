"""Fuzz: random and broken config.json files. Every file either gives a DebertaConfig that round-trips
and builds a model, or a ConfigError naming the file -- never another exception."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import VARIANTS, variant
from fuzz_support import documented_outcome, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from fastdeberta import TASKS, ConfigError, DebertaConfig

pytestmark = pytest.mark.usefixtures("single_thread")   # tiny models: one thread is fastest

# values that broke configs before (issue 13) or sit on a boundary, plus arbitrary JSON
TRICKY = st.sampled_from([0, -1, 1, 2, 3, 7, 1e10, 10_000_000_000, 0.5, -0.5, 1.5, "128", "abc", "no", "true", "",
                          None, True, False, [], [5], {}, {"a": 1}, "c2p|p2c", "p2c", ["c2p"], "layer_norm",
                          "gelu", float("inf"), float("-inf"), float("nan"), 2**63, -(2**63)])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
FIELDS = sorted({key for cfg in VARIANTS.values() for key in cfg} | {
    "id2label", "label2id", "num_labels", "problem_type", "architectures", "torch_dtype", "conv_groups",
    "pooler_hidden_size", "pooler_hidden_act", "cls_dropout", "legacy", "embedding_size", "talking_head"})


@st.composite
def mutated_configs(draw):
    """A valid tiny config with 1-3 fields replaced (or removed), sometimes extra unknown keys."""
    data = variant(draw(st.sampled_from(sorted(VARIANTS))))
    for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
        action = draw(st.sampled_from(["tricky", "json", "remove"]))
        if action == "remove":
            data.pop(field, None)
        else:
            data[field] = draw(TRICKY if action == "tricky" else JSON)
    if draw(st.booleans()):
        data.update(draw(st.dictionaries(st.text(min_size=1, max_size=6), JSON, max_size=2)))
    return data


def _small(config: DebertaConfig) -> bool:
    """Sizes a test can build on the meta device in milliseconds."""
    return config.num_hidden_layers <= 4 and config.max_position_embeddings <= 10**6


def _json_equal(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return a == b


@fuzz_settings(examples=150)
@given(mutated_configs())
def test_random_config_dicts(data):
    config, error = documented_outcome(lambda: DebertaConfig.from_dict(data))
    if error is not None:
        assert isinstance(error, ConfigError), type(error)
        return
    again = DebertaConfig.from_dict(config.to_dict())          # round-trips
    assert _json_equal(again.to_dict(), config.to_dict())
    if _small(config):
        task = "masked-lm" if config.embed_dim == config.hidden_size or config.legacy else "base"
        with torch.device("meta"):
            model = TASKS[task](config)
        assert model.config is config


@fuzz_settings(examples=40)
@given(st.binary(max_size=200) | st.text(max_size=60).map(str.encode) | mutated_configs().map(
    lambda d: json.dumps(d, allow_nan=True).encode()[: len(json.dumps(d)) // 2]))
def test_broken_config_files(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_bytes(raw)
    config, error = documented_outcome(lambda: DebertaConfig.from_json_file(path))
    if error is not None:
        assert isinstance(error, ConfigError) and str(path) in str(error)
    assert path.read_bytes() == raw


def test_deeply_nested_json_is_a_config_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="not valid JSON"):
        DebertaConfig.from_json_file(path)
