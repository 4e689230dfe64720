"""`fastdeberta attention` and the PNG plots: files written with the expected pixel sizes, summary JSON,
page, tokens with character offsets, and clear errors for bad input (layer/head out of range, empty
text, text longer than the model takes, matplotlib missing)."""

from __future__ import annotations

import json
import struct
import sys

import pytest
import torch
from conftest import randomize_, variant
from inference_fixtures import mlm_checkpoint

import fastdeberta
from fastdeberta import DebertaConfig, DebertaModel, InvalidInputError
from fastdeberta.cli.main import main
from fastdeberta.interpret import decompose_attention
from fastdeberta.interpret.plots import plot_distance_profiles, plot_positional_grid, plot_terms
from fastdeberta.interpret.summaries import summarize

TEXT = "The cat sat on the mat, and the dog ran away."
REORDERED = "The dog sat on the mat, and the cat ran away."


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def mlm():
    return fastdeberta.from_pretrained(mlm_checkpoint(), task="masked-lm")


def _explained(name: str, length: int = 11):
    model = randomize_(DebertaModel(DebertaConfig.from_dict(variant(name)))).eval()
    return decompose_attention(model, torch.arange(4, 4 + length)[None])


def test_plots_have_the_documented_pixel_sizes(tmp_path):
    explanation = _explained("v3")                    # 11 tokens, 2 layers, 4 heads
    summary = summarize(explanation)
    terms = plot_terms(explanation, -1, 3, tmp_path / "terms.png")
    grid = plot_positional_grid(summary, tmp_path / "grid.png")
    profiles = plot_distance_profiles(summary, tmp_path / "profiles.png")
    # five 4-inch panels + 0.6 inch of titles at 100 dpi; grid 4.4 x 3 inches; profiles 2 panels of 4 x 3
    assert png_size(terms) == (2000, 460)
    assert png_size(grid) == (440, 300)
    assert png_size(profiles) == (800, 300)
    for path in (terms, grid, profiles):
        assert path.stat().st_size > 5_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "profiles.png", "terms.png"]  # no temp files


def test_plot_terms_for_a_model_without_c2p_and_bad_heads(tmp_path):
    explanation = _explained("v2-p2c-bucket-emb", length=30)
    path = plot_terms(explanation, 0, 0, tmp_path / "terms.png")
    assert png_size(path) == (3750, 810)        # 30 tokens: panels of 4 + 0.25 * 14 = 7.5 inches
    with pytest.raises(InvalidInputError, match="head 4 is out of range: this model has 4 heads"):
        plot_terms(explanation, 0, 4, tmp_path / "x.png")
    with pytest.raises(InvalidInputError, match="layer 2 is out of range"):
        plot_terms(explanation, 2, 0, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plots_say_how_to_get_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'fastdeberta\[plot\]'"):
        plot_positional_grid(summarize(_explained("v3")), tmp_path / "grid.png")


def test_explain_attention_tokens_offsets_and_errors(mlm):
    explanation = fastdeberta.explain_attention(mlm, [TEXT, "Hello there"])
    tokens, offsets = explanation.tokens, explanation.offsets
    assert tokens[0][0] == "[CLS]" and tokens[0][-1] == "[SEP]" and len(tokens[1]) < len(tokens[0])
    for token, (start, end) in zip(tokens[0][1:-1], offsets[0][1:-1]):
        assert TEXT[start:end] == token.lstrip("\u2581") or token == "\u2581", (token, TEXT[start:end])
    assert explanation.lengths == [len(tokens[0]), len(tokens[1])]
    assert explanation[0].probs.shape[2] == len(tokens[0])
    with pytest.raises(InvalidInputError, match="text 1 is empty"):
        fastdeberta.explain_attention(mlm, [TEXT, "  "])
    with pytest.raises(InvalidInputError, match="texts is empty"):
        fastdeberta.explain_attention(mlm, [])
    with pytest.raises(InvalidInputError, match=r"text 0 has \d+ tokens \(with \[CLS\]/\[SEP\]\) but this model "
                                                r"takes at most 128"):
        fastdeberta.explain_attention(mlm, " ".join(["word"] * 300))


def test_cli_writes_pngs_summary_and_page(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["attention", "--model", str(mlm_checkpoint()), "--text", TEXT, "--compare", REORDERED,
                 "--layer", "-1", "--head", "2", "--output", str(out)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["attention.html", "distance_profiles.png", "positional_grid.png",
                                                    "summary.json", "terms_layer2_head2.png"]
    assert report["files"]["terms"].endswith("terms_layer2_head2.png") and report["layers"] == 3
    summary = json.loads((out / "summary.json").read_text())
    assert [layer["layer"] for layer in summary["layers"]] == [0, 1, 2]
    head = summary["layers"][0]["heads"][0]
    assert sum(head["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(head["distance_profile"]) == pytest.approx(1.0, abs=1e-3)
    assert summary["order_sensitivity"]["aligned_tokens"] == report["tokens"]
    panel_inches = 4 + 0.25 * max(0, report["tokens"] - 16)
    assert png_size(out / "terms_layer2_head2.png") == (round(500 * panel_inches), round(100 * panel_inches + 60))
    page = (out / "attention.html").read_text()
    data = page.split('<script type="application/json" id="attention-data">')[1].split("</script>")[0]
    assert json.loads(data)["tokens"] == summary["tokens"][0]


@pytest.mark.parametrize("arguments, message", [
    (["--layer", "3"], "--layer 3 is out of range: this model has 3 layers"),
    (["--layer", "-4"], "--layer -4 is out of range"),
    (["--head", "4"], "--head 4 is out of range: this model has 4 heads per layer"),
    (["--text", "   "], "--text is empty"),
    (["--max-length", "5"], "tokens (with [CLS]/[SEP]) but this model takes at most 5; shorten it"),
])
def test_cli_bad_input(arguments, message, tmp_path, capsys):
    base = {"--model": str(mlm_checkpoint()), "--text": TEXT, "--output": str(tmp_path / "out")}
    pairs = dict(zip(arguments[::2], arguments[1::2]))
    argv = ["attention"] + [x for key, value in {**base, **pairs}.items() for x in (key, value)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
