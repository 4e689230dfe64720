"""Bad checkpoints and bad inputs fail early, with messages that name the offending file, key or value."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import MAX_POSITIONS, VOCAB, make_inputs, variant, write_config
from safetensors.torch import load_file, save_file

import fastdeberta
from fastdeberta import TASKS, CheckpointError, ConfigError, DebertaConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors(saved_fast_model, damage):
    folder, _ = saved_fast_model("v3", "base")
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage" * 100)
    with pytest.raises(CheckpointError) as err:
        fastdeberta.from_pretrained(folder)
    message = str(err.value)
    assert str(path) in message
    assert "download" in message


def test_corrupt_bin(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        fastdeberta.from_pretrained(folder)


def test_wrong_shapes_name_the_key(saved_fast_model):
    folder, _ = saved_fast_model("v2-rel", "base")
    state = load_file(str(folder / "model.safetensors"))
    key = "encoder.layer.1.attention.self.query_proj.weight"     # base checkpoints carry no "deberta." prefix
    assert key in state
    state[key] = torch.zeros(16, 32)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        fastdeberta.from_pretrained(folder)
    assert key in str(err.value) and "(16, 32)" in str(err.value) and "(32, 32)" in str(err.value)


def test_config_not_matching_weights(saved_fast_model):
    folder, _ = saved_fast_model("v2-rel", "base")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="encoder.layer.2"):
        fastdeberta.from_pretrained(folder)


def test_unknown_weights_need_strict_false(saved_fast_model):
    folder, _ = saved_fast_model("v2-rel", "base")
    state = load_file(str(folder / "model.safetensors"))
    state["something.else.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="something.else.weight"):
        fastdeberta.from_pretrained(folder)
    fastdeberta.from_pretrained(folder, strict=False)


def test_unknown_model_type(tmp_path):
    write_config(tmp_path, variant("v3", model_type="bert"))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match="'bert'"):
        fastdeberta.from_pretrained(tmp_path)


def test_missing_config(tmp_path):
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        fastdeberta.from_pretrained(tmp_path)
    assert "config.json" in str(err.value) and str(tmp_path) in str(err.value)


def test_no_weights(tmp_path):
    write_config(tmp_path, variant("v3"))
    (tmp_path / "tf_model.h5").write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        fastdeberta.from_pretrained(tmp_path)
    message = str(err.value)
    assert "model.safetensors" in message and "tf_model.h5" in message


def test_invalid_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        fastdeberta.from_pretrained(tmp_path)


def test_path_that_is_a_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(fastdeberta.ModelNotFoundError, match="folder"):
        fastdeberta.from_pretrained(path)


# ----------------------------------------------------------------------------------------------------
# inputs


def _model(name="v2-rel", task="base"):
    return TASKS[task](DebertaConfig.from_dict(variant(name))).eval()


def test_token_id_out_of_vocab():
    model = _model()
    ids = torch.full((1, 5), 7)
    ids[0, 3] = VOCAB + 12
    with pytest.raises(ValueError) as err:
        model(input_ids=ids)
    assert str(VOCAB + 12) in str(err.value) and f"vocab_size={VOCAB}" in str(err.value)
    with pytest.raises(ValueError, match="-3"):
        model(input_ids=torch.tensor([[5, -3, 6]]))


def test_too_long_for_absolute_positions():
    model = _model("v2-rel")       # position_biased_input=True
    n = MAX_POSITIONS + 6
    with pytest.raises(ValueError) as err:
        model(input_ids=torch.full((1, n), 9))
    assert str(n) in str(err.value) and str(MAX_POSITIONS) in str(err.value)
    # relative-only models have no such limit
    long = _model("v3")(input_ids=torch.full((1, n), 9)).last_hidden_state
    assert long.shape == (1, n, 32)


def test_emd_position_limit():
    model = _model("v3", "masked-lm")
    assert model.enhanced_mask_decoder
    with pytest.raises(ValueError, match=str(MAX_POSITIONS)):
        model(input_ids=torch.full((1, MAX_POSITIONS + 1), 9))


def test_empty_sequence():
    with pytest.raises(ValueError, match="length is 0"):
        _model()(input_ids=torch.zeros(2, 0, dtype=torch.long))


def test_wrong_attention_mask_shape():
    inputs = make_inputs(variant("v2-rel"), 6)
    with pytest.raises(ValueError) as err:
        _model()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"][:, :5])
    assert "(3, 5)" in str(err.value) and "(3, 6)" in str(err.value)


def test_wrong_input_rank_and_both_inputs():
    model = _model()
    with pytest.raises(ValueError, match=r"\(5,\)"):
        model(input_ids=torch.full((5,), 7))
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids=torch.full((1, 5), 7), inputs_embeds=torch.zeros(1, 5, 32))
    with pytest.raises(ValueError, match="num_choices"):
        _model("v2-rel", "multiple-choice")(input_ids=torch.full((1, 5), 7))


def test_unknown_attention_implementation():
    with pytest.raises(ValueError, match="'flash'"):
        _model().set_attention_implementation("flash")


def test_lm_predictions_head_needs_equal_embedding_size():
    config = DebertaConfig.from_dict(variant("v2-p2c-bucket-emb", legacy=False))
    with pytest.raises(ValueError, match="embedding_size"):
        TASKS["masked-lm"](config)
