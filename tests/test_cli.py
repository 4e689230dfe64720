"""Tests for the ``fastdeberta`` command line, run as a real subprocess (``python -m fastdeberta``)
against the tiny offline checkpoints of inference_fixtures.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402

import fastdeberta  # noqa: E402
from fastdeberta.cli.main import main  # noqa: E402
from fastdeberta.inference import encode, pipeline  # noqa: E402

# one thread: the models are tiny, and a busy 2-core machine makes multi-threaded torch crawl
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", COLUMNS="100")


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "fastdeberta", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


# the models here are tiny: one thread is fastest and avoids thread thrashing on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mlm_path() -> Path:
    return fx.mlm_checkpoint()


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("fastdeberta"), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


# ------------------------------------------------------------------------------------------ help
def test_help_and_version():
    top = cli("--help")
    for command in ("fill-mask", "embed", "info"):
        assert command in top.stdout
    assert cli("--version").stdout.strip() == f"fastdeberta {fastdeberta.__version__}"
    no_command = cli(check=False)
    assert no_command.returncode == 2 and "usage" in no_command.stderr


@pytest.mark.parametrize("command,options", [
    ("fill-mask", ["--model", "--tokenizer", "--top-k", "--json", "--revision", "--targets"]),
    ("embed", ["--model", "--tokenizer", "--input", "--output", "--pooling", "--normalize", "--layer", "--batch-size",
               "--max-tokens", "--text-column", "--keep-empty"]),
    ("info", ["--model", "--json"]),
])
def test_subcommand_help(command, options):
    out = cli(command, "--help").stdout
    assert out.startswith(f"usage: fastdeberta {command}")
    for option in options:
        assert option in out


# ------------------------------------------------------------------------------------------ fill-mask
def test_fill_mask_json_matches_the_pipeline(mlm_path):
    texts = ["The [MASK] sat on the mat.", "Free [MASK] is a matter of [MASK]."]
    proc = cli("fill-mask", "--model", mlm_path, "--top-k", "3", "--json", *texts)
    doc = json.loads(proc.stdout)
    assert [d["text"] for d in doc] == texts
    assert len(doc[0]["masks"]) == 1 and len(doc[1]["masks"]) == 2
    expected = pipeline("fill-mask", model=mlm_path)(texts, top_k=3)
    got0 = doc[0]["masks"][0]
    assert [p["token"] for p in got0] == [p["token"] for p in expected[0]]
    np.testing.assert_allclose([p["score"] for p in got0], [p["score"] for p in expected[0]], atol=1e-6)
    for m in range(2):
        assert [p["token_str"] for p in doc[1]["masks"][m]] == [p["token_str"] for p in expected[1][m]]
    assert all(set(p) == {"score", "token", "token_str", "sequence"} for p in got0)


def test_fill_mask_table_and_errors(mlm_path):
    table = cli("fill-mask", "--model", mlm_path, "--top-k", "2", "a [MASK] b").stdout
    assert "text: a [MASK] b" in table and "rank" in table and "score" in table
    assert len([line for line in table.splitlines() if line.strip()[:1].isdigit()]) == 2

    assert_user_error(cli("fill-mask", "--model", mlm_path, "no mask here", check=False),
                      "no mask token", "no mask here", "[MASK]")
    assert_user_error(cli("fill-mask", "--model", "/no/such/model", "a [MASK]", check=False), "/no/such/model")


def test_repo_id_from_the_cache_with_offline(tmp_path, mlm_path, capsys, cache_only_hub):
    cache = fx.hub_cache_of(mlm_path, tmp_path / "hf-cache", "org/tiny-mlm")
    hub = ["--model", "org/tiny-mlm", "--cache-dir", str(cache), "--offline"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fill-mask", *hub, "--json", "--top-k", "2", "a [MASK] b"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert main(["info", *hub, "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
    assert doc[0]["masks"][0] == pipeline("fill-mask", model=mlm_path)("a [MASK] b", top_k=2)
    assert info["parameters"] == fastdeberta.from_pretrained(mlm_path).num_parameters()
    assert cache_only_hub and all(cache_only_hub)


def test_bad_device_is_a_user_error(mlm_path):
    message = _main_error(["fill-mask", "--model", str(mlm_path), "--device", "gpu", "a [MASK] b"])
    assert "device 'gpu' is not a torch device" in message


# ------------------------------------------------------------------------------------------ embed
def test_embed_txt_to_npy_equals_encode(tmp_path, mlm_path):
    texts = fx.sentences()[:9]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts[:4] + [""] + texts[4:]) + "\n", encoding="utf-8")
    non_empty = [t for t in texts if t.strip()]
    out = tmp_path / "out.npy"
    proc = cli("embed", "--model", mlm_path, "--input", src, "--output", out, "--pooling", "cls",
               "--normalize", "--layer", "2", "--batch-size", "3", "--max-tokens", "64")
    summary = json.loads(proc.stdout)
    assert summary["count"] == len(non_empty) and summary["dim"] == 32 and summary["output"] == str(out)
    assert summary["seconds"] >= 0
    vectors = np.load(out)
    assert vectors.shape == (len(non_empty), 32) and vectors.dtype == np.float32
    model = fastdeberta.from_pretrained(mlm_path)
    np.testing.assert_allclose(vectors, encode(model, non_empty, pooling="cls", normalize=True, layer=2),
                               atol=1e-5)
    # --keep-empty embeds the blank line too ([CLS] [SEP])
    summary = json.loads(cli("embed", "--model", mlm_path, "--input", src, "--output", out, "--keep-empty",
                             "--no-progress").stdout)
    assert summary["count"] == len(texts) + 1 and np.load(out).shape == (len(texts) + 1, 32)


def test_embed_csv_and_jsonl_to_parquet(tmp_path, mlm_path):
    pq = pytest.importorskip("pyarrow.parquet")
    texts = ["hello world", "The cat, \"quoted\", sat", "Überprüfen Sie die Einstellungen"]
    csv_path = tmp_path / "in.csv"
    import csv

    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "body"])
        writer.writerows([[i, t] for i, t in enumerate(texts)])
    out = tmp_path / "out.parquet"
    cli("embed", "--model", mlm_path, "--input", csv_path, "--output", out, "--text-column", "body")
    table = pq.read_table(out)
    assert table.column_names == ["text", "embedding"]
    assert table.column("text").to_pylist() == texts
    vectors = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert vectors.shape == (3, 32)
    model = fastdeberta.from_pretrained(mlm_path)
    np.testing.assert_allclose(vectors, encode(model, texts), atol=1e-5)

    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    out_npy = tmp_path / "j.npy"
    cli("embed", "--model", mlm_path, "--input", jsonl, "--output", out_npy, "--pooling", "max")
    np.testing.assert_allclose(np.load(out_npy), encode(model, texts, pooling="max"), atol=1e-5)


def test_embed_errors(tmp_path, mlm_path):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("id,body\n1,hello\n", encoding="utf-8")
    assert_user_error(cli("embed", "--model", mlm_path, "--input", csv_path, "--output", tmp_path / "o.npy",
                          check=False), "no column 'text'", "['id', 'body']", "--text-column")
    bad = tmp_path / "in.xml"
    bad.write_text("<a/>", encoding="utf-8")
    assert_user_error(cli("embed", "--model", mlm_path, "--input", bad, "--output", tmp_path / "o.npy",
                          check=False), ".xml")
    # the remaining cases run in-process through main() (same code path, no interpreter start-up)
    assert "'.json'" in _main_error(["embed", "--model", str(mlm_path), "--input", str(csv_path), "--output",
                                     str(tmp_path / "o.json")])
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "a"}\n{"body": "b"}\n', encoding="utf-8")
    assert "in.jsonl:2" in _main_error(["embed", "--model", str(mlm_path), "--input", str(jsonl), "--output",
                                        str(tmp_path / "o.npy")])
    assert "not found" in _main_error(["embed", "--model", str(mlm_path), "--input", str(tmp_path / "nope.txt"),
                                       "--output", str(tmp_path / "o.npy")])


def test_embed_refuses_an_input_without_texts(tmp_path, mlm_path):
    out = tmp_path / "o.npy"
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    proc = cli("embed", "--model", mlm_path, "--input", empty, "--output", out, check=False)
    assert_user_error(proc, f"no texts found in {empty}")
    assert not out.exists()
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n", encoding="utf-8")
    assert f"no texts found in {blank}" in _main_error(["embed", "--model", str(mlm_path), "--input", str(blank),
                                                         "--output", str(out)])
    for name, content in (("header.csv", "id,text\n"), ("empty.jsonl", "\n"), ("empty.tsv", "text\n")):
        src = tmp_path / name
        src.write_text(content, encoding="utf-8")
        message = _main_error(["embed", "--model", str(mlm_path), "--input", str(src), "--output", str(out)])
        assert f"no texts found in {src}" in message
    assert not out.exists()


def test_unreadable_tokenizer_points_to_the_tokenizer_option(tmp_path, mlm_path):
    folder = fx.with_unreadable_tokenizer(tmp_path / "broken-tokenizer", mlm_path)
    src = tmp_path / "in.txt"
    texts = fx.sentences()[:3]
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "o.npy"
    proc = cli("embed", "--model", folder, "--input", src, "--output", out, check=False)
    assert_user_error(proc, "bpe_encoder.bin", "--tokenizer")
    assert "load_tokenizer=False" not in proc.stderr     # a Python-API hint would not help on the command line
    message = _main_error(["fill-mask", "--model", str(folder), "a [MASK] b"])
    assert "bpe_encoder.bin" in message and "--tokenizer" in message
    # the way out the message names
    cli("embed", "--model", folder, "--tokenizer", mlm_path, "--input", src, "--output", out, "--no-progress")
    model = fastdeberta.from_pretrained(mlm_path)
    np.testing.assert_allclose(np.load(out), encode(model, texts), atol=1e-5)
    got = json.loads(cli("fill-mask", "--model", folder, "--tokenizer", mlm_path, "--json", "a [MASK] b").stdout)
    assert got[0]["masks"][0] == pipeline("fill-mask", model=model)("a [MASK] b")


def _main_error(argv) -> str:
    """Run main(argv) in-process; check it fails as a user error (exit 2) and return its stderr."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    assert code == 2, err.getvalue()
    assert "Traceback" not in err.getvalue()
    return err.getvalue()


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, mlm_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    src = tmp_path / "in.txt"
    src.write_text("hello\n", encoding="utf-8")
    message = _main_error(["embed", "--model", str(mlm_path), "--input", str(src), "--output",
                           str(tmp_path / "o.parquet")])
    assert "pip install pyarrow" in message


