"""Drop-in compatibility with sentence-transformers: a folder saved by fastdeberta loads in
``SentenceTransformer`` (and one saved by sentence-transformers in fastdeberta), and ``encode``,
``similarity`` & co. give the same results and types, field by field.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402

import fastdeberta  # noqa: E402
from fastdeberta.errors import InputTypeError, InvalidInputError  # noqa: E402
from fastdeberta.inference import quantize_embeddings, similarity  # noqa: E402

st_lib = pytest.importorskip("sentence_transformers")

TEXTS = fx.sentences()[:10]


# the models here are tiny: one thread is fastest and avoids thread thrashing on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(fastdeberta model, SentenceTransformer) on the same folder, written by fastdeberta."""
    model = fastdeberta.from_pretrained(fx.mlm_checkpoint(), task="base")
    model.prompts = {"query": "query: ", "passage": "passage: "}
    folder = tmp_path_factory.mktemp("st") / "model"
    model.save_pretrained(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = st_lib.SentenceTransformer(str(folder), device="cpu")
    return fastdeberta.from_pretrained(folder), st, folder


def test_saved_folder_has_the_sentence_transformers_files_and_loads_identically(pair):
    ours, st, folder = pair
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
                 "1_Pooling/config.json"):
        assert (folder / name).is_file(), name
    np.testing.assert_allclose(ours.encode(TEXTS), st.encode(TEXTS), atol=1e-6)
    assert ours.prompts == {"query": "query: ", "passage": "passage: "}
    assert {k: st.prompts[k] for k in ours.prompts} == ours.prompts   # (sentence-transformers adds "document": "")
    assert ours.get_embedding_dimension() == ours.get_sentence_embedding_dimension() == st.get_embedding_dimension()
    assert ours.max_seq_length == st.max_seq_length


def test_prompts_truncate_dim_and_normalize(pair):
    ours, st, _ = pair
    for kwargs in ({"prompt_name": "query"}, {"prompt": "Represent this: "}, {"truncate_dim": 8},
                   {"truncate_dim": 8, "normalize_embeddings": True}, {"normalize_embeddings": True}):
        a, b = ours.encode(TEXTS, **kwargs), st.encode(TEXTS, **kwargs)
        assert a.shape == b.shape, kwargs
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=str(kwargs))
    with pytest.raises(InvalidInputError, match="prompt_name 'nope'.*passage.*query"):
        ours.encode(TEXTS, prompt_name="nope")
    ours.default_prompt_name = st.default_prompt_name = "query"   # used when no prompt is named
    try:
        np.testing.assert_allclose(ours.encode(TEXTS), st.encode(TEXTS, prompt_name="query"), atol=1e-6)
        for method in ("encode_query", "encode_document"):   # their own prompt, never the default one
            np.testing.assert_allclose(getattr(ours, method)(TEXTS), getattr(st, method)(TEXTS), atol=1e-6,
                                       err_msg=method)
    finally:
        ours.default_prompt_name = st.default_prompt_name = None
    np.testing.assert_allclose(ours.encode_query(TEXTS), ours.encode(TEXTS, prompt_name="query"), atol=0)
    default = st.max_seq_length
    ours.max_seq_length = st.max_seq_length = 6     # assignable: texts truncated to 6 tokens
    try:
        np.testing.assert_allclose(ours.encode(TEXTS), st.encode(TEXTS), atol=1e-6)
        assert not np.allclose(ours.encode(TEXTS[5]), ours.encode(TEXTS[5], max_length=default))
    finally:
        ours.max_seq_length, st.max_seq_length = None, default
    assert ours.max_seq_length == st.max_seq_length == default
    ours.truncate_dim = 16
    try:
        assert ours.get_sentence_embedding_dimension() == 16 and ours.encode(TEXTS).shape == (len(TEXTS), 16)
    finally:
        ours.truncate_dim = None


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_precision_equals_sentence_transformers(pair, precision):
    ours, st, _ = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = st.encode(TEXTS, precision=precision)
    got = ours.encode(TEXTS, precision=precision)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want) if precision != "float32" else np.testing.assert_allclose(got, want,
                                                                                                      atol=1e-6)


def test_quantize_with_ranges_or_calibration_as_sentence_transformers(pair):
    ours, _, _ = pair
    from sentence_transformers.util import quantize_embeddings as st_quantize

    calibration = ours.encode(fx.corpus()[:200])
    vectors = ours.encode(TEXTS)
    for precision in ("int8", "uint8"):
        want = st_quantize(vectors, precision, calibration_embeddings=calibration)
        np.testing.assert_array_equal(quantize_embeddings(vectors, precision, calibration_embeddings=calibration), want)
        np.testing.assert_array_equal(ours.encode(TEXTS, precision=precision, calibration_embeddings=calibration), want)
        ranges = np.vstack([calibration.min(0), calibration.max(0)])
        np.testing.assert_array_equal(ours.encode(TEXTS[0], precision=precision, ranges=ranges), want[0])
    with pytest.raises(InvalidInputError, match="single text"):
        ours.encode(TEXTS[0], precision="int8")     # one vector gives no range


