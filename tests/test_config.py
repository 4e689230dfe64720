"""DebertaConfig: defaults equal transformers' for keys a config.json leaves out, pos_att_type forms,
serialisation and validation."""

from __future__ import annotations

import json

import pytest
from conftest import VARIANTS, hf_config, variant

from fastdeberta import ConfigError, DebertaConfig, preset_config

transformers = pytest.importorskip("transformers")

# fastdeberta field -> transformers attribute where names or representations differ
_SKIP = {"extra", "model_type", "pos_att_type", "num_labels", "id2label", "label2id", "embedding_size",
         "pooler_hidden_size", "legacy"}


def _compare_with_transformers(data: dict) -> None:
    ours = DebertaConfig.from_dict(data)
    ref = hf_config(data)
    checked = []
    for name in ours.to_dict():
        if name in _SKIP or not hasattr(ref, name):
            continue
        assert getattr(ours, name) == getattr(ref, name), (name, getattr(ours, name), getattr(ref, name))
        checked.append(name)
    # derived values
    assert ours.embed_dim == getattr(ref, "embedding_size", ref.hidden_size)
    assert ours.pooler_size == ref.pooler_hidden_size
    assert ours.labels_count == ref.num_labels
    assert ours.legacy == ref.legacy
    assert set(ours.attention_terms) == set(ref.pos_att_type or [])
    assert len(checked) >= 15, checked


@pytest.mark.parametrize("model_type", ["deberta", "deberta-v2"])
def test_defaults_match_transformers(model_type):
    _compare_with_transformers({"model_type": model_type})
    ours = DebertaConfig.from_dict({"model_type": model_type})
    ref = hf_config({"model_type": model_type})
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "layer_norm_eps", "max_relative_positions", "position_biased_input", "relative_attention",
                 "type_vocab_size", "pad_token_id", "pooler_hidden_act", "pooler_dropout", "initializer_range"):
        assert getattr(ours, name) == getattr(ref, name), name


def test_transformers_attributes_read_with_getattr_defaults():
    """Attributes transformers reads with getattr(config, name, default) (absent from its config class)."""
    ours = DebertaConfig.from_dict({"model_type": "deberta-v2"})
    assert ours.position_buckets == -1
    assert ours.share_att_key is False
    assert ours.norm_rel_ebd == "none"
    assert ours.conv_kernel_size == 0
    assert ours.conv_groups == 1 and ours.conv_act == "tanh"
    assert ours.talking_head is False
    assert ours.embedding_size is None and ours.embed_dim == ours.hidden_size


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_configs_match_transformers(name):
    _compare_with_transformers(variant(name, num_labels=4, pooler_hidden_size=32))


@pytest.mark.parametrize("raw,terms", [
    ("c2p|p2c", ("c2p", "p2c")),
    ("p2c|c2p", ("c2p", "p2c")),
    (" P2C | c2p ", ("c2p", "p2c")),
    (["p2c", "c2p"], ("c2p", "p2c")),
    (["c2p"], ("c2p",)),
    ("p2c", ("p2c",)),
    (None, ()),
    ([], ()),
])
def test_pos_att_type_normalisation(raw, terms):
    config = DebertaConfig.from_dict({"model_type": "deberta-v2", "pos_att_type": raw})
    assert config.attention_terms == terms
    assert config.to_dict()["pos_att_type"] == raw          # written back in the form read


def test_pos_att_type_unknown_term():
    with pytest.raises(ConfigError, match="p2p"):
        DebertaConfig.from_dict({"model_type": "deberta-v2", "pos_att_type": "c2p|p2p"})


@pytest.mark.parametrize("data,needle", [
    ({"model_type": "bert"}, "'bert'"),
    ({"hidden_size": 32}, "model_type"),
    ({"model_type": "deberta-v2", "hidden_size": 30, "num_attention_heads": 4}, "multiple of num_attention_heads"),
    ({"model_type": "deberta-v2", "num_hidden_layers": 0}, "num_hidden_layers"),
    ({"model_type": "deberta-v2", "vocab_size": -5}, "vocab_size"),
    ({"model_type": "deberta-v2", "problem_type": "ranking"}, "'ranking'"),
    ({"model_type": "deberta", "position_buckets": 256}, "position_buckets"),
])
def test_validation_errors(data, needle):
    with pytest.raises(ConfigError, match=needle):
        DebertaConfig.from_dict(data)