# ------------------------------------------------------------------------------------------ info
def test_info_json(mlm_path):
    info = json.loads(cli("info", "--model", mlm_path, "--json").stdout)
    model = fastdeberta.from_pretrained(mlm_path)
    assert info["model_type"] == "deberta-v2" and info["version"] == "v3"
    assert info["hidden_size"] == 32 and info["num_hidden_layers"] == 3 and info["num_attention_heads"] == 4
    assert info["vocab_size"] == model.config.vocab_size
    assert info["parameters"] == model.num_parameters()
    assert info["pos_att_type"] == ["c2p", "p2c"] and info["position_buckets"] == 16
    assert info["max_relative_positions"] == -1 and info["share_att_key"] is True
    assert info["enhanced_mask_decoder"] is True
    assert info["task_head"] == "masked-lm"
    assert info["tokenizer"]["type"] == "spm"
    assert set(info["tasks"]) == set(fastdeberta.TASKS)
    assert info["tasks_with_trained_heads"] == ["base", "masked-lm"]

    text = cli("info", "--model", mlm_path).stdout
    assert "DeBERTa v3" in text and "enhanced mask decoder  yes" in text


def test_info_reports_an_unreadable_tokenizer(tmp_path, capsys):
    folder = fx.with_unreadable_tokenizer(tmp_path / "model", fx.v1_checkpoint())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["info", "--model", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "deberta" and info["tokenizer"]["type"] is None
    assert "bpe_encoder.bin" in info["tokenizer"]["error"] and "weights_only" in info["tokenizer"]["error"]


def test_info_other_checkpoints(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["info", "--model", str(fx.classifier_checkpoint()), "--json"]) == 0
        cls_info = json.loads(capsys.readouterr().out)
        assert main(["info", "--model", str(fx.v1_checkpoint()), "--json"]) == 0
        v1_info = json.loads(capsys.readouterr().out)
    assert cls_info["version"] == "v2" and cls_info["task_head"] == "sequence-classification"
    assert cls_info["num_labels"] == 3 and cls_info["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert cls_info["enhanced_mask_decoder"] is False
    assert cls_info["tasks_with_trained_heads"] == ["base", "sequence-classification"]
    assert v1_info["model_type"] == "deberta" and v1_info["version"] == "v1"
    assert v1_info["enhanced_mask_decoder"] is False and v1_info["position_biased_input"] is True
    assert_user_error(cli("info", "--model", "/no/such/folder", check=False), "/no/such/folder")
