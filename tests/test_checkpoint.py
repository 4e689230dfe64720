"""Checkpoint reading and writing: formats (safetensors, shards, .bin), key normalisation, task heads,
dtype, head initialisation warnings, size mismatches and the Hugging Face cache (offline)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import LONG, assert_close, make_inputs, randomize_, valid_positions, variant, write_config
from safetensors.torch import load_file, save_file

import fastdeberta
from fastdeberta import TASKS, CheckpointError, DebertaConfig, ModelNotFoundError

pytestmark = pytest.mark.usefixtures("single_thread")


def _outputs(model, cfg, length=LONG):
    inputs = make_inputs(cfg, length)
    with torch.no_grad():
        return model(**inputs).last_hidden_state, valid_positions(inputs["attention_mask"])


def _state(folder):
    return load_file(str(folder / "model.safetensors"))


# ----------------------------------------------------------------------------------------------------
# round trip


def test_round_trip_keeps_config_and_weights(saved_fast_model, tmp_path):
    folder, model = saved_fast_model("v3", "sequence-classification", num_labels=3, pos_att_type="p2c|c2p",
                                     id2label={0: "neg", 1: "neu", 2: "pos"},
                                     label2id={"neg": 0, "neu": 1, "pos": 2},
                                     my_custom_key={"nested": [1, 2]}, torch_dtype="float32")
    written = json.loads((folder / "config.json").read_text())
    assert written["pos_att_type"] == "p2c|c2p"          # the string form is kept, not a list
    assert written["my_custom_key"] == {"nested": [1, 2]}
    assert written["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert written["architectures"] == ["DebertaV2ForSequenceClassification"]
    assert written["position_buckets"] == 16 and written["share_att_key"] is True

    loaded = fastdeberta.from_pretrained(folder)       # task from architectures
    assert isinstance(loaded, TASKS["sequence-classification"])
    assert loaded.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert all(isinstance(k, int) for k in loaded.config.id2label)
    assert loaded.config.extra["my_custom_key"] == {"nested": [1, 2]}
    assert loaded.num_labels == 3
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k

    # saving again writes the same config (unknown keys and string forms survive a second trip)
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == written


def test_sharded_safetensors_load(saved_fast_model, tmp_path):
    folder, model = saved_fast_model("v2-rel", "base")
    state = _state(folder)
    keys = sorted(state)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    out = tmp_path / "sharded"
    out.mkdir()
    (out / "config.json").write_text((folder / "config.json").read_text())
    for shard, names in shards.items():
        save_file({k: state[k] for k in names}, str(out / shard))
    weight_map = {k: shard for shard, names in shards.items() for k in names}
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    loaded = fastdeberta.from_pretrained(out, task="base")
    cfg = variant("v2-rel")
    a, valid = _outputs(model, cfg)
    b, _ = _outputs(loaded, cfg)
    assert_close(b, a, atol=0, rtol=0, what="sharded")

    (out / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        fastdeberta.from_pretrained(out, task="base")


def test_sharded_pytorch_model_bin_load(saved_fast_model, tmp_path):
    folder, model = saved_fast_model("v1-base", "base")
    state = _state(folder)
    keys = sorted(state)
    out = tmp_path / "sharded-bin"
    out.mkdir()
    (out / "config.json").write_text((folder / "config.json").read_text())
    weight_map = {}
    for n, names in enumerate((keys[::2], keys[1::2]), 1):
        shard = f"pytorch_model-0000{n}-of-00002.bin"
        torch.save({k: state[k] for k in names}, out / shard)
        weight_map.update(dict.fromkeys(names, shard))
    (out / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = fastdeberta.from_pretrained(out, task="base")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_pytorch_model_bin_loads(saved_fast_model, tmp_path):
    folder, model = saved_fast_model("v1-base", "masked-lm")
    out = tmp_path / "bin"
    out.mkdir()
    (out / "config.json").write_text((folder / "config.json").read_text())
    torch.save(dict(_state(folder)), out / "pytorch_model.bin")
    loaded = fastdeberta.from_pretrained(out, task="masked-lm")
    assert loaded.enhanced_mask_decoder is True      # the absolute table is in the checkpoint
    cfg = variant("v1-base")
    inputs = make_inputs(cfg, LONG)
    with torch.no_grad():
        assert_close(loaded(**inputs).logits, model(**inputs).logits, atol=0, rtol=0, what=".bin")


class NotATensor:
    def __init__(self):
        self.payload = "arbitrary python object"


def test_bin_with_python_objects_is_refused(saved_fast_model, tmp_path):
    folder, _ = saved_fast_model("v2-rel", "base")
    out = tmp_path / "evil"
    out.mkdir()
    (out / "config.json").write_text((folder / "config.json").read_text())
    state = dict(_state(folder))
    state["surprise"] = NotATensor()
    torch.save(state, out / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as err:
        fastdeberta.from_pretrained(out, task="base")
    message = str(err.value)
    assert "pytorch_model.bin" in message and "weights_only" in message


def test_old_layernorm_gamma_beta_keys(saved_fast_model, tmp_path):
    folder, model = saved_fast_model("v2-xlarge-style", "base")
    state = _state(folder)
    renamed = {}
    for k, v in state.items():
        if "LayerNorm.weight" in k:
            k = k.replace("LayerNorm.weight", "LayerNorm.gamma")
        elif "LayerNorm.bias" in k:
            k = k.replace("LayerNorm.bias", "LayerNorm.beta")
        renamed[k.removeprefix("deberta.")] = v      # also: base-model keys without the prefix
    assert any(k.endswith(".gamma") for k in renamed)
    out = tmp_path / "old"
    out.mkdir()
    (out / "config.json").write_text((folder / "config.json").read_text())
    save_file(renamed, str(out / "model.safetensors"))
    loaded = fastdeberta.from_pretrained(out, task="base")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_base_model_from_task_checkpoint(saved_fast_model):
    folder, model = saved_fast_model("v3", "question-answering")
    base = fastdeberta.from_pretrained(folder, task="base")
    assert isinstance(base, TASKS["base"])
    cfg = variant("v3")
    a, valid = _outputs(model.deberta, cfg)
    b, _ = _outputs(base, cfg)
    assert_close(b, a, atol=0, rtol=0, what="base from QA checkpoint")
    assert isinstance(fastdeberta.from_pretrained(folder), TASKS["question-answering"])   # architectures


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_inferred_from_architectures(saved_fast_model, task):
    folder, _ = saved_fast_model("v2-rel", task)
    assert type(fastdeberta.from_pretrained(folder)) is TASKS[task]


def test_dtype_bfloat16(saved_fast_model):
    folder, model = saved_fast_model("v3", "base")
    loaded = fastdeberta.from_pretrained(folder, dtype="bfloat16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    cfg = variant("v3")
    with torch.no_grad():
        out = loaded(**make_inputs(cfg, LONG)).last_hidden_state
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_dtype_auto_and_unknown(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")   # float32 weights under a config that claims bfloat16:
    config = json.loads((folder / "config.json").read_text())   # (saving writes the weights' own dtype)
    config.pop("dtype", None)
    (folder / "config.json").write_text(json.dumps(dict(config, torch_dtype="bfloat16")))
    assert {p.dtype for p in fastdeberta.from_pretrained(folder).parameters()} == {torch.float32}
    auto = fastdeberta.from_pretrained(folder, dtype="auto")
    assert {p.dtype for p in auto.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match=r"unknown dtype 'int4'.*'bfloat16'"):
        fastdeberta.from_pretrained(folder, dtype="int4")


@pytest.mark.parametrize("dtype", ["int4", "float8", "FP16", "torch.int8", "torch.auto", " auto", "",
                                   torch.int8, torch.bool, torch.long, 16, ["float16"]])
def test_bad_dtype_is_refused_before_any_file_is_read(saved_fast_model, monkeypatch, dtype):
    folder, _ = saved_fast_model("v3", "base")
    import fastdeberta.checkpoint as checkpoint

    def read(*args, **kwargs):
        raise AssertionError("a file was read before the dtype was checked")

    for name in ("resolve_model_dir", "find_weight_file", "read_state_dict"):
        monkeypatch.setattr(checkpoint, name, read)
    with pytest.raises(ValueError) as info:
        fastdeberta.from_pretrained(folder, dtype=dtype)
    message = str(info.value)
    assert (repr(dtype) if not isinstance(dtype, torch.dtype) else str(dtype)) in message
    for accepted in ("'float32'", "'bfloat16'", "'float16'", "'auto'", "torch.dtype"):
        assert accepted in message, (accepted, message)


@pytest.mark.parametrize("dtype,expected", [("fp16", torch.float16), ("torch.bfloat16", torch.bfloat16),
                                            (torch.float16, torch.float16), ("float32", torch.float32)])
def test_accepted_dtype_spellings(saved_fast_model, dtype, expected):
    folder, _ = saved_fast_model("v3", "base")
    assert {p.dtype for p in fastdeberta.from_pretrained(folder, dtype=dtype).parameters()} == {expected}


def test_unreadable_tokenizer_says_the_model_loads_without_it(saved_fast_model):
    folder, model = saved_fast_model("v3", "base")
    (folder / "bpe_encoder.bin").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="load_tokenizer=False") as info:
        fastdeberta.from_pretrained(folder)
    assert isinstance(info.value, fastdeberta.checkpoint.TokenizerLoadError)
    assert "bpe_encoder.bin" in str(info.value) and "weights_only" in str(info.value)
    bare = fastdeberta.from_pretrained(folder, load_tokenizer=False)   # the way out the message names
    assert bare.tokenizer is None
    for (k, a), (k2, b) in zip(model.state_dict().items(), bare.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    # other libraries' errors (sentencepiece raises RuntimeError for a corrupt spm.model) get the hint too
    (folder / "bpe_encoder.bin").unlink()
    (folder / "spm.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(ValueError, match=r"RuntimeError.*load_tokenizer=False"):
        fastdeberta.from_pretrained(folder)


def test_new_head_on_base_checkpoint_warns(saved_fast_model):
    folder, model = saved_fast_model("v2-rel", "base")
    with pytest.warns(UserWarning) as record:
        loaded = fastdeberta.from_pretrained(folder, task="sequence-classification", num_labels=4)
    assert len(record) == 1  # one warning, on one line, naming the new weights
    message = str(record[0].message)
    assert "\n" not in message
    for key in ("classifier.weight", "classifier.bias", "pooler.dense.weight"):
        assert key in message
    assert loaded.classifier.out_features == 4
    for k, v in model.state_dict().items():       # the encoder weights did load
        assert torch.equal(loaded.deberta.state_dict()[k], v), k


def test_mismatched_num_labels(saved_fast_model):
    folder, model = saved_fast_model("v2-rel", "sequence-classification", num_labels=3)
    with pytest.raises(CheckpointError) as err:
        fastdeberta.from_pretrained(folder, num_labels=5)
    message = str(err.value)
    assert "classifier.weight" in message and "num_labels" in message
    assert "(3, 32)" in message and "(5, 32)" in message

    with pytest.warns(UserWarning) as record:
        loaded = fastdeberta.from_pretrained(folder, num_labels=5, ignore_mismatched_sizes=True)
    message = " ".join(str(w.message) for w in record)
    assert "classifier.weight" in message and "classifier.bias" in message
    assert loaded.classifier.weight.shape == (5, 32)
    assert torch.equal(loaded.pooler.dense.weight, model.pooler.dense.weight)   # the rest still loaded


# ----------------------------------------------------------------------------------------------------
# Hugging Face cache (offline)

SHA_MAIN = "a" * 40
SHA_V1 = "b" * 40


def _fill_hub_cache(cache):
    """<cache>/models--org--tiny-deberta with two revisions: main -> SHA_MAIN, tag v1 -> SHA_V1."""
    repo = cache / "models--org--tiny-deberta"
    models = {}
    for sha, seed in ((SHA_MAIN, 1), (SHA_V1, 2)):
        config = DebertaConfig.from_dict(variant("v3"))
        model = randomize_(TASKS["base"](config), seed).eval()
        model.save_pretrained(repo / "snapshots" / sha)
        models[sha] = model
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA_MAIN)
    (repo / "refs" / "v1").write_text(SHA_V1)
    return models


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """The cache of _fill_hub_cache, with HF_HUB_OFFLINE=1."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf-cache"
    models = _fill_hub_cache(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-default-cache"))
    return cache, models


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_load_from_hub_cache_offline(hub_cache):
    cache, models = hub_cache
    main = fastdeberta.from_pretrained("org/tiny-deberta", cache_dir=cache)
    assert _same_weights(main, models[SHA_MAIN])
    by_sha = fastdeberta.from_pretrained("org/tiny-deberta", cache_dir=cache, revision=SHA_V1)
    assert _same_weights(by_sha, models[SHA_V1]) and not _same_weights(by_sha, models[SHA_MAIN])
    by_tag = fastdeberta.from_pretrained("org/tiny-deberta", cache_dir=cache, revision="v1")
    assert _same_weights(by_tag, models[SHA_V1])


def test_local_files_only_and_offline_variable_keep_off_the_network(tmp_path, monkeypatch, cache_only_hub):
    cache = tmp_path / "hf-cache"
    models = _fill_hub_cache(cache)
    loaded = fastdeberta.from_pretrained("org/tiny-deberta", cache_dir=cache, local_files_only=True)
    assert _same_weights(loaded, models[SHA_MAIN])
    # HF_HUB_OFFLINE set after huggingface_hub was imported (which only reads it then) still counts
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    by_tag = fastdeberta.from_pretrained("org/tiny-deberta", cache_dir=cache, revision="v1")
    assert _same_weights(by_tag, models[SHA_V1])
    with pytest.raises(ModelNotFoundError, match="org/not-cached.*offline"):
        fastdeberta.from_pretrained("org/not-cached", cache_dir=cache)
    assert cache_only_hub == [True, True, True]


def test_device_argument(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    loaded = fastdeberta.from_pretrained(folder, device="meta")
    assert {p.device.type for p in loaded.parameters()} == {"meta"}
    with pytest.raises(ValueError, match=r"device 'gpu' is not a torch device.*'cpu'"):
        fastdeberta.from_pretrained(folder, device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    with pytest.raises(ValueError, match=r"device 'cuda:1' needs CUDA.*device='cpu'"):
        fastdeberta.from_pretrained(folder, device="cuda:1")


def test_missing_repo_offline(hub_cache):
    cache, _ = hub_cache
    with pytest.raises(ModelNotFoundError) as err:
        fastdeberta.from_pretrained("org/not-there", cache_dir=cache)
    message = str(err.value)
    assert "org/not-there" in message and "offline" in message
    with pytest.raises(ModelNotFoundError, match="v9"):
        fastdeberta.from_pretrained("org/tiny-deberta", cache_dir=cache, revision="v9")


def test_local_folder_without_config(tmp_path):
    (tmp_path / "model").mkdir()
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="config.json"):
        fastdeberta.from_pretrained(tmp_path / "model")


def test_save_is_atomic_and_loads_in_place(saved_fast_model):
    folder, _ = saved_fast_model("v2-norel", "token-classification", num_labels=4)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # a complete checkpoint loads without any warning
        fastdeberta.from_pretrained(folder)


def test_write_config_helper_roundtrip(tmp_path):
    write_config(tmp_path, variant("v1-norel"))
    assert DebertaConfig.from_json_file(tmp_path / "config.json").is_v1