def test_output_types_and_empty_inputs_as_sentence_transformers(pair):
    ours, st, _ = pair
    cases = [{}, {"convert_to_numpy": False}, {"convert_to_tensor": True}, {"convert_to_numpy": True}]
    for kwargs in cases:
        for inputs in (TEXTS[:3], TEXTS[0], []):
            a, b = ours.encode(inputs, **kwargs), st.encode(inputs, **kwargs)
            assert type(a) is type(b), (kwargs, inputs)
            if isinstance(a, list):
                assert len(a) == len(b) and all(type(x) is type(y) and x.shape == y.shape for x, y in zip(a, b))
            else:
                assert a.shape == b.shape and a.dtype == b.dtype, (kwargs, inputs)
    # sentence-transformers' argument names for the texts
    np.testing.assert_allclose(ours.encode(sentences=TEXTS[:2]), ours.encode(TEXTS[:2]), atol=0)
    np.testing.assert_allclose(ours.encode(inputs=TEXTS[:2]), ours.encode(TEXTS[:2]), atol=0)
    with pytest.raises(InputTypeError, match="once"):
        ours.encode(TEXTS[:2], sentences=TEXTS[:2])


def test_token_embeddings_and_all_outputs(pair):
    ours, st, _ = pair
    a, b = ours.encode(TEXTS[:4], output_value="token_embeddings"), st.encode(TEXTS[:4], output_value="token_embeddings")
    assert isinstance(a, list) and len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert isinstance(x, torch.Tensor) and x.shape == y.shape and torch.allclose(x, y, atol=1e-5)
    a, b = ours.encode(TEXTS[:3], output_value=None), st.encode(TEXTS[:3], output_value=None)
    for x, y in zip(a, b):
        n = int(y["attention_mask"].sum())       # sentence-transformers' rows keep their batch's padding
        assert torch.equal(x["input_ids"], y["input_ids"][:n])
        assert torch.allclose(x["token_embeddings"], y["token_embeddings"][:n], atol=1e-5)
        assert torch.allclose(x["sentence_embedding"], y["sentence_embedding"], atol=1e-6)
    with pytest.raises(InvalidInputError, match="precision"):
        ours.encode(TEXTS[:2], output_value="token_embeddings", precision="int8")


@pytest.mark.parametrize("fn", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_functions_equal_sentence_transformers(pair, fn):
    ours, st, _ = pair
    a, b = ours.encode(TEXTS[:4]), ours.encode(TEXTS[4:9])
    ours.similarity_fn_name, st.similarity_fn_name = fn, fn
    try:
        assert torch.allclose(ours.similarity(a, b), st.similarity(a, b), atol=1e-5)
        assert torch.allclose(ours.similarity_pairwise(a, a[::-1].copy()), st.similarity_pairwise(a, a[::-1].copy()),
                              atol=1e-5)
    finally:
        ours.similarity_fn_name, st.similarity_fn_name = None, "cosine"
    with pytest.raises(InvalidInputError, match="similarity function"):
        similarity(a, b, "jaccard")


def test_a_folder_saved_by_sentence_transformers_keeps_its_pooling_normalize_and_prompts(tmp_path):
    from sentence_transformers import models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformer = models.Transformer(str(fx.mlm_checkpoint()))
        st = st_lib.SentenceTransformer(
            modules=[transformer, models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="cls"),
                     models.Normalize()], prompts={"query": "q: "}, similarity_fn_name="dot", device="cpu")
        st.save(str(tmp_path / "st"))
    ours = fastdeberta.from_pretrained(tmp_path / "st")
    assert (ours.pooling, ours.normalize_embeddings, ours.similarity_fn_name) == ("cls", True, "dot")
    assert ours.prompts["query"] == "q: "
    np.testing.assert_allclose(ours.encode(TEXTS, prompt_name="query"), st.encode(TEXTS, prompt_name="query"),
                               atol=1e-6)
    a = ours.encode(TEXTS[:3])
    assert torch.allclose(ours.similarity(a, a), st.similarity(a, a), atol=1e-5)


def test_encode_on_the_meta_device_is_refused_and_the_model_stays(pair):
    """Issue 13: device="meta" used to fail after moving the caller's model there (its weights gone)."""
    ours, _, _ = pair
    before = ours.encode(TEXTS[:2])
    with pytest.raises(InvalidInputError, match="meta"):
        ours.encode(TEXTS[:2], device="meta")
    assert {p.device.type for p in ours.parameters()} == {"cpu"}
    np.testing.assert_allclose(ours.encode(TEXTS[:2]), before, atol=0)


def test_sentence_transformers_files_are_read_safely(tmp_path):
    """Paths in modules.json stay inside the folder; broken files are named; null prompts mean none."""
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(fx.mlm_checkpoint(), folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    for path in (str(outside), "../outside"):
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling"}]))
        assert fastdeberta.from_pretrained(folder).pooling == "mean", path   # the outside file is not read
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "q: ", "x": None}}))
    assert fastdeberta.from_pretrained(folder).prompts == {"query": "q: "}
    (folder / "config_sentence_transformers.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="config_sentence_transformers.json is not valid JSON"):
        fastdeberta.from_pretrained(folder)
