"""The onnxruntime engine behind fastdeberta's pipelines, the int8 export, the command line, and the
errors: unknown task, folder without weights, onnxruntime missing, an export that fails its check."""

from __future__ import annotations

import builtins
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

sys.path.insert(0, str(Path(__file__).parent))
import inference_fixtures as fx  # noqa: E402

import fastdeberta  # noqa: E402
from fastdeberta.checkpoint import CheckpointError  # noqa: E402
from fastdeberta.cli.main import main  # noqa: E402
from fastdeberta.export import ExportError, OnnxRuntimeMissingError, OrtModel, ParityError, export_onnx  # noqa: E402
from fastdeberta.export import onnx as onnx_export  # noqa: E402
from fastdeberta.inference import pipeline  # noqa: E402


@pytest.fixture(scope="module")
def mlm_export(tmp_path_factory):
    """The tiny v3 masked-LM checkpoint (EMD, spm tokenizer) exported with int8, through the CLI."""
    out = tmp_path_factory.mktemp("onnx") / "mlm"
    assert main(["export", "onnx", "--model", str(fx.mlm_checkpoint()), "--output", str(out),
                 "--quantize", "int8"]) == 0
    return out


def test_export_folder_holds_graphs_config_tokenizer_manifest(mlm_export):
    names = sorted(p.name for p in mlm_export.iterdir())
    assert {"model.onnx", "model_quantized.onnx", "config.json", "manifest.json", "spm.model"} <= set(names), names
    manifest = json.loads((mlm_export / "manifest.json").read_text())
    assert manifest["task"] == "masked-lm" and manifest["max_length"] == 128   # the EMD's absolute table
    assert manifest["parity"]["passed"] and manifest["parity"]["lengths"] == [1, 7, 33, 128]
    assert manifest["parity"]["max_abs_diff"] <= 1e-4 * max(1.0, max(c["max_abs_reference"]
                                                                     for c in manifest["parity"]["checks"]))


def test_int8_accuracy_reported(mlm_export):
    accuracy = json.loads((mlm_export / "manifest.json").read_text())["quantization"]["accuracy"]
    assert accuracy["inputs"] == "sample sentences" and accuracy["fill_mask_positions"] == "masked tokens"
    assert 0.9 < accuracy["hidden_state_cosine_mean"] <= 1.0 + 1e-6
    assert 0.0 <= accuracy["fill_mask_top1_agreement"] <= 1.0
    int8 = fastdeberta.from_pretrained(mlm_export, file_name="model_quantized.onnx")
    fp32 = fastdeberta.from_pretrained(mlm_export)
    ids = int8.tokenizer(["The cat sat on the mat."], return_tensors="pt")
    a, b = int8(**ids).logits, fp32(**ids).logits
    assert a.shape == b.shape and not torch.equal(a, b)         # it is another graph...
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.95   # ...close to fp32


