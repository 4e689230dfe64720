"""Fuzz: random texts and arguments for encode() and pipeline(). A call either returns what it promises
(one finite vector per text, unit length when normalised; fill-mask predictions with scores in [0, 1])
or raises a documented error with a message; a failed call leaves the model where it was."""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pytest
import torch
from fuzz_support import documented_outcome, fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st
from inference_fixtures import mlm_checkpoint

import fastdeberta

pytestmark = pytest.mark.usefixtures("single_thread")   # tiny models: one thread is fastest

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["", " ", "[MASK]", "the [MASK] sat", "\u00e9t\u00e9", "a" * 300, "\n\t", "[CLS] [SEP]",
     "abc\ud800", "\udcff [MASK]"])          # lone surrogates: what JSON and argv (surrogateescape) let through
TEXTS = TEXT | st.lists(TEXT, max_size=4) | st.sampled_from([None, 5, b"bytes", {"a": 1}, [None], [1, 2], ("a", "b")])
ANY = st.sampled_from([None, 0, 1, -1, 2, 7, 1000, "x", "mean", "cls", "max", "numpy", "torch", "cpu", "meta",
                       True, False, 1.5, [], {}])


@functools.lru_cache(maxsize=1)
def _model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fastdeberta.from_pretrained(mlm_checkpoint(), task="masked-lm")


ENCODE_ARGS = ["batch_size", "pooling", "layer", "normalize", "convert_to", "max_length", "max_tokens", "device",
               "truncate_dim", "precision", "output_value", "prompt"]


def _snapshot(model) -> tuple:
    first = next(model.parameters())
    return first.device, first.dtype, float(first.detach().float().sum())


@fuzz_settings(examples=60)
@given(TEXTS, st.dictionaries(st.sampled_from(ENCODE_ARGS), ANY, max_size=3))
def test_random_encode_calls(texts, kwargs):
    model = _model()
    before = _snapshot(model)
    kwargs.setdefault("show_progress_bar", False)
    result, error = documented_outcome(lambda: model.encode(texts, **kwargs))
    event(type(error).__name__ if error is not None else "result")
    assert _snapshot(model) == before                       # never moved, cast or changed
    if error is not None:
        return
    if kwargs.get("output_value", "sentence_embedding") != "sentence_embedding":
        return
    if kwargs.get("precision", "float32") != "float32":
        return
    vectors = np.asarray(result.cpu() if isinstance(result, torch.Tensor) else result, dtype=np.float32)
    count = 1 if isinstance(texts, str) else len(texts)
    if count == 0:
        assert vectors.size == 0
        return
    assert vectors.reshape(count, -1).shape[0] == count
    assert np.isfinite(vectors).all()
    if kwargs.get("normalize") is True and vectors.size:
        np.testing.assert_allclose(np.linalg.norm(vectors.reshape(count, -1), axis=1), 1.0, rtol=1e-4)


PIPELINE_ARGS = ["top_k", "targets", "device", "dtype", "batch_size", "foo"]
CALL_ARGS = ("top_k", "targets")


@fuzz_settings(examples=40)
@given(st.sampled_from(["fill-mask", "feature-extraction", "nope", None]), TEXTS,
       st.dictionaries(st.sampled_from(PIPELINE_ARGS), ANY, max_size=2))
def test_random_pipeline_calls(task, texts, kwargs):
    construct = {k: v for k, v in kwargs.items() if k not in CALL_ARGS}
    moves = bool({"device", "dtype"} & construct.keys())     # a pipeline may move or cast the model when asked
    model = copy.deepcopy(_model()) if moves else _model()
    before = _snapshot(model)

    def call():       # call-time options only where the task has them (others: Python's own TypeError)
        call_kwargs = {k: v for k, v in kwargs.items() if k in CALL_ARGS and task == "fill-mask"}
        return fastdeberta.pipeline(task, model=model, **construct)(texts, **call_kwargs)

    result, error = documented_outcome(call)
    event(f"{task}: {type(error).__name__ if error is not None else 'result'}")
    if error is not None or not moves:
        assert _snapshot(model) == before      # a failed call, or one that was not asked to, leaves it as it was
    if error is None and task == "fill-mask":
        flat = result
        while isinstance(flat, list) and flat and isinstance(flat[0], list):
            flat = [item for sub in flat for item in sub]
        assert all(0.0 <= p["score"] <= 1.0 for p in flat)


def test_encode_batch_size_none_is_a_documented_error():
    _, error = documented_outcome(lambda: _model().encode("a", batch_size=None, show_progress_bar=False))
    assert error is not None and "batch_size" in str(error)


def test_fill_mask_targets_of_the_wrong_type_is_a_documented_error():
    fill = fastdeberta.pipeline("fill-mask", model=_model())
    _, error = documented_outcome(lambda: fill("the [MASK] sat", targets=1))
    assert error is not None and "targets" in str(error)


def test_pipeline_on_the_meta_device_is_refused():
    model = copy.deepcopy(_model())
    _, error = documented_outcome(lambda: fastdeberta.pipeline("feature-extraction", model=model, device="meta"))
    assert error is not None and next(model.parameters()).device.type == "cpu"
