"""LoRA: only adapters + head train, merged weights give the adapter model's outputs, adapters save and
load alone, peft reads our adapter files onto transformers' model and gives the same outputs."""

from __future__ import annotations

import json

import finetune_fixtures as ff
import pytest
import torch
from conftest import make_inputs, randomize_, variant

from fastdeberta import TASKS, DebertaConfig
from fastdeberta.training.lora import (
    LoraConfig,
    LoraLinear,
    add_lora,
    load_lora,
    merge_lora,
    merged_state_dict,
    save_lora,
    trainable_parameters,
)


def _model(task: str = "sequence-classification", seed: int = 0):
    cfg = variant("v3", num_labels=3)
    return randomize_(TASKS[task](DebertaConfig.from_dict(cfg)), seed).eval(), cfg


def _perturb_adapters(model, seed: int = 1) -> None:
    """Fresh adapters are a no-op (B = 0); give them values so that every check below means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLinear):
                module.lora_B.weight.copy_(torch.randn(module.lora_B.weight.shape, generator=gen) * 0.3)


def test_only_adapters_and_head_train_and_count(single_thread):
    model, cfg = _model()
    before = model(**make_inputs(cfg, 8)).logits
    add_lora(model, LoraConfig(r=4, lora_alpha=8))
    assert torch.equal(model(**make_inputs(cfg, 8)).logits, before)      # B = 0: nothing changes yet
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapters = {n for n in trainable if ".lora_" in n}
    assert adapters and all(("query_proj" in n or "value_proj" in n) for n in adapters)
    assert trainable - adapters == {"classifier.weight", "classifier.bias", "pooler.dense.weight", "pooler.dense.bias"}
    D, layers, labels = cfg["hidden_size"], cfg["num_hidden_layers"], 3
    expected = layers * 2 * (4 * D + D * 4) + (D * labels + labels) + (D * D + D)
    count, total = trainable_parameters(model)
    assert count == expected and total > count


def test_merged_equals_adapter_outputs(single_thread):
    model, cfg = _model()
    add_lora(model, LoraConfig(r=4, lora_alpha=16, target_modules=["query_proj", "value_proj", "dense"]))
    _perturb_adapters(model)
    inputs = make_inputs(cfg, 12)
    with torch.no_grad():
        adapted = model(**inputs).logits
        plain, _ = _model()
        plain.load_state_dict(merged_state_dict(model))
        from_state = plain(**inputs).logits
        merge_lora(model)
        merged = model(**inputs).logits
    assert not any(isinstance(m, LoraLinear) for m in model.modules())
    assert (adapted - _model()[0](**inputs).logits).abs().max() > 1e-3      # the adapters do change the output
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_state, adapted, atol=1e-5, rtol=1e-5)


def test_save_and_load_adapters_alone(tmp_path, single_thread):
    model, cfg = _model()
    add_lora(model)
    _perturb_adapters(model)
    with torch.no_grad():
        model.classifier.weight.mul_(2.0)                    # a trained head travels with the adapters
    save_lora(model, tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["target_modules"] == ["query_proj", "value_proj"]
    assert saved["modules_to_save"] == ["classifier", "pooler"] and saved["r"] == 8
    fresh, _ = _model()
    load_lora(fresh, tmp_path / "adapter")
    inputs = make_inputs(cfg, 8)
    with torch.no_grad():
        torch.testing.assert_close(fresh(**inputs).logits, model(**inputs).logits, atol=1e-6, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora(_model()[0], tmp_path)
    with pytest.raises(ValueError, match="no nn.Linear named"):
        add_lora(_model()[0], LoraConfig(target_modules=["q_lin"]))


def test_peft_loads_our_adapters_onto_transformers_model(tmp_path, single_thread):
    peft = pytest.importorskip("peft")
    from conftest import hf_model

    model, cfg = _model()
    add_lora(model)
    _perturb_adapters(model)
    save_lora(model, tmp_path / "adapter")
    theirs = hf_model(cfg, "sequence-classification")
    theirs.load_state_dict(_model()[0].state_dict())          # the same base weights
    theirs = peft.PeftModel.from_pretrained(theirs, str(tmp_path / "adapter")).eval()
    inputs = make_inputs(cfg, 10)
    with torch.no_grad():
        torch.testing.assert_close(theirs(**inputs).logits, model(**inputs).logits, atol=1e-5, rtol=1e-5)


def test_train_with_lora_from_the_cli(tmp_path, single_thread):
    from safetensors.torch import load_file

    from fastdeberta.cli.main import main

    base = ff.base_checkpoint(tmp_path / "base")
    train = ff.write_csv(tmp_path / "train.csv", ff.classification_rows(32))
    out = tmp_path / "out"
    assert main(["train", "--task", "sequence-classification", "--model", str(base), "--train", str(train),
                 "--output", str(out), "--max-steps", "3", "--lr", "1e-2", "--lora", "--lora-r", "2",
                 "--precision", "fp32", "--no-progress"]) == 0
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    merged = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k for k in merged)
    original = load_file(str(base / "model.safetensors"))
    # frozen weights are untouched; the adapted ones differ by the (trained) low-rank update
    key = "deberta.encoder.layer.0.attention.self.key_proj.weight"
    assert torch.equal(merged[key], original[key.removeprefix("deberta.")] if key not in original else original[key])
    query = "deberta.encoder.layer.0.attention.self.query_proj.weight"
    base_query = original.get(query, original.get(query.removeprefix("deberta.")))
    delta = merged[query] - base_query
    assert 0 < torch.linalg.matrix_rank(delta) <= 2


def test_lora_run_resumes_exactly(tmp_path, single_thread):
    """Checkpoints of a LoRA run hold the adapters: resuming from an earlier checkpoint (the later ones
    removed, as after a crash) reaches the same merged weights and adapters as the uninterrupted run."""
    import shutil

    from safetensors.torch import load_file

    from fastdeberta.cli.main import main

    base = ff.base_checkpoint(tmp_path / "base")
    train = ff.write_csv(tmp_path / "train.csv", ff.classification_rows(48))

    def run(out, *extra):
        return main(["train", "--task", "sequence-classification", "--model", str(base), "--train", str(train),
                     "--output", str(out), "--max-steps", "6", "--save-every", "2", "--batch-size", "8",
                     "--lr", "1e-2", "--lora", "--lora-r", "2", "--lora-dropout", "0.1", "--precision", "fp32",
                     "--no-progress", *extra])

    assert run(tmp_path / "reference") == 0
    crashed = tmp_path / "crashed"
    assert run(crashed) == 0
    for name in ("checkpoint-6", "adapter"):
        shutil.rmtree(crashed / name)
    for name in ("model.safetensors", "config.json"):
        (crashed / name).unlink()
    assert (crashed / "checkpoint-4").is_dir()
    assert run(crashed, "--resume") == 0
    for name in ("model.safetensors", "adapter/adapter_model.safetensors"):
        ours, expected = load_file(str(crashed / name)), load_file(str(tmp_path / "reference" / name))
        assert ours.keys() == expected.keys()
        assert all(torch.equal(ours[k], expected[k]) for k in expected), name