def test_info_describes_an_onnx_folder(mlm_export, capsys):
    """`fastdeberta info` on an export reads config + manifest (there are no PyTorch weights to read)."""
    source = fastdeberta.from_pretrained(fx.mlm_checkpoint())
    assert main(["info", "--model", str(mlm_export), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    manifest = json.loads((mlm_export / "manifest.json").read_text())
    assert info["format"] == "onnx" and info["weights"] == "model.onnx" and info["task_head"] == "masked-lm"
    assert info["onnx"]["opset"] == manifest["opset"] and info["onnx"]["int8_file"] == "model_quantized.onnx"
    assert info["onnx"]["inputs"] == [i["name"] for i in manifest["inputs"]]
    assert info["onnx"]["parity"]["passed"] is True and info["enhanced_mask_decoder"] is True
    assert info["parameters"] == source.num_parameters()
    assert info["hidden_size"] == source.config.hidden_size and info["tokenizer"]["type"] is not None
    assert main(["info", "--model", str(mlm_export)]) == 0
    text = capsys.readouterr().out
    assert "onnx (opset" in text and "model_quantized.onnx" in text


def test_from_pretrained_returns_the_engine(mlm_export):
    model = fastdeberta.from_pretrained(mlm_export)
    assert isinstance(model, OrtModel) and model.task == "masked-lm" and model.tokenizer is not None
    assert model.session.get_session_options().graph_optimization_level.name == "ORT_ENABLE_ALL"
    # an explicit engine="torch" on an ONNX folder has no weights to read
    with pytest.raises(CheckpointError, match="no weights"):
        fastdeberta.from_pretrained(mlm_export, engine="torch")
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        fastdeberta.from_pretrained(mlm_export, engine="tensorrt")
    with pytest.raises(ValueError, match="holds a 'masked-lm' export, not 'question-answering'"):
        fastdeberta.from_pretrained(mlm_export, task="question-answering")
    encoder = fastdeberta.from_pretrained(mlm_export, task="base")       # the encoder of a head export
    assert encoder.task == "base" and encoder.output_names == ["logits", "last_hidden_state"]
    with pytest.raises(ValueError, match="runs on the CPU"):
        fastdeberta.from_pretrained(mlm_export, device="meta")
    with pytest.raises(ValueError, match="cannot be changed by config overrides"):
        fastdeberta.from_pretrained(mlm_export, num_labels=3)


def test_fill_mask_through_onnx_equals_pytorch(mlm_export):
    texts = ["The cat sat on the [MASK].", "Free software is a matter of [MASK], not price.",
             "You may [MASK] and distribute verbatim copies of the [MASK] source code."]
    ours = pipeline("fill-mask", model=str(mlm_export), top_k=5)
    torch_pipe = pipeline("fill-mask", model=str(fx.mlm_checkpoint()), top_k=5)
    assert isinstance(ours.model, OrtModel) and not isinstance(torch_pipe.model, OrtModel)
    got, expected = ours(texts), torch_pipe(texts)
    flat = lambda results: [c for r in results for group in ([r] if isinstance(r[0], dict) else r) for c in group]  # noqa: E731
    got, expected = flat(got), flat(expected)
    assert len(got) == len(expected) == 4 * 5
    assert [c["token"] for c in got] == [c["token"] for c in expected]
    assert [c["sequence"] for c in got] == [c["sequence"] for c in expected]
    np.testing.assert_allclose([c["score"] for c in got], [c["score"] for c in expected], atol=1e-4)


def test_encode_and_feature_extraction_through_onnx(mlm_export):
    texts = fx.sentences()[:9]
    ours = fastdeberta.from_pretrained(mlm_export)
    reference = fastdeberta.from_pretrained(fx.mlm_checkpoint())
    for pooling in ("mean", "cls"):
        a = ours.encode(texts, pooling=pooling, batch_size=4, normalize=True)
        b = reference.encode(texts, pooling=pooling, batch_size=4, normalize=True)
        np.testing.assert_allclose(a, b, atol=1e-4)
    features = pipeline("sentence-embeddings", model=str(mlm_export))(texts[:3])   # pooled (feature-extraction: per token)
    np.testing.assert_allclose(features, reference.encode(texts[:3]), atol=1e-4)
    with pytest.raises(NotImplementedError, match="PyTorch engine"):
        ours.encode(texts, layer=1)


def test_engine_rejects_input_it_cannot_serve(mlm_export):
    model = fastdeberta.from_pretrained(mlm_export)
    with pytest.raises(ValueError, match="at most 128"):
        model(input_ids=torch.full((1, 129), 5))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(input_ids=torch.tensor([[5, 10_000]]))
    with pytest.raises(ValueError, match="computes no loss"):
        model(input_ids=torch.tensor([[5, 6]]), labels=torch.tensor([[5, 6]]))
    with pytest.raises(NotImplementedError, match="cannot be trained"):
        model.train()


# ----------------------------------------------------------------------------- errors
def test_unknown_task_is_refused_before_loading(tmp_path):
    with pytest.raises(ExportError, match="unknown task 'summarization'; choose one of base, masked-lm"):
        export_onnx(tmp_path / "does-not-matter", tmp_path / "out", task="summarization")
    with pytest.raises(SystemExit) as exit_info:    # the command line: argparse refuses unknown --task values
        main(["export", "onnx", "--model", "x", "--output", str(tmp_path / "o"), "--task", "nope"])
    assert exit_info.value.code == 2
    assert not (tmp_path / "out").exists()


def test_folder_without_weights(tmp_path, capsys):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(fx.v3_config(300).to_dict()))
    with pytest.raises(CheckpointError, match="no weights in"):
        export_onnx(folder, tmp_path / "out")
    assert main(["export", "onnx", "--model", str(folder), "--output", str(tmp_path / "out")]) == 2
    assert "no weights in" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_exporting_an_onnx_folder_again_is_refused(mlm_export, tmp_path):
    with pytest.raises(ExportError, match="already an ONNX export"):
        export_onnx(mlm_export, tmp_path / "again")


@pytest.fixture
def without_onnxruntime(monkeypatch):
    """Imports of onnxruntime fail, as when the optional extra is not installed."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime" or name.startswith("onnxruntime."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_onnxruntime_missing(without_onnxruntime, mlm_export, tmp_path, capsys):
    with pytest.raises(OnnxRuntimeMissingError, match=r"pip install 'fastdeberta\[onnx\]'"):
        fastdeberta.from_pretrained(mlm_export)
    with pytest.raises(OnnxRuntimeMissingError, match="onnxruntime is not installed"):
        export_onnx(fx.mlm_checkpoint(), tmp_path / "out")
    assert main(["export", "onnx", "--model", str(fx.mlm_checkpoint()), "--output", str(tmp_path / "out")]) == 2
    assert "onnxruntime is not installed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_failed_parity_leaves_no_valid_looking_folder(monkeypatch, mlm_export, tmp_path):
    """A graph that does not compute what the model does (here: the graph of the unchanged checkpoint,
    written for a model whose relative-position table was then changed, as a frozen or wrong position
    index would) fails the check: no new folder and no temporary one appear, and an older export at
    the same path is kept as it was."""
    def stale_graph(model, path, **kwargs):
        shutil.copyfile(mlm_export / "model.onnx", path)
        return {"traced_length": 16, "external_data": False}

    monkeypatch.setattr(onnx_export, "trace_to_onnx", stale_graph)
    model = fastdeberta.from_pretrained(fx.mlm_checkpoint())
    with torch.no_grad():
        table = model.deberta.encoder.rel_embeddings.weight
        table.add_(torch.randn(table.shape, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ParityError, match="disagrees with the PyTorch model") as err:
        export_onnx(model, tmp_path / "out")
    assert "nothing was written" in str(err.value)
    assert list(tmp_path.iterdir()) == []                      # no folder, no temporary left behind

    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "marker.txt").write_text("old export")
    with pytest.raises(ParityError):
        export_onnx(model, previous)
    assert [p.name for p in tmp_path.iterdir()] == ["previous"]
    assert [p.name for p in previous.iterdir()] == ["marker.txt"]

    # the same graph for the unchanged model passes: the check failed on the model/graph mismatch
    result = export_onnx(fastdeberta.from_pretrained(fx.mlm_checkpoint()), tmp_path / "ok")
    assert result.manifest["parity"]["passed"]


@pytest.mark.slow
def test_reduced_precision_model_is_exported_in_fp32(tmp_path):
    """A model loaded in bf16 gives an fp32 graph checked against an fp32 copy (the caller's model stays bf16)."""
    model = fastdeberta.from_pretrained(fx.mlm_checkpoint(), dtype="bfloat16")
    result = export_onnx(model, tmp_path / "out", check_lengths=(7, 40))
    assert result.manifest["parity"]["passed"]
    assert result.manifest["parity"]["max_abs_diff"] <= 1e-4 * max(
        1.0, max(c["max_abs_reference"] for c in result.manifest["parity"]["checks"]))
    assert model.dtype == torch.bfloat16


def test_bad_options(tmp_path):
    model = fastdeberta.from_pretrained(fx.mlm_checkpoint())
    with pytest.raises(ExportError, match="past this model's limit of 128 tokens"):
        export_onnx(model, tmp_path / "o", max_length=4096)
    with pytest.raises(ExportError, match="opset must be an int from 17 to 23"):
        export_onnx(model, tmp_path / "o", opset=11)
    with pytest.raises(ExportError, match="quantize must be one of"):
        export_onnx(model, tmp_path / "o", quantize="int4")
    with pytest.raises(ExportError, match="is a 'masked-lm' model but task='base'"):
        export_onnx(model, tmp_path / "o", task="base")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- task pipelines on the engine
def test_text_classification_pipeline_through_onnx(tmp_path):
    source = fx.classifier_checkpoint()          # v2-style, convolution layer, 3 named labels
    export_onnx(source, tmp_path / "cls", check_lengths=(7, 40))
    texts = fx.sentences()[:6]
    ours = pipeline("text-classification", model=str(tmp_path / "cls"))
    reference = pipeline("text-classification", model=str(source))
    assert isinstance(ours.model, OrtModel)
    got, expected = ours(texts, top_k=None), reference(texts, top_k=None)
    assert [[c["label"] for c in r] for r in got] == [[c["label"] for c in r] for r in expected]
    np.testing.assert_allclose([[c["score"] for c in r] for r in got], [[c["score"] for c in r] for r in expected],
                               atol=1e-5)


def _task_checkpoint(folder: Path, cls, **config) -> Path:
    torch.manual_seed(3)
    tok = fx._tokenizer()
    model = cls(fx.v3_config(tok.vocab_size, **config))
    model.tokenizer = tok
    model.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_token_classification_and_qa_pipelines_through_onnx(tmp_path):
    from fastdeberta.model.deberta import DebertaForQuestionAnswering, DebertaForTokenClassification

    labels = {0: "O", 1: "B-X", 2: "I-X"}
    tagger = _task_checkpoint(tmp_path / "ner", DebertaForTokenClassification, num_labels=3, id2label=labels,
                              label2id={v: k for k, v in labels.items()})
    reader = _task_checkpoint(tmp_path / "qa", DebertaForQuestionAnswering)
    for source in (tagger, reader):
        export_onnx(source, source.with_name(source.name + "-onnx"), check_lengths=(7, 40))
    texts = fx.sentences()[:4]
    got = pipeline("token-classification", model=str(tmp_path / "ner-onnx"))(texts)
    expected = pipeline("token-classification", model=str(tagger))(texts)
    assert [[(e["entity"], e["start"], e["end"]) for e in r] for r in got] == \
        [[(e["entity"], e["start"], e["end"]) for e in r] for r in expected]
    question = dict(question="What is free software?", context=texts[1] + " " + texts[2], top_k=3)
    got = pipeline("question-answering", model=str(tmp_path / "qa-onnx"))(**question)
    expected = pipeline("question-answering", model=str(reader))(**question)
    assert [(a["start"], a["end"]) for a in got] == [(a["start"], a["end"]) for a in expected]
    np.testing.assert_allclose([a["score"] for a in got], [a["score"] for a in expected], rtol=1e-3)