def test_json_round_trip_with_unknown_keys(tmp_path):
    data = variant("v3", id2label={"0": "a", "1": "b"}, label2id={"a": 0, "b": 1}, transformers_version="4.99",
                   architectures=["DebertaV2ForMaskedLM"], custom={"x": [1, 2]})
    config = DebertaConfig.from_dict(data)
    assert config.id2label == {0: "a", 1: "b"}
    assert config.extra == {"transformers_version": "4.99", "architectures": ["DebertaV2ForMaskedLM"],
                            "custom": {"x": [1, 2]}}
    path = config.save_pretrained(tmp_path)
    written = json.loads(path.read_text())
    assert written["custom"] == {"x": [1, 2]} and written["id2label"] == {"0": "a", "1": "b"}
    again = DebertaConfig.from_json_file(path)
    assert again == config
    # transformers reads the file fastdeberta wrote as the same model
    ref = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(ref).__name__ == "DebertaV2Config"
    assert ref.position_buckets == 16 and ref.share_att_key is True and ref.pos_att_type == ["p2c", "c2p"]
    assert ref.id2label == {0: "a", 1: "b"}


def test_replace_revalidates():
    config = DebertaConfig.from_dict(variant("v3"))
    assert config.replace(num_labels=7).labels_count == 7
    assert config.num_labels == 2         # replace returns a new config (2: the default, as transformers)
    with pytest.raises(ConfigError):
        config.replace(model_type="roberta")


def test_from_json_file_errors(tmp_path):
    (tmp_path / "a.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        DebertaConfig.from_json_file(tmp_path / "a.json")
    with pytest.raises(FileNotFoundError):
        DebertaConfig.from_json_file(tmp_path / "missing.json")


def test_presets():
    config = preset_config("deberta-v3-base", num_labels=3)
    assert config.position_buckets == 256 and config.share_att_key and not config.position_biased_input
    assert config.hidden_size == 768 and config.labels_count == 3
    with pytest.raises(ConfigError, match="deberta-v3-huge"):
        preset_config("deberta-v3-huge")


# ----------------------------------------------------------------------------------------------------
# every field checked for type and range (issue 13): the error names the field, the value and the file


@pytest.mark.parametrize("field,value,needle", [
    ("num_attention_heads", 0, "num_attention_heads must be at least 1, got 0"),     # was ZeroDivisionError
    ("hidden_size", -32, "hidden_size must be at least 1"),
    ("intermediate_size", -1, "intermediate_size"),
    ("max_position_embeddings", 0, "max_position_embeddings"),
    ("type_vocab_size", -2, "type_vocab_size"),
    ("hidden_size", "abc", "hidden_size must be an integer, got 'abc'"),            # was a %-format error
    ("hidden_size", "128", "without quotes"),
    ("vocab_size", 1.5, "vocab_size must be an integer, got 1.5"),
    ("num_hidden_layers", True, "num_hidden_layers must be an integer"),
    ("num_hidden_layers", None, "num_hidden_layers must be an integer"),
    ("relative_attention", "no", "relative_attention must be true or false"),          # was taken as True
    ("position_biased_input", "false", "position_biased_input must be true or false"),
    ("share_att_key", 2, "share_att_key"),
    ("hidden_dropout_prob", 1.5, "hidden_dropout_prob must be at least 0.0 and at most 1.0"),
    ("attention_probs_dropout_prob", "0.1", "attention_probs_dropout_prob must be a number"),
    ("layer_norm_eps", 0, "layer_norm_eps must be above 0"),
    ("layer_norm_eps", float("nan"), "layer_norm_eps must be a number"),
    ("hidden_act", "gelu2", "hidden_act 'gelu2' is not a supported activation"),
    ("conv_act", 3, "conv_act"),
    ("norm_rel_ebd", "batch_norm", "norm_rel_ebd"),
    ("pad_token_id", -1, "pad_token_id must be at least 0"),
    ("embedding_size", 0, "embedding_size"),
    ("num_labels", 0, "num_labels must be at least 1"),
    ("id2label", {"a": "x"}, "id2label key 'a' is not a class id"),                   # was int() ValueError
    ("id2label", {"0": 5}, r"id2label\['0'\] must be a label name"),
    ("id2label", ["x", "y"], "id2label must be an object"),
    ("label2id", {"x": "0"}, r"label2id\['x'\] must be a class id"),
    ("architectures", [5], "architectures must be a list of class names"),              # was AttributeError
    ("architectures", "DebertaV2Model", "architectures must be a list"),
    ("pos_att_type", [1, 2], "pos_att_type must be a string"),
    ("pos_att_type", 7, "pos_att_type must be a string"),
    ("torch_dtype", 16, "torch_dtype must be a string"),
    ("model_type", ["deberta"], "is not a DeBERTa model type"),
])
def test_every_field_is_checked(field, value, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        DebertaConfig.from_dict(variant("v3", **{field: value}))
    assert err.value.field == field


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(variant("v3", num_attention_heads=0)))
    with pytest.raises(ConfigError) as err:
        DebertaConfig.from_json_file(path)
    assert str(err.value).startswith(f"{path}: num_attention_heads")
    assert err.value.source == str(path) and err.value.field == "num_attention_heads"
    with pytest.raises(ConfigError, match="is a folder"):
        DebertaConfig.from_json_file(tmp_path)


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="conv_groups"):
        DebertaConfig.from_dict(variant("v2-xlarge-style", conv_groups=5))
    with pytest.raises(ConfigError, match="num_labels >= 2"):
        DebertaConfig.from_dict(variant("v3", problem_type="single_label_classification", num_labels=1))


