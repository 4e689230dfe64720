"""Fuzz: random command lines and malformed input files, run through ``fastdeberta.cli.main.main`` in
the test process. Every run exits 0 (success, with the output it promises) or 2 (a one-line error on
stderr) -- never 1 (an unexpected exception), never a traceback -- and an existing output file is
either replaced by a complete one or left as it was."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from fuzz_support import digest, fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st
from inference_fixtures import mlm_checkpoint

from fastdeberta.cli.main import build_parser, main

pytestmark = pytest.mark.usefixtures("single_thread")   # tiny models: one thread is fastest

FUZZED = ("info", "embed", "fill-mask")      # subcommands without side effects beyond their --output
OLD_OUTPUT = np.arange(6, dtype=np.float32).reshape(2, 3)


@pytest.fixture(scope="module")
def workspace():
    """A model folder (copied, so its digest is ours to check) and a scratch folder for inputs/outputs."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
    shutil.copytree(mlm_checkpoint(), root / "model")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _options(command: str) -> list[str]:
    """The long option strings of one subcommand, read from its parser (so new options get fuzzed too)."""
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    parser = subparsers.choices[command]
    return sorted(s for action in parser._actions for s in action.option_strings
                  if s.startswith("--") and s not in ("--help", "--version"))


OPTIONS = {command: _options(command) for command in FUZZED}
VALUES = st.sampled_from(["MODEL", "INPUT", "OUTPUT", "OUTPUT.parquet", "0", "1", "-1", "3", "1000000", "abc", "",
                          "cpu", "meta", "cuda:7", "float16", "bfloat16", "mean", "cls", "max", "text", "[MASK]",
                          "a,b", "nope/nope", "/dev/null", "\u00e9\u00e8\u4e2d", "--", "-", "1e3", "nan"])
INPUTS = st.sampled_from([b"hello world\nthe cat sat\n", b"", b"\n\n  \n", b"\xff\xfe\x00bad", b'{"text": "a"}\n{"x": 1}\n',
                          b'{"text": 5}\n', b"text\nfoo\nbar\n", b'text,other\n"a",1\n"b\n', b"[MASK] cat\n",
                          "\u00e9t\u00e9 \U0001F600\n".encode(), b"x" * 5000 + b"\n", b'{"text": "ok"}\n{broken\n'])
INPUT_SUFFIXES = st.sampled_from([".txt", ".jsonl", ".csv", ".tsv", ".json", ""])


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(FUZZED))
    argv = [command]
    if command == "fill-mask":
        argv += draw(st.lists(st.sampled_from(["The [MASK] sat.", "no mask", "", "[MASK] [MASK]", "\u4e2d[MASK]",
                                               "\udcff[MASK]"]), max_size=2))   # undecodable argv bytes
    if draw(st.integers(0, 5)):                          # usually a model, so that the command gets further
        argv += ["--model", "MODEL"]
    if command == "embed" and draw(st.integers(0, 5)):
        argv += ["--input", "INPUT", "--output", draw(st.sampled_from(["OUTPUT", "OUTPUT.parquet", "OUTPUT.csv"]))]
    for option in draw(st.lists(st.sampled_from(OPTIONS[command]), max_size=3)):
        argv.append(option)
        if draw(st.integers(0, 3)):
            argv.append(draw(VALUES))
    return argv


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as exit_:                     # argparse: 2 for a usage error, 0 for --help
            code = exit_.code if isinstance(exit_.code, int) else 2
    return code, out.getvalue(), err.getvalue()


@fuzz_settings(examples=40)
@given(command_lines(), INPUTS, INPUT_SUFFIXES)
def test_random_command_lines(workspace, argv, input_bytes, input_suffix):
    with tempfile.TemporaryDirectory(dir=workspace) as tmp:
        tmp = Path(tmp)
        paths = {"MODEL": str(workspace / "model"), "INPUT": str(tmp / f"input{input_suffix}"),
                 "OUTPUT": str(tmp / "out.npy"), "OUTPUT.parquet": str(tmp / "out.parquet"),
                 "OUTPUT.csv": str(tmp / "out.csv")}
        (tmp / f"input{input_suffix}").write_bytes(input_bytes)
        np.save(tmp / "out.npy", OLD_OUTPUT)
        old_output = (tmp / "out.npy").read_bytes()
        model_before = digest(workspace / "model")
        argv = [paths.get(a, a) for a in argv]

        code, stdout, stderr = _run(argv)
        event(f"{argv[0]} exit {code}")
        assert code in (0, 2), f"exit {code}: {stderr}"
        assert "Traceback" not in stderr
        if code == 2:
            assert stderr.strip(), "exit 2 without a message"
        if code == 0 and argv[0] == "embed" and "--help" not in argv and "--output" in argv:
            written = Path(argv[argv.index("--output") + 1])
            if written.suffix == ".npy":
                vectors = np.load(written)
                assert vectors.ndim == 2 and vectors.shape[1] == 32 and np.isfinite(vectors).all()
        elif (tmp / "out.npy").exists():
            assert (tmp / "out.npy").read_bytes() == old_output      # a failed run left the old output
        assert digest(workspace / "model") == model_before
        leftovers = [p.name for p in tmp.iterdir() if p.name.startswith(".")]
        assert not leftovers, f"temporary files left behind: {leftovers}"
