"""Bad checkpoints and bad inputs fail early, with messages that name the offending file, key or value."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import MAX_POSITIONS, VOCAB, make_inputs, randomize_, variant, write_config
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


# ----------------------------------------------------------------------------------------------------
# forward arguments of the wrong type, dtype, device or value (issue 13): clear project errors


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bool, torch.complex64])
def test_non_integer_ids_are_refused(dtype):
    ids = torch.full((1, 5), 7).to(dtype)
    with pytest.raises(fastdeberta.InputTypeError, match=f"input_ids must hold integer ids, got dtype {dtype}"):
        _model()(input_ids=ids)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.uint8, torch.int32])
def test_any_integer_dtype_of_ids_gives_the_int64_result(dtype):
    model = _model()
    ids = make_inputs(variant("v2-rel"), 6)["input_ids"] % 120          # ids an int8 can hold
    expected = model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(model(input_ids=ids.to(dtype)).last_hidden_state, expected, rtol=0, atol=0)


@pytest.mark.parametrize("convert,kind", [(lambda t: t.tolist(), "list"), (lambda t: t.numpy(), "numpy.ndarray")])
@pytest.mark.parametrize("argument", ["input_ids", "attention_mask", "token_type_ids", "position_ids"])
def test_lists_and_numpy_arrays_are_refused_with_the_conversion(convert, kind, argument):
    inputs = make_inputs(variant("v2-rel"), 6)
    inputs["position_ids"] = torch.arange(6).expand(3, 6)
    inputs[argument] = convert(inputs[argument])
    with pytest.raises(fastdeberta.InputTypeError) as err:
        _model()(**inputs)
    assert f"{argument} must be a torch.Tensor, got a {kind}" in str(err.value)
    assert f"torch.as_tensor({argument})" in str(err.value)
    assert isinstance(err.value, TypeError)


def test_non_tensor_inputs_for_multiple_choice_and_labels():
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        _model("v2-rel", "multiple-choice")(input_ids=[[[5, 6, 7]]])
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        _model("v2-rel", "sequence-classification")(input_ids=torch.full((2, 4), 7), labels=[0, 1])


@pytest.mark.parametrize("name,task", [("v2-rel", "base"), ("v3", "masked-lm")])
def test_negative_position_ids(name, task):
    ids = torch.full((1, 4), 7)
    with pytest.raises(fastdeberta.InvalidInputError, match="position_ids holds -1, outside"):
        _model(name, task)(input_ids=ids, position_ids=torch.tensor([[0, 1, -1, 2]]))


def test_position_ids_of_the_wrong_shape_or_dtype():
    ids = torch.full((2, 4), 7)
    with pytest.raises(ValueError, match=r"position_ids has shape \(2, 3\)"):
        _model()(input_ids=ids, position_ids=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="position_ids must hold integer ids"):
        _model()(input_ids=ids, position_ids=torch.zeros(2, 4))


def test_token_type_ids_out_of_range():
    with pytest.raises(ValueError, match=r"token_type_ids holds 2, outside \[0, 2\)"):
        _model()(input_ids=torch.full((1, 4), 7), token_type_ids=torch.tensor([[0, 1, 2, 0]]))
    # a model without token types ignores them, as transformers does
    model = _model("v3")
    ids = torch.full((1, 4), 7)
    torch.testing.assert_close(model(input_ids=ids, token_type_ids=torch.full((1, 4), 5)).last_hidden_state,
                               model(input_ids=ids).last_hidden_state)


@pytest.mark.parametrize("task,labels,needle", [
    ("masked-lm", [[5, VOCAB, -100, 7]], f"labels holds {VOCAB}, outside the {VOCAB} classes"),
    ("masked-lm", [[5, -3, -100, 7]], "labels holds -3"),
    ("token-classification", [[0, 1, 2, -100]], "labels holds 2, outside the 2 classes"),
    ("sequence-classification", [5], "labels holds 5, outside the 2 classes"),
    ("multiple-choice", [3], "labels holds 3, outside the 2 classes"),
])
def test_labels_outside_the_classes(task, labels, needle):
    model = _model("v2-rel", task)
    ids = torch.full((1, 2, 4) if task == "multiple-choice" else (1, 4), 7)
    with pytest.raises(fastdeberta.InvalidInputError, match=needle):
        model(input_ids=ids, labels=torch.tensor(labels))


def test_labels_with_the_wrong_number_of_values():
    with pytest.raises(ValueError, match=r"labels has shape \(3,\)"):
        _model("v2-rel", "masked-lm")(input_ids=torch.full((1, 4), 7), labels=torch.tensor([1, 2, 3]))


def test_valid_labels_still_give_a_loss():
    model = _model("v2-rel", "masked-lm")
    loss = model(input_ids=torch.full((1, 4), 7), labels=torch.tensor([[5, -100, VOCAB - 1, 0]])).loss
    assert loss is not None and torch.isfinite(loss)
    # sequence classification: negative ids are skipped (transformers' rule), regression labels are floats
    clf = _model("v2-rel", "sequence-classification")
    assert torch.isfinite(clf(input_ids=torch.full((2, 4), 7), labels=torch.tensor([1, -1])).loss)
    reg = TASKS["sequence-classification"](DebertaConfig.from_dict(variant("v2-rel", num_labels=1))).eval()
    assert torch.isfinite(reg(input_ids=torch.full((2, 4), 7), labels=torch.tensor([0.5, 2.0])).loss)


def test_inputs_on_another_device_are_refused():
    ids = torch.full((1, 4), 7, device="meta")
    with pytest.raises(fastdeberta.InvalidInputError, match="input_ids is on meta but the model is on cpu"):
        _model()(input_ids=ids)
    with pytest.raises(ValueError, match="inputs_embeds is on meta"):
        _model()(inputs_embeds=torch.zeros(1, 4, 32, device="meta"))


def test_inputs_embeds_checks_and_dtype_conversion():
    model = _model()
    with pytest.raises(ValueError, match=r"inputs_embeds must have shape \(batch, sequence, 32\)"):
        model(inputs_embeds=torch.zeros(1, 4, 31))
    with pytest.raises(TypeError, match="floating-point"):
        model(inputs_embeds=torch.zeros(1, 4, 32, dtype=torch.long))
    embeds = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(inputs_embeds=embeds.double()).last_hidden_state,
                               model(inputs_embeds=embeds).last_hidden_state)


@pytest.mark.parametrize("name", ["v2-rel", "v2-xlarge-style", "v1-base"])
def test_nan_in_padded_inputs_embeds_stays_out_of_real_tokens(name):
    """transformers turns the whole row into NaN (0 * NaN in the masked sums); fastdeberta zeroes padding."""
    model = randomize_(_model(name)).eval()
    gen = torch.Generator().manual_seed(1)
    embeds = torch.randn(2, 6, 32, generator=gen)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    clean = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    poisoned = embeds.clone()
    poisoned[1, 4:] = float("nan")
    out = model(inputs_embeds=poisoned, attention_mask=mask).last_hidden_state
    assert torch.isfinite(out[mask.bool()]).all()
    torch.testing.assert_close(out[mask.bool()], clean[mask.bool()])


@pytest.mark.parametrize("option", [dict(device=True), dict(device=0.5), dict(device="gpu9"), dict(dtype="int8"),
                                    dict(dtype=torch.int64), dict(task="regression")])
def test_loading_options_raise_project_errors(saved_fast_model, option):
    folder, _ = saved_fast_model("v3", "base")
    with pytest.raises(fastdeberta.InvalidInputError):
        fastdeberta.from_pretrained(folder, **option)


def test_model_options_raise_project_errors():
    with pytest.raises(fastdeberta.InvalidInputError, match="'flash'"):
        _model().set_attention_implementation("flash")
    with pytest.raises(fastdeberta.InvalidInputError, match="head_layout"):
        TASKS["masked-lm"](DebertaConfig.from_dict(variant("v3")), head_layout="other")
    with pytest.raises(ConfigError, match="embedding_size"):
        TASKS["masked-lm"](DebertaConfig.from_dict(variant("v2-p2c-bucket-emb", legacy=False)))


def test_float_class_ids_for_sequence_classification_still_work():
    """transformers' DeBERTa takes 1-D float labels as class ids (labels.long()); so does fastdeberta."""
    clf = _model("v2-rel", "sequence-classification")
    ids = torch.full((2, 4), 7)
    loss_float = clf(input_ids=ids, labels=torch.tensor([1.0, 0.0])).loss
    loss_long = clf(input_ids=ids, labels=torch.tensor([1, 0])).loss
    torch.testing.assert_close(loss_float, loss_long)


def test_position_ids_past_the_table_only_matter_with_absolute_positions():
    ids = torch.full((1, 4), 7)
    far = torch.tensor([[MAX_POSITIONS, MAX_POSITIONS + 1, MAX_POSITIONS + 2, MAX_POSITIONS + 3]])
    with pytest.raises(fastdeberta.InvalidInputError, match=f"position_ids holds {MAX_POSITIONS + 3}"):
        _model("v2-rel")(input_ids=ids, position_ids=far)          # position_biased_input: added at the input
    base = _model("v3")                                             # relative only: values unused
    torch.testing.assert_close(base(input_ids=ids, position_ids=far).last_hidden_state,
                               base(input_ids=ids).last_hidden_state)
