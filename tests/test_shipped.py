"""The model shipped inside the package (fastdeberta/deberta-v3-tiny-en): it loads with no network, it is
the default of the pipelines, and its card is rendered by scripts/ship_model.py from measured numbers."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest
import torch

import fastdeberta
from fastdeberta.shipped import DEFAULT_MODEL, SHIPPED

ROOT = Path(__file__).resolve().parents[1]
FOLDER = SHIPPED[DEFAULT_MODEL]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly (the shipped model must not need one)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def ship_script():
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_files_are_small_safetensors():
    files = [p for p in FOLDER.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 30 * 2**20
    weights = sorted(p.relative_to(FOLDER).as_posix() for p in files if p.suffix in (".safetensors", ".bin", ".pt"))
    assert weights == ["discriminator/model.safetensors", "discriminator/rtd_head.safetensors",
                       "generator/model.safetensors"], weights


def test_loads_offline_by_its_name(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = fastdeberta.from_pretrained(DEFAULT_MODEL)
    generator = fastdeberta.from_pretrained(DEFAULT_MODEL, task="masked-lm")
    assert encoder.task == "base" and encoder.tokenizer is not None
    assert generator.enhanced_mask_decoder                       # fill-mask through the EMD
    assert generator.config.num_hidden_layers < encoder.config.num_hidden_layers   # the RTD generator
    ids = encoder.tokenizer(["The cat sat on the mat.", "Hello"], padding=True, return_tensors="pt")
    hidden = encoder(**ids).last_hidden_state
    assert hidden.shape[:2] == ids["input_ids"].shape and torch.isfinite(hidden).all()


def test_pipelines_default_to_it(no_network):
    fill = fastdeberta.pipeline("fill-mask", top_k=5)
    generator = fastdeberta.from_pretrained(DEFAULT_MODEL, task="masked-lm")
    assert fill.model.task == "masked-lm"
    ours, theirs = fill.model.state_dict(), generator.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    preds = fill("The cat sat on the [MASK].")
    assert len(preds) == 5 and all(p["token_str"].strip() for p in preds)
    assert preds[0]["score"] >= preds[-1]["score"] > 0
    # a trained generator: with the masked word's whole left and right context given, pronouns after "into"
    # and function words are ranked far above chance (1 / 12,288)
    assert fill("I thought you were trying to get into [MASK].")[0]["score"] > 0.01
    embed = fastdeberta.pipeline("feature-extraction")
    assert embed.model.task == "base"


def test_card_is_rendered_from_the_measurements():
    """README.md is exactly what scripts/ship_model.py renders from metrics.json + training.json."""
    ship = ship_script()
    metrics = json.loads((FOLDER / "metrics.json").read_text())
    info = json.loads((FOLDER / "training.json").read_text())
    card = (FOLDER / "README.md").read_text()
    assert card == ship.render_card(metrics, info)
    assert f"**{metrics['mlm_accuracy']:.1%}**" in card and f"{metrics['rtd_accuracy']:.1%}" in card
    assert f"{info['shipments'][-1]['step']:,}" in card


def test_counts_add_up_over_training_phases():
    """A new run folder (a phase started from the shipped weights) continues the counts; the same run
    shipped again replaces them."""
    ship = ship_script()
    first = {"run": ".cache/pretrain/run", "step": 300, "tokens_seen": 3000, "train_seconds": 30}
    assert ship.cumulative([], ".cache/pretrain/run", 100, 1000, 10) == {
        "phase": 1, "cumulative_steps": 100, "cumulative_tokens": 1000, "cumulative_train_seconds": 10}
    assert ship.cumulative([first], ".cache/pretrain/run", 400, 4000, 40)["cumulative_steps"] == 400
    second = {"run": ".cache/pretrain/run2", "step": 50, "tokens_seen": 500, "train_seconds": 5,
              **ship.cumulative([first], ".cache/pretrain/run2", 50, 500, 5)}
    assert second["phase"] == 2 and second["cumulative_steps"] == 350 and second["cumulative_tokens"] == 3500
    assert ship.cumulative([first, second], ".cache/pretrain/run2", 80, 800, 8)["cumulative_steps"] == 380
    third = ship.cumulative([first, second], ".cache/pretrain/run3", 10, 100, 1)
    assert third == {"phase": 3, "cumulative_steps": 360, "cumulative_tokens": 3600, "cumulative_train_seconds": 36}


@pytest.mark.slow
def test_card_numbers_are_remeasured_equal():
    """Re-running the card's measurement on the held-out corpus gives the numbers in metrics.json."""
    valid = ROOT / ".cache" / "corpus" / "valid.txt"
    if not valid.is_file():
        pytest.skip("needs the held-out corpus: python scripts/prepare_corpus.py")
    stored = json.loads((FOLDER / "metrics.json").read_text())
    measured = ship_script().measure(valid, stored["sequences"])
    for key in ("mlm_accuracy", "mlm_loss", "rtd_accuracy", "rtd_auc", "mlm_accuracy_80_10_10"):
        assert measured[key] == pytest.approx(stored[key], abs=2e-3), key
    assert measured["masked_tokens"] == stored["masked_tokens"]
