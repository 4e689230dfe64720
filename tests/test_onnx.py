"""ONNX export and the onnxruntime engine: parity with PyTorch at lengths the graph was not traced at,
every head, fill-mask and encode through the engine, int8 accuracy report, and bad input.

Exports of tiny models take several seconds each (torch.export + translation), so each is made once
per module; the full matrix of config variants x heads is marked slow.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

sys.path.insert(0, str(Path(__file__).parent))
from conftest import VARIANTS, make_inputs, randomize_, variant  # noqa: E402

import fastdeberta  # noqa: E402
from fastdeberta import TASKS, DebertaConfig  # noqa: E402
from fastdeberta.export import export_onnx  # noqa: E402
from fastdeberta.export.onnx import TRACE_LENGTH  # noqa: E402
from fastdeberta.model.positions import GraphSlots, distance_slots, position_slots, slot_table  # noqa: E402

# Lengths other than the traced one (16), below and above the bucket midpoints and relative spans of
# the tiny configs, up to their 64-position limit.
UNTRACED = (3, 21, 64)


def tiny_model(name: str, task: str = "base", seed: int = 0, **overrides):
    return randomize_(TASKS[task](DebertaConfig.from_dict(variant(name, **overrides))), seed).eval()


def pytorch_outputs(model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        out = model(**inputs, output_hidden_states=model.task != "base")
    values = {k: v for k, v in out.items() if k not in ("hidden_states", "attentions", "loss")}
    if model.task not in ("base", "multiple-choice"):
        values["last_hidden_state"] = out.hidden_states[-1]
    return values


def assert_onnx_matches(folder: Path, model, lengths=UNTRACED, choices: int | None = None) -> None:
    """onnxruntime (through the engine's session) against the PyTorch model, padded batches, real tokens."""
    engine = fastdeberta.from_pretrained(folder)
    config = variant_dict(model)
    for seed, length in enumerate(lengths):
        inputs = make_inputs(config, length, batch=3, seed=seed, choices=choices)
        expected = pytorch_outputs(model, inputs)
        feed = {n: inputs[n].numpy() for n in engine.input_names if n in inputs}
        actual = dict(zip(engine.output_names, engine.session.run(None, feed)))
        assert set(actual) == set(expected), (sorted(actual), sorted(expected))
        mask = inputs["attention_mask"].reshape(-1, length).bool().numpy()
        for name, ref in expected.items():
            ref, got = ref.numpy(), actual[name]
            assert got.shape == ref.shape, (name, got.shape, ref.shape)
            if got.ndim >= 2 and got.shape[:2] == mask.shape:
                ref, got = ref[mask], got[mask]
            scale = max(1.0, float(np.abs(ref).max()))
            diff = float(np.abs(got - ref).max())
            assert diff <= 1e-4 * scale, f"{name} at length {length}: max abs diff {diff:.3g} (scale {scale:.3g})"


def variant_dict(model) -> dict:
    return model.config.to_dict()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """Factory: export ``(name, task)`` once per module -> (folder, model, manifest)."""
    made: dict = {}

    def make(name: str, task: str = "base", **kwargs):
        key = (name, task, tuple(sorted(kwargs.items())))
        if key not in made:
            model = tiny_model(name, task)
            folder = tmp_path_factory.mktemp("onnx") / f"{name}-{task}"
            result = export_onnx(model, folder, **kwargs)
            made[key] = (folder, model, result.manifest)
        return made[key]

    return make


# ----------------------------------------------------------------------------- positions in the graph
@pytest.mark.parametrize("name", ["v3", "v2-xlarge-style", "v1-base", "v1-c2p-abs-types", "v2-rel"])
@pytest.mark.parametrize("length", [1, 5, 17, 40, 200])
def test_graph_slots_index_equals_python_slots(name, length):
    """The tensor-only slot computation of export graphs gives the same (table row) index as the
    Python-int one the PyTorch model uses, once offset by the rows the latter skips."""
    config = DebertaConfig.from_dict(variant(name))
    kw = dict(span=config.relative_span, buckets=config.position_buckets if not config.is_v1 else -1,
              max_position=config.max_relative_distance)
    python = position_slots(length, **kw)
    graph = GraphSlots(length, **kw)
    assert torch.equal(graph.index, python.index + python.first)
    assert graph.count == 2 * config.relative_span


@pytest.mark.parametrize("kw", [dict(span=256, buckets=256, max_position=512),    # deberta-v3 / mdeberta
                                dict(span=256, buckets=256, max_position=512, length=1100),
                                dict(span=128, buckets=-1, max_position=128),     # v1 style, clamped
                                dict(span=8, buckets=8, max_position=32)])
def test_graph_slots_with_released_parameters(kw):
    """Past the saturation distance (511 for v3) the table lookup keeps giving the outermost slots;
    every slot equals the one the PyTorch model computes (torch's log on float64)."""
    length = kw.pop("length", 700)
    graph, python = GraphSlots(length, **kw), position_slots(length, **kw)
    assert torch.equal(graph.index, python.index + python.first)
    reach, table = slot_table(**kw)
    assert list(table) == distance_slots(torch.arange(-reach, reach + 1), **kw).tolist()


# ----------------------------------------------------------------------------- parity (default set)
@pytest.mark.parametrize("name", ["v2-xlarge-style", pytest.param("v1-talking-both", marks=pytest.mark.slow)])
def test_export_parity_at_untraced_lengths(export_dir, name, single_thread):
    folder, model, manifest = export_dir(name)
    assert manifest["traced_length"] == TRACE_LENGTH
    assert manifest["parity"]["passed"]
    assert max(manifest["parity"]["lengths"]) > TRACE_LENGTH and 1 in manifest["parity"]["lengths"]
    assert_onnx_matches(folder, model)


def test_masked_lm_with_enhanced_mask_decoder(export_dir, single_thread):
    folder, model, manifest = export_dir("v3", "masked-lm")
    assert model.enhanced_mask_decoder and manifest["enhanced_mask_decoder"]
    assert [o["name"] for o in manifest["outputs"]] == ["logits", "last_hidden_state"]
    assert_onnx_matches(folder, model)


def test_manifest_and_folder_contents(export_dir):
    folder, model, manifest = export_dir("v1-c2p-abs-types")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "manifest.json", "model.onnx"]
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    # token types only when the model has them; symbolic axes; the model's absolute-position limit
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["inputs"][0]["shape"] == ["batch", "sequence"]
    assert manifest["outputs"][0] == {"name": "last_hidden_state", "dtype": "float32",
                                      "shape": ["batch", "sequence", 32]}
    assert manifest["max_length"] == 64 and manifest["opset"] == 18
    assert json.loads((folder / "config.json").read_text())["model_type"] == "deberta"
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask                   # not owner-only like a temp folder
    assert (folder / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~umask
    import onnx

    graph = onnx.load(str(folder / "model.onnx")).graph
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert all(isinstance(a, str) and isinstance(b, str) for a, b in dims), dims   # symbolic, not traced sizes
    no_types, _, m = export_dir("v3", "masked-lm")
    assert [i["name"] for i in m["inputs"]] == ["input_ids", "attention_mask"]


@pytest.mark.slow
def test_question_answering_head(export_dir, single_thread):
    folder, model, _ = export_dir("v2-maxrel-c2p-conv-emb", "question-answering")
    assert_onnx_matches(folder, model, lengths=(5, 40))
    engine = fastdeberta.from_pretrained(folder)
    inputs = make_inputs(variant("v2-maxrel-c2p-conv-emb"), 9)
    out = engine(**inputs)
    with torch.inference_mode():
        ref = model(**inputs)
    torch.testing.assert_close(out.start_logits, ref.start_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.end_logits, ref.end_logits, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- every variant x head (slow)
HEADS = ("base", "masked-lm", "sequence-classification", "token-classification", "question-answering",
         "multiple-choice")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_parity(export_dir, name, single_thread):
    folder, model, _ = export_dir(name)
    assert_onnx_matches(folder, model)


@pytest.mark.slow
@pytest.mark.parametrize("task", HEADS)
@pytest.mark.parametrize("name", ["v3", "v1-c2p-abs-types"])
def test_every_head_parity(export_dir, name, task, single_thread):
    folder, model, _ = export_dir(name, task)
    assert_onnx_matches(folder, model, lengths=(3, 40), choices=2 if task == "multiple-choice" else None)


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    dict(share_att_key=True), dict(share_att_key=False), dict(pos_att_type="c2p"),
    # mDeBERTa-v3-base shape (scaled down): 250k vocabulary -> large vocab, v3 attention
    dict(vocab_size=2000, position_buckets=16, norm_rel_ebd="layer_norm"),
])
def test_position_projection_variants(tmp_path, overrides, single_thread):
    model = tiny_model("v3", **overrides)
    result = export_onnx(model, tmp_path / "out")
    assert_onnx_matches(result.folder, model)
