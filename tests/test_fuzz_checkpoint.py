"""Fuzz: damaged checkpoint folders -- truncated, zero-byte, garbage, wrong-shape, extra- or missing-key,
path-escaping shard indexes, broken config.json. Loading either gives a model equal to what the files
say, or a documented error; `fastdeberta info` exits 0 or 2 (never 1, never a traceback); no file in
the folder changes."""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from conftest import randomize_, variant
from fuzz_support import digest, documented_outcome, fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import fastdeberta
from fastdeberta import CheckpointError, ConfigError, DebertaConfig, DebertaModel, ModelNotFoundError
from fastdeberta.cli.main import main

pytestmark = pytest.mark.usefixtures("single_thread")   # tiny models: one thread is fastest

KEY = "encoder.layer.0.attention.self.query_proj.weight"


@pytest.fixture(scope="module")
def pristine():
    """One small saved model (base task, v3 variant), shared by every example (copied before damage)."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-checkpoint-"))
    model = randomize_(DebertaModel(DebertaConfig.from_dict(variant("v3", num_hidden_layers=1)))).eval()
    model.save_pretrained(root / "model")
    yield root / "model", model
    shutil.rmtree(root, ignore_errors=True)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


DAMAGES = ["truncate", "zero-byte", "garbage", "flip-bytes", "wrong-shape", "extra-key", "missing-key",
           "wrong-dtype", "escape-index", "random-index", "config-field", "config-bytes", "no-config", "bin-garbage"]


def _damage(folder: Path, kind: str, rng: random.Random) -> None:
    """Apply one damage; its details (where, what) come from ``rng`` (seeded by Hypothesis)."""
    weights = folder / "model.safetensors"
    if kind == "truncate" and weights.exists() and weights.stat().st_size:
        raw = weights.read_bytes()
        weights.write_bytes(raw[: rng.randrange(len(raw))])
    elif kind == "zero-byte":
        target = rng.choice(["model.safetensors", "config.json"])
        (folder / target).write_bytes(b"")
    elif kind == "garbage" and weights.exists():
        weights.write_bytes(rng.randbytes(rng.randrange(65)))
    elif kind == "flip-bytes" and weights.exists() and weights.stat().st_size:
        raw = bytearray(weights.read_bytes())
        for _ in range(rng.randint(1, 4)):    # half the flips in the JSON header, half anywhere
            position = rng.randrange(min(len(raw), 400) if rng.random() < 0.5 else len(raw))
            raw[position] = rng.randrange(256)
        weights.write_bytes(bytes(raw))
    elif kind in ("wrong-shape", "extra-key", "missing-key", "wrong-dtype") and weights.exists():
        with contextlib.suppress(Exception):   # an earlier damage may have made it unreadable
            state = _weights(folder)
            key = rng.choice(sorted(state))
            if kind == "wrong-shape":
                state[key] = torch.zeros(*[d + rng.randint(1, 3) for d in state[key].shape] or [2])
            elif kind == "extra-key":
                state[rng.choice(["x.weight", "classifier.weight", "encoder.layer.7.x", key + "2"])] = torch.ones(3)
            elif kind == "missing-key":
                del state[key]
            else:
                state[key] = state[key].to(rng.choice([torch.float16, torch.int64, torch.bool]))
            save_file(state, str(weights))
    elif kind in ("escape-index", "random-index") and weights.exists():
        with contextlib.suppress(Exception):
            state = _weights(folder)
            weights.unlink()
            escapes = ["../model.safetensors", "/etc/passwd", "../../x.safetensors", "", ".", "model.safetensors",
                       "model.safetensors.index.json", "sub/../../escape.safetensors", "\u0000"]
            odd = [None, 7, ["model.safetensors"], "model.safetensors", "nul\u0000", "~/x", "C:\\x", "é/../../a"]
            chosen = [rng.choice(escapes if kind == "escape-index" else odd) for _ in range(rng.randint(1, 3))]
            (folder / "model.safetensors.index.json").write_text(
                json.dumps({"weight_map": {k: chosen[i % len(chosen)] for i, k in enumerate(sorted(state))}}))
    elif kind == "config-field":
        with contextlib.suppress(Exception):
            config = json.loads((folder / "config.json").read_text())
            field = rng.choice(["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                "position_buckets", "model_type", "max_position_embeddings", "intermediate_size",
                                "architectures"])
            config[field] = rng.choice([0, -1, 1, 2, 64, 10**10, "abc", None, ["x"], 10**12])
            (folder / "config.json").write_text(json.dumps(config))
    elif kind == "config-bytes":
        (folder / "config.json").write_bytes(rng.randbytes(rng.randrange(41)))
    elif kind == "no-config":
        (folder / "config.json").unlink(missing_ok=True)
    elif kind == "bin-garbage" and weights.exists():
        weights.unlink()
        (folder / "pytorch_model.bin").write_bytes(rng.randbytes(rng.randrange(65)))


@fuzz_settings(examples=40)
@given(st.lists(st.sampled_from(DAMAGES), min_size=1, max_size=2, unique=True), st.integers(0, 2**32))
def test_damaged_checkpoints(pristine, kinds, seed):
    source, _ = pristine
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(source, folder)
        rng = random.Random(seed)     # the details of each damage: drawn up front, so every example is valid
        for kind in kinds:
            _damage(folder, kind, rng)
        before = digest(Path(tmp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, error = documented_outcome(lambda: fastdeberta.from_pretrained(folder))
        event(type(error).__name__ if error is not None else "loaded")
        if error is not None:
            assert isinstance(error, (CheckpointError, ConfigError, ModelNotFoundError)), type(error)
        else:
            # what loaded is what the files hold
            stored = _weights(folder) if (folder / "model.safetensors").exists() else None
            if stored is not None:
                for key, value in model.state_dict().items():
                    if key in stored:
                        torch.testing.assert_close(value, stored[key].to(value.dtype), rtol=0, atol=0,
                                                   equal_nan=True)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(["info", "--model", str(folder), "--json", "--offline"])
        assert code in (0, 2), err.getvalue()
        assert (code == 2) == bool(err.getvalue().strip()), (code, err.getvalue())
        assert "Traceback" not in err.getvalue()
        assert digest(Path(tmp)) == before            # loading never writes
