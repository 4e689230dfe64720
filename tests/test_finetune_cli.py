"""train / evaluate / predict from the command line: the classification round trip, exact resume after
SIGKILL (a real subprocess), half-written checkpoints ignored, and bad inputs that change no file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import finetune_fixtures as ff
import pytest
import torch

from fastdeberta.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finetune-cli")
    ff.base_checkpoint(folder / "base")
    ff.write_csv(folder / "train.csv", ff.classification_rows(160))
    ff.write_csv(folder / "eval.csv", ff.classification_rows(40, seed=1))
    return folder


def _train_args(data: Path, output: Path, *extra: str) -> list[str]:
    return ["train", "--task", "sequence-classification", "--model", str(data / "base"), "--train",
            str(data / "train.csv"), "--output", str(output), "--lr", "5e-3", "--warmup-ratio", "0.1", "--batch-size", "8",
            "--precision", "fp32", "--no-progress", "--seed", "2", *extra]


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


def test_train_evaluate_predict_round_trip(data, tmp_path, single_thread, capsys):
    out = tmp_path / "run"
    assert main(_train_args(data, out, "--eval", str(data / "eval.csv"), "--epochs", "8", "--json")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["metrics"]["accuracy"] >= 0.95, summary
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "license", "1": "program", "2": "software"} and config["label2id"]["software"] == 2
    assert json.loads((out / "finetune.json").read_text())["task"] == "sequence-classification"
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_accuracy" in r for r in log) and any("loss" in r and "lr" in r for r in log)

    metrics_file = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(out), "--data", str(data / "eval.csv"), "--output", str(metrics_file),
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(metrics_file.read_text())
    assert printed["accuracy"] == pytest.approx(summary["metrics"]["accuracy"])
    assert set(printed) == {"accuracy", "macro_f1", "loss"}

    predictions = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(out), "--input", str(data / "eval.csv"), "--output", str(predictions)]) == 0
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    gold = [r["label"] for r in ff.classification_rows(40, seed=1)]
    assert len(rows) == 40 and all(set(r) == {"label", "score"} for r in rows)
    assert sum(r["label"] == g for r, g in zip(rows, gold)) / 40 == pytest.approx(printed["accuracy"])
    assert main(["predict", "--model", str(out), "--input", str(data / "eval.csv"), "--output", str(predictions),
                 "--top-k", "2"]) == 0
    first = json.loads(predictions.read_text().splitlines()[0])
    assert [d["label"] for d in first] != [] and len(first) == 2 and first[0]["score"] >= first[1]["score"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _log_without_timing(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("_per_s")} for r in rows]


@pytest.mark.slow   # ~20 s: two processes and three runs
def test_sigkill_then_resume_is_bitwise_equal(data, tmp_path, single_thread):
    steps = ["--max-steps", "80", "--save-every", "10", "--eval", str(data / "eval.csv"), "--eval-every", "40"]
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "fastdeberta", *_train_args(data, killed, *steps)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 120
    try:
        while not (killed / "checkpoint-20").is_dir():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists(), "the run finished before it was killed"
    done = sorted(int(p.name.split("-")[1]) for p in killed.glob("checkpoint-*"))
    assert done and max(done) < 80

    # a crash mid-write leaves a temporary folder (and maybe a folder without its state files): both ignored
    partial = killed / f".checkpoint-{max(done) + 10}.x1y2.tmp"
    partial.mkdir()
    (partial / "optimizer.pt").write_bytes(b"half a file")
    incomplete = killed / "checkpoint-9999"
    incomplete.mkdir()
    (incomplete / "trainer_state.json").write_text("{}")

    assert main(_train_args(data, killed, *steps, "--resume")) == 0
    assert not partial.exists()
    reference = tmp_path / "reference"
    assert main(_train_args(data, reference, *steps)) == 0

    resumed, expected = _weights(killed), _weights(reference)
    assert resumed.keys() == expected.keys()
    for key in expected:
        assert torch.equal(resumed[key], expected[key]), key
    assert _log_without_timing(killed) == _log_without_timing(reference)


def test_existing_run_needs_resume(data, tmp_path, single_thread, capsys):
    out = tmp_path / "run"
    assert main(_train_args(data, out, "--max-steps", "2")) == 0
    before = _snapshot(out)
    assert main(_train_args(data, out, "--max-steps", "2")) == 2
    assert "already holds a training run; pass --resume" in capsys.readouterr().err
    assert _snapshot(out) == before


@pytest.mark.parametrize("case, message", [
    ("unknown-eval-label", r"eval\.csv:3: label 'fish' is not one the model knows"),
    ("missing-column", r"train\.csv:2: has no column/field 'label'.*--label-column"),
    ("empty-file", r"train\.csv holds no records"),
    ("malformed-line", r"train\.csv:3: 3 fields, but the header has 2"),
    ("single-label", r"a single label \['software'\]"),
])
def test_bad_training_input_is_refused_before_any_file_is_written(data, tmp_path, capsys, case, message):
    train, evaluation = tmp_path / "train.csv", tmp_path / "eval.csv"
    ff.write_csv(train, ff.classification_rows(20))
    ff.write_csv(evaluation, ff.classification_rows(10, seed=1))
    if case == "unknown-eval-label":
        evaluation.write_text("text,label\na software,software\nsome fish,fish\n")
    elif case == "missing-column":
        train.write_text("text,category\na software,software\n")
    elif case == "empty-file":
        train.write_text("")
    elif case == "malformed-line":
        train.write_text("text,label\na software,software\na license,license,extra\n")
    elif case == "single-label":
        train.write_text("text,label\na software,software\nthe software,software\n")
    out = tmp_path / "out"
    argv = _train_args(data, out, "--max-steps", "1", "--eval", str(evaluation))
    argv[argv.index("--train") + 1] = str(train)
    assert main(argv) == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not out.exists()


def test_evaluate_and_predict_errors_change_no_file(data, tmp_path, capsys, single_thread):
    out = tmp_path / "run"
    assert main(_train_args(data, out, "--max-steps", "2")) == 0
    before = _snapshot(out)
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\na software,software\na cow,cow\n")
    metrics = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(out), "--data", str(bad), "--output", str(metrics)]) == 2
    assert "bad.csv:3: label 'cow' is not one the model knows (['license', 'program', 'software'])" in capsys.readouterr().err
    assert not metrics.exists()
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"sentence": "a software"}\n')
    predictions = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(out), "--input", str(missing), "--output", str(predictions)]) == 2
    assert "missing.jsonl:1: has no column/field 'text'" in capsys.readouterr().err
    assert not predictions.exists()
    ner_input = ff.write_jsonl(tmp_path / "ner.jsonl", [{"tokens": ["a", "b"], "tags": ["O", "O"]}])
    assert main(["evaluate", "--model", str(out), "--data", str(ner_input), "--task", "token-classification",
                 "--output", str(metrics)]) == 2
    assert "holds a sequence-classification model, not a token-classification one" in capsys.readouterr().err
    assert not metrics.exists()
    assert _snapshot(out) == before


def test_every_option_of_issue_8_is_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--task", "--model", "--train", "--eval", "--output", "--epochs", "--batch-size", "--lr",
                   "--max-length", "--seed", "--eval-every", "--save-every", "--resume", "--lora",
                   "--text-column", "--text-pair-column", "--label-column"):
        assert option in text, option
    for command, options in (("evaluate", ("--model", "--data", "--output")),
                             ("predict", ("--model", "--input", "--output"))):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(o in text for o in options)