@pytest.mark.parametrize("field,given,stored", [
    ("relative_attention", 1, True),          # 0/1 mean one thing: kept as booleans
    ("share_att_key", 0, False),
    ("hidden_size", 32.0, 32),                # 32.0 is 32
    ("hidden_dropout_prob", 0, 0.0),
    ("id2label", {"1": "b", "0": "a"}, {0: "a", 1: "b"}),
    ("pos_att_type", ("c2p", "p2c"), ["c2p", "p2c"]),
])
def test_lossless_conversions(field, given, stored):
    config = DebertaConfig.from_dict(variant("v3", **{field: given}))
    value = getattr(config, field)
    assert value == stored and type(value) is type(stored)


def test_config_errors_are_value_errors_and_project_errors():
    from fastdeberta.errors import FastDebertaError

    with pytest.raises(ValueError):
        DebertaConfig.from_dict(variant("v3", hidden_size="abc"))
    with pytest.raises(FastDebertaError):
        DebertaConfig.from_dict("not a dict")


def test_save_pretrained_is_atomic(tmp_path, monkeypatch):
    """A failure while writing config.json leaves the previous file as it was, and no temporary file."""
    import fastdeberta.io as fio

    config = DebertaConfig.from_dict(variant("v3"))
    path = config.save_pretrained(tmp_path)
    before = path.read_bytes()

    def broken_write(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fio.Path, "write_bytes", broken_write)
    with pytest.raises(OSError, match="No space"):
        config.replace(hidden_size=64, num_attention_heads=4).save_pretrained(tmp_path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


@pytest.mark.parametrize("field,value", [("vocab_size", 10**10), ("hidden_size", 10**10), ("intermediate_size", 2**21),
                                         ("num_hidden_layers", 10**9), ("position_buckets", 2**40),
                                         ("max_position_embeddings", 2**31)])
def test_sizes_no_model_has_are_refused(field, value):
    """Accepted sizes never describe a tensor whose byte size overflows (torch fails deep inside then)."""
    with pytest.raises(ConfigError, match=f"{field} must be at most"):
        DebertaConfig.from_dict(variant("v3", **{field: value}))
