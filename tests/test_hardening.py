"""Issue 13: nothing lost on failure (atomic saves and outputs), containment of file names read from a
checkpoint, warnings for NaN/Inf weights, configs that do not describe their weights, Hub messages."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import variant
from safetensors.torch import load_file, save_file

import fastdeberta
from fastdeberta import CheckpointError, ConfigError, UnsafePathError
from fastdeberta.cli.main import main

pytestmark = pytest.mark.usefixtures("single_thread")


def _digest(folder: Path) -> dict[str, str]:
    """name -> sha256 of every file under ``folder`` (relative names, hidden files included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _shard(folder: Path, names: dict[str, str]) -> None:
    """Split model.safetensors into the shards ``names`` maps keys onto (key prefix -> file name)."""
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    weight_map, shards = {}, {}
    for key, value in state.items():
        name = next(file for prefix, file in names.items() if key.startswith(prefix))
        weight_map[key] = name
        shards.setdefault(name, {})[key] = value
    for name, part in shards.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        save_file(part, str(folder / name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


# ----------------------------------------------------------------------------------------------------
# containment


def test_sharded_checkpoint_inside_its_folder_loads(saved_fast_model):
    folder, model = saved_fast_model("v3", "base")
    _shard(folder, {"embeddings.": "model-00001-of-00002.safetensors", "": "model-00002-of-00002.safetensors"})
    loaded = fastdeberta.from_pretrained(folder)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("escape", ["../../other/model.safetensors", "../outside.safetensors", "ABSOLUTE"])
def test_shard_index_cannot_reach_outside_the_folder(saved_fast_model, tmp_path, escape):
    folder, _ = saved_fast_model("v3", "base")
    outside = tmp_path / "other" / "model.safetensors"
    outside.parent.mkdir(parents=True)
    save_file(load_file(str(folder / "model.safetensors")), str(outside))
    save_file(load_file(str(folder / "model.safetensors")), str(tmp_path / "outside.safetensors"))
    name = str(outside) if escape == "ABSOLUTE" else escape
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: name for k in state}}))
    with pytest.raises(UnsafePathError) as err:
        fastdeberta.from_pretrained(folder)
    assert repr(name) in str(err.value) and "outside the checkpoint folder" in str(err.value)
    assert isinstance(err.value, CheckpointError) and isinstance(err.value, ValueError)


def test_symlinked_shard_pointing_outside_is_refused(saved_fast_model, tmp_path):
    folder, _ = saved_fast_model("v3", "base")
    _shard(folder, {"": "model-00001-of-00001.safetensors"})
    real = tmp_path / "elsewhere.safetensors"
    os.replace(folder / "model-00001-of-00001.safetensors", real)
    os.symlink(real, folder / "model-00001-of-00001.safetensors")
    with pytest.raises(UnsafePathError, match="elsewhere.safetensors"):
        fastdeberta.from_pretrained(folder)


def test_index_that_names_itself_is_an_error_not_a_recursion(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: index.name for k in state}}))
    with pytest.raises(CheckpointError, match="shards are .safetensors or .bin files"):
        fastdeberta.from_pretrained(folder)


@pytest.mark.parametrize("index", [{"weight_map": {"a": ["x"]}}, {"weight_map": {}}, {"weight_map": 3}, [1], "x"])
def test_malformed_shard_index(saved_fast_model, index):
    folder, _ = saved_fast_model("v3", "base")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model.safetensors.index.json"):
        fastdeberta.from_pretrained(folder)


def _cached_repo(cache: Path, repo: str, files: dict[str, Path], sha: str = "a" * 40) -> Path:
    """A Hub cache entry laid out as huggingface_hub writes it: files in blobs/, symlinks in the snapshot."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / sha
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(sha)
    for name, source in files.items():
        data = source.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return snapshot


def test_cache_snapshot_symlinks_into_blobs_are_allowed_other_repos_are_not(saved_fast_model, tmp_path):
    folder, model = saved_fast_model("v3", "base")
    _shard(folder, {"embeddings.": "model-00001-of-00002.safetensors", "": "model-00002-of-00002.safetensors"})
    cache = tmp_path / "hf-cache"
    files = {p.name: p for p in folder.iterdir()}
    _cached_repo(cache, "org/good", files)
    loaded = fastdeberta.from_pretrained("org/good", cache_dir=cache, local_files_only=True)
    torch.testing.assert_close(loaded.state_dict()["embeddings.LayerNorm.weight"],
                               model.state_dict()["embeddings.LayerNorm.weight"], rtol=0, atol=0)
    # an index in another cached repo that names the first repo's blobs is refused
    other_blob = next((cache / "models--org--good" / "blobs").iterdir())
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"x": f"../../../models--org--good/blobs/{other_blob.name}"}}))
    _cached_repo(cache, "org/evil", {"config.json": folder / "config.json", index.name: index})
    with pytest.raises(UnsafePathError, match="models--org--good"):
        fastdeberta.from_pretrained("org/evil", cache_dir=cache, local_files_only=True)


def test_tokenizer_config_file_names_are_not_followed(tmp_path):
    """tokenizer_config.json may name vocab files (transformers writes "vocab_file"); fastdeberta reads
    only the fixed file names inside the folder, so a name pointing elsewhere is never opened."""
    from inference_fixtures import mlm_checkpoint

    folder = tmp_path / "model"
    folder.mkdir()
    for path in mlm_checkpoint().iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    secret = tmp_path / "secret.model"
    secret.write_bytes(b"not a sentencepiece model")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(vocab_file=str(secret), tokenizer_file="../secret.model", merges_file="/etc/passwd")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = fastdeberta.Tokenizer.from_pretrained(folder)
    reference = fastdeberta.Tokenizer.from_pretrained(mlm_checkpoint())
    assert tokenizer("hello world")["input_ids"] == reference("hello world")["input_ids"]


# ----------------------------------------------------------------------------------------------------
# weights that do not fit the config, NaN/Inf weights


def test_nan_and_inf_weights_warn_with_their_names(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    state = load_file(str(folder / "model.safetensors"))
    state["encoder.layer.0.attention.output.dense.weight"][0, 0] = float("nan")
    state["embeddings.LayerNorm.bias"][3] = float("inf")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.warns(RuntimeWarning) as record:
        fastdeberta.from_pretrained(folder)
    message = " ".join(str(w.message) for w in record)
    assert "2 weight tensor(s) hold NaN or Inf" in message
    assert "deberta.encoder.layer.0.attention.output.dense.weight" in message
    assert "deberta.embeddings.LayerNorm.bias" in message


def test_finite_weights_do_not_warn(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fastdeberta.from_pretrained(folder)


def _set_vocab(folder: Path, vocab_size) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = vocab_size
    (folder / "config.json").write_text(json.dumps(config))


def test_config_claiming_a_huge_vocabulary_fails_before_allocating(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    _set_vocab(folder, 2_000_000_000)
    with pytest.raises(CheckpointError) as err:   # building the model first would ask for 256 GB
        fastdeberta.from_pretrained(folder)
    assert "(300, 32)" in str(err.value) and "(2000000000, 32)" in str(err.value)
    assert "word_embeddings" in str(err.value)
    _set_vocab(folder, 1e10)                       # past any int32 token id: the config itself is refused
    with pytest.raises(ConfigError, match="vocab_size must be at most 2147483647, got 10000000000"):
        fastdeberta.from_pretrained(folder)


@pytest.mark.parametrize("vocab_size,needle", [(2_000_000_000, "wrong shape"), (1e10, "vocab_size must be at most")])
def test_info_on_a_config_that_does_not_describe_the_weights(saved_fast_model, capsys, vocab_size, needle):
    folder, _ = saved_fast_model("v3", "base")
    _set_vocab(folder, vocab_size)
    code = main(["info", "--model", str(folder), "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert needle in captured.err and str(folder) in captured.err


# ----------------------------------------------------------------------------------------------------
# nothing lost on failure


def _failing_after(monkeypatch, module, name: str, written: bytes = b"partial"):
    """Make ``module.name`` write some bytes to its path argument, then fail as a full disk would."""
    def fail(*args, **kwargs):
        target = next(a for a in list(args) + list(kwargs.values()) if isinstance(a, (str, os.PathLike)))
        Path(target).write_bytes(written)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, name, fail)


def test_save_pretrained_failing_on_the_weights_leaves_the_old_model(saved_fast_model, monkeypatch):
    import safetensors.torch

    folder, model = saved_fast_model("v3", "base")
    (folder / "notes.txt").write_text("the user's own file")
    before = _digest(folder)
    changed = fastdeberta.DebertaModel(fastdeberta.DebertaConfig.from_dict(variant("v3", num_hidden_layers=1)))
    _failing_after(monkeypatch, safetensors.torch, "save_file")
    with pytest.raises(OSError, match="No space"):
        changed.save_pretrained(folder)
    monkeypatch.undo()
    assert _digest(folder) == before                       # no file changed, no temporary file left
    reloaded = fastdeberta.from_pretrained(folder)
    assert reloaded.config.num_hidden_layers == model.config.num_hidden_layers


def test_save_pretrained_failing_on_the_tokenizer_leaves_the_old_model(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    before = _digest(folder)

    class BrokenTokenizer:
        def save_pretrained(self, target):
            (Path(target) / "spm.model").write_bytes(b"half")
            raise OSError(27, "File too large")

    changed = fastdeberta.DebertaModel(fastdeberta.DebertaConfig.from_dict(variant("v3", num_hidden_layers=1)))
    changed.tokenizer = BrokenTokenizer()
    with pytest.raises(OSError, match="too large"):
        changed.save_pretrained(folder)
    assert _digest(folder) == before
    fastdeberta.from_pretrained(folder)


def test_save_pretrained_replaces_the_model_and_keeps_other_files(saved_fast_model):
    folder, _ = saved_fast_model("v3", "base")
    (folder / "notes.txt").write_text("the user's own file")
    changed = fastdeberta.DebertaModel(fastdeberta.DebertaConfig.from_dict(variant("v3", num_hidden_layers=1)))
    changed.save_pretrained(folder)
    assert (folder / "notes.txt").read_text() == "the user's own file"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert fastdeberta.from_pretrained(folder).config.num_hidden_layers == 1


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_embed_output_is_replaced_only_when_complete(tmp_path, monkeypatch, suffix):
    from fastdeberta.cli import embed

    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    output = tmp_path / f"out{suffix}"
    embed.write_embeddings(output, ["a", "b"], np.ones((2, 4), dtype=np.float32))
    before = output.read_bytes()
    if suffix == ".npy":
        def fail(handle, array):
            handle.write(b"\x93NUMPY partial")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(np, "save", fail)
    else:
        import pyarrow.parquet as pq

        _failing_after(monkeypatch, pq, "write_table")
    with pytest.raises(OSError, match="No space"):
        embed.write_embeddings(output, ["c", "d", "e"], np.zeros((3, 4), dtype=np.float32))
    assert output.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]


# ----------------------------------------------------------------------------------------------------
# Hub messages


def test_not_found_online_does_not_claim_to_be_offline(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(**kwargs):
        raise LocalEntryNotFoundError("connection error and not in cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(fastdeberta.ModelNotFoundError) as err:
        fastdeberta.from_pretrained("org/no-such-model", cache_dir=tmp_path)
    assert "offline" not in str(err.value) and "could not be reached" in str(err.value)
    with pytest.raises(fastdeberta.ModelNotFoundError, match=r"offline \(local_files_only=True\)"):
        fastdeberta.from_pretrained("org/no-such-model", cache_dir=tmp_path, local_files_only=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(fastdeberta.ModelNotFoundError, match=r"offline \(HF_HUB_OFFLINE is set\)"):
        fastdeberta.from_pretrained("org/no-such-model", cache_dir=tmp_path)


def test_error_types_keep_their_old_bases():
    from fastdeberta.checkpoint import TokenizerLoadError
    from fastdeberta.config import ConfigError
    from fastdeberta.hub import ModelNotFoundError

    assert issubclass(CheckpointError, RuntimeError) and issubclass(CheckpointError, ValueError)
    assert issubclass(ConfigError, ValueError) and issubclass(TokenizerLoadError, ValueError)
    assert issubclass(ModelNotFoundError, FileNotFoundError)
    for cls in (CheckpointError, ConfigError, TokenizerLoadError, ModelNotFoundError, UnsafePathError,
                fastdeberta.InvalidInputError, fastdeberta.InputTypeError):
        assert issubclass(cls, fastdeberta.FastDebertaError)


@pytest.mark.parametrize("name,error,needle", [
    (None, fastdeberta.InputTypeError, "got NoneType"),
    (5, fastdeberta.InputTypeError, "got int 5"),
    (b"folder", fastdeberta.InputTypeError, "got bytes"),
    ("", fastdeberta.ModelNotFoundError, "empty"),                     # was: "no config.json in ."
    ("   ", fastdeberta.ModelNotFoundError, "empty"),
    ("x" * 5000, fastdeberta.ModelNotFoundError, "xxxx"),               # was: OSError file name too long
    ("~no-such-user-fastdeberta/model", fastdeberta.ModelNotFoundError, "No folder at"),   # was RuntimeError
])
def test_model_names_that_name_nothing(name, error, needle, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(error, match=needle):
        fastdeberta.from_pretrained(name)
