"""Tests for fastdeberta.inference: batching, encode (embeddings) and the pipelines.

Checkpoints are tiny random models with a SentencePiece vocabulary trained on text from this
machine (see inference_fixtures.py); every expected value is computed by hand from the model's own
forward pass on one text at a time, without padding.
"""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402

import fastdeberta  # noqa: E402
from fastdeberta.inference import (  # noqa: E402
    FeatureExtractionPipeline,
    FillMaskPipeline,
    SentenceEmbeddingPipeline,
    encode,
    make_batches,
    pipeline,
    plan_batches,
    restore_order,
)

ATOL = 1e-5


# the models here are tiny: one thread is fastest and avoids thread thrashing on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mlm():
    return fastdeberta.from_pretrained(fx.mlm_checkpoint())


@pytest.fixture(scope="module")
def classifier():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fastdeberta.from_pretrained(fx.classifier_checkpoint())


@pytest.fixture(scope="module")
def fill_mask():
    return pipeline("fill-mask", model=str(fx.mlm_checkpoint()))


TEXTS = fx.sentences()


# ------------------------------------------------------------------------------------------ batching
@pytest.mark.parametrize("batch_size,max_tokens", [(1, None), (3, None), (4, 40), (100, 25), (8, 7)])
def test_plan_batches_covers_everything_longest_first_within_limits(batch_size, max_tokens):
    rng = random.Random(batch_size)
    lengths = [rng.randint(1, 20) for _ in range(57)]
    batches = plan_batches(lengths, batch_size=batch_size, max_tokens=max_tokens)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))                      # every row exactly once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)    # longest first overall
    for b in batches:
        assert 1 <= len(b) <= batch_size
        width = max(lengths[i] for i in b)
        assert width == lengths[b[0]]
        if max_tokens is not None and len(b) > 1:
            assert len(b) * width <= max_tokens
    if max_tokens is not None:   # rows longer than the budget sit alone
        for b in batches:
            if lengths[b[0]] > max_tokens:
                assert len(b) == 1


def test_plan_batches_is_greedy_and_keeps_ties_in_input_order():
    assert plan_batches([2, 5, 5, 1, 3], batch_size=2) == [[1, 2], [4, 0], [3]]
    # budget 10: widths 5,5 fill one batch (2*5=10); then 3,2 (2*3=6), adding 1 -> 3*3=9 fits
    assert plan_batches([2, 5, 5, 1, 3], batch_size=10, max_tokens=10) == [[1, 2], [4, 0, 3]]
    assert plan_batches([], batch_size=4) == []


def test_plan_batches_rejects_bad_limits():
    with pytest.raises(ValueError, match="batch_size"):
        plan_batches([1, 2], batch_size=0)
    with pytest.raises(ValueError, match="max_tokens"):
        plan_batches([1, 2], batch_size=2, max_tokens=0)


def test_make_batches_pads_each_batch_to_its_own_longest_row_and_order_restores():
    rng = random.Random(0)
    seqs = [[rng.randint(4, 50) for _ in range(rng.randint(1, 12))] for _ in range(23)]
    batches = list(make_batches(seqs, batch_size=5, max_tokens=30, pad_id=0))
    for b in batches:
        assert b.input_ids.shape == (len(b), max(len(seqs[i]) for i in b.indices))
        assert b.num_tokens <= 30 or len(b) == 1
        for row, i in enumerate(b.indices):
            n = len(seqs[i])
            assert b.input_ids[row, :n].tolist() == seqs[i]
            assert b.input_ids[row, n:].eq(0).all()
            assert b.attention_mask[row].tolist() == [1] * n + [0] * (b.input_ids.shape[1] - n)
    # restore_order puts per-row values (here: the rows themselves) back in input order
    restored = restore_order([(b.indices, [b.input_ids[r, : b.lengths[r]].tolist() for r in range(len(b))])
                              for b in batches], len(seqs))
    assert restored == seqs


def test_restore_order_detects_missing_and_duplicate_positions():
    with pytest.raises(ValueError, match="no result"):
        restore_order([([0, 2], ["a", "c"])], 3)
    with pytest.raises(ValueError, match="more than one"):
        restore_order([([0, 1], ["a", "b"]), ([1, 2], ["b", "c"])], 3)
    with pytest.raises(ValueError, match="empty"):
        list(make_batches([[1], []]))


# ------------------------------------------------------------------------------------------ encode
def reference_embedding(model, text: str, pooling: str, layer: int, tok=None) -> np.ndarray:
    """One text, no padding, plain forward pass, pooling written out in numpy."""
    tok = tok or model.tokenizer
    enc = tok(text, return_tensors="pt", truncation=True)
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
    hidden = out.hidden_states[layer][0].numpy().astype(np.float64)     # (L, D)
    if pooling == "mean":
        return hidden.mean(axis=0)   # all tokens, [CLS] and [SEP] included
    if pooling == "cls":
        return hidden[0]
    return hidden.max(axis=0)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
@pytest.mark.parametrize("layer", [-1, 0, 2])
def test_encode_equals_manual_forward_and_pooling(mlm, pooling, layer):
    got = encode(mlm, TEXTS, batch_size=4, pooling=pooling, layer=layer)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert got.shape == (len(TEXTS), mlm.config.hidden_size)
    expected = np.stack([reference_embedding(mlm, t, pooling, layer) for t in TEXTS])
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-5)


def test_encode_layer_minus_one_is_the_last_hidden_state(mlm):
    n = mlm.config.num_hidden_layers
    np.testing.assert_array_equal(encode(mlm, TEXTS[:5], layer=-1), encode(mlm, TEXTS[:5], layer=n))
    assert not np.allclose(encode(mlm, TEXTS[:5], layer=0), encode(mlm, TEXTS[:5], layer=-1))
    with pytest.raises(ValueError, match="layer"):
        encode(mlm, ["x"], layer=n + 1)
    with pytest.raises(ValueError, match="layer"):
        encode(mlm, ["x"], layer=-(n + 2))


def test_encode_on_a_task_model_uses_the_encoder(classifier):
    got = encode(classifier, TEXTS[:6], batch_size=4)
    expected = np.stack([reference_embedding(classifier.base_model, t, "mean", -1, classifier.tokenizer) for t in TEXTS[:6]])
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-5)


def test_normalize_gives_unit_vectors(mlm):
    raw = encode(mlm, TEXTS, pooling="max")
    unit = encode(mlm, TEXTS, pooling="max", normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(encode(mlm, TEXTS[:3], pooling="max", normalize_embeddings=True), unit[:3], atol=1e-6)


def test_results_do_not_depend_on_batch_size_budget_or_order(mlm):
    reference = encode(mlm, TEXTS, batch_size=1)
    for kwargs in ({"batch_size": 3}, {"batch_size": 64}, {"batch_size": 7, "max_tokens": 60}):
        np.testing.assert_allclose(encode(mlm, TEXTS, **kwargs), reference, atol=ATOL)
    perm = list(range(len(TEXTS)))
    random.Random(3).shuffle(perm)
    shuffled = encode(mlm, [TEXTS[i] for i in perm], batch_size=5)
    np.testing.assert_allclose(shuffled, reference[perm], atol=ATOL)


def test_each_batch_is_padded_only_to_its_own_longest_text(mlm, monkeypatch):
    base = mlm.base_model
    shapes: list[tuple[int, int]] = []
    masks: list[torch.Tensor] = []
    original = base.forward

    def spy(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        masks.append(kwargs["attention_mask"].clone())
        return original(*args, **kwargs)

    monkeypatch.setattr(base, "forward", spy)
    lengths = sorted((len(mlm.tokenizer.encode(t)) for t in TEXTS), reverse=True)
    encode(mlm, TEXTS, batch_size=4)
    assert [s[0] for s in shapes] == [len(lengths[i:i + 4]) for i in range(0, len(lengths), 4)]
    assert [s[1] for s in shapes] == lengths[::4]         # each batch as wide as its own longest row
    for mask in masks:
        assert mask[0].all()                               # the first (longest) row has no padding
    assert sorted((int(n) for m in masks for n in m.sum(1)), reverse=True) == lengths

    shapes.clear()
    masks.clear()
    encode(mlm, TEXTS, batch_size=32, max_tokens=64)
    assert len(shapes) > 1
    assert all(b * L <= 64 or b == 1 for b, L in shapes)


def test_encode_input_forms(mlm):
    d = mlm.config.hidden_size
    one = encode(mlm, "The cat sat on the mat.")
    assert one.shape == (d,)
    np.testing.assert_allclose(one, encode(mlm, ["The cat sat on the mat."])[0], atol=1e-6)
    # no texts: sentence-transformers' empty results; fastdeberta's convert_to keeps the (0, D) shape
    empty = encode(mlm, [])
    assert isinstance(empty, np.ndarray) and empty.shape == (0,)
    assert isinstance(encode(mlm, [], convert_to_tensor=True), torch.Tensor)
    assert encode(mlm, [], convert_to_numpy=False) == []
    assert encode(mlm, [], convert_to="numpy").shape == (0, d)
    assert tuple(encode(mlm, [], convert_to="torch").shape) == (0, d)
    blank = encode(mlm, [""])   # [CLS] [SEP]
    np.testing.assert_allclose(blank[0], reference_embedding(mlm, "", "mean", -1), atol=ATOL)
    with pytest.raises(TypeError, match=r"texts\[2\]"):
        encode(mlm, ["a", "b", 3])
    with pytest.raises(TypeError):
        encode(mlm, None)
    with pytest.raises(TypeError, match="dict"):   # iterating would embed its keys
        encode(mlm, {"a": 1})
    with pytest.raises(TypeError, match="set"):
        encode(mlm, {"a", "b"})
    with pytest.raises(ValueError, match="pooling"):
        encode(mlm, ["a"], pooling="sum")
    # tuples and other iterables of str are accepted
    np.testing.assert_allclose(encode(mlm, ("a", "b")), encode(mlm, ["a", "b"]), atol=1e-6)


def test_encode_output_types(mlm):
    as_torch = encode(mlm, TEXTS[:3], convert_to="torch")
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float32
    assert isinstance(encode(mlm, TEXTS[:3], convert_to_tensor=True), torch.Tensor)
    rows = encode(mlm, TEXTS[:3], convert_to_numpy=False)   # sentence-transformers: a list of 1-D tensors
    assert isinstance(rows, list) and len(rows) == 3 and all(r.shape == (mlm.config.hidden_size,) for r in rows)
    assert isinstance(encode(mlm, TEXTS[:3], convert_to_numpy=True), np.ndarray)
    np.testing.assert_allclose(as_torch.numpy(), encode(mlm, TEXTS[:3]), atol=1e-7)
    with pytest.raises(ValueError, match="convert_to"):
        encode(mlm, ["a"], convert_to="list")
    with pytest.raises(ValueError, match="output_value"):
        encode(mlm, ["a"], output_value="pooled")


def test_token_embeddings_drop_padding_and_truncation_applies(mlm):
    tok = mlm.tokenizer
    got = encode(mlm, TEXTS[:6], output_value="token_embeddings", batch_size=3, convert_to="numpy")
    assert isinstance(got, list) and len(got) == 6
    for text, emb in zip(TEXTS[:6], got):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            ref = mlm.base_model(**enc).last_hidden_state[0].numpy()
        assert emb.shape == ref.shape
        np.testing.assert_allclose(emb, ref, atol=ATOL)
    single = encode(mlm, TEXTS[5], output_value="token_embeddings", max_length=8)
    assert isinstance(single, torch.Tensor) and single.shape == (8, mlm.config.hidden_size)  # as sentence-transformers
    short = encode(mlm, [TEXTS[5]], max_length=8)
    np.testing.assert_allclose(short[0], single.mean(dim=0).numpy(), atol=1e-6)


def test_encode_keeps_the_training_flag_and_the_public_entry_points_agree(mlm):
    mlm.train()
    try:
        a = encode(mlm, TEXTS[:4])
        assert mlm.training
    finally:
        mlm.eval()
    np.testing.assert_allclose(mlm.encode(TEXTS[:4]), a, atol=1e-7)
    np.testing.assert_allclose(fastdeberta.encode(mlm, TEXTS[:4]), a, atol=1e-7)


def test_show_progress_bar(mlm, capsys):
    encode(mlm, TEXTS[:6], batch_size=2, show_progress_bar=True)
    bar = capsys.readouterr().err
    assert "encode" in bar and "6/6" in bar
    mlm.encode(TEXTS[:6], batch_size=2, show_progress_bar=False)
    encode(mlm, TEXTS[:6], batch_size=2)  # None: a bar only for more than PROGRESS_MIN_BATCHES batches
    assert capsys.readouterr().err == ""


def test_bad_device_is_refused_before_running(mlm):
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device"):
        encode(mlm, TEXTS[:2], device="gpu")
    with pytest.raises(ValueError, match="device 'gpu'"):
        pipeline("fill-mask", model=mlm, device="gpu")


def test_encode_without_tokenizer_explains(mlm):
    bare = fastdeberta.from_pretrained(fx.mlm_checkpoint(), task="base", load_tokenizer=False)
    with pytest.raises(ValueError, match="tokenizer"):
        encode(bare, ["a"])
    np.testing.assert_allclose(encode(bare, TEXTS[:3], tokenizer=mlm.tokenizer), encode(mlm, TEXTS[:3]),
                               atol=ATOL)


# ------------------------------------------------------------------------------------------ fill-mask
def hand_probs(model, text: str) -> tuple[list[int], list[int], torch.Tensor]:
    """(ids, mask positions, softmax over the vocabulary at each mask position) for one text."""
    tok = model.tokenizer
    enc = tok(text, return_tensors="pt", truncation=True)
    with torch.no_grad():
        logits = model(**enc).logits[0]
    ids = enc["input_ids"][0].tolist()
    positions = [i for i, t in enumerate(ids) if t == tok.mask_token_id]
    return ids, positions, logits[positions].double().softmax(-1)


def allowed(model, probs: torch.Tensor) -> torch.Tensor:
    keep = probs.clone()
    keep[model.tokenizer.all_special_ids] = -1
    return keep


def test_fill_mask_single_mask_matches_softmax_by_hand(fill_mask, mlm):
    text = "The [MASK] sat on the mat."
    out = fill_mask(text, top_k=7)
    assert isinstance(out, list) and len(out) == 7
    assert all(set(p) == {"score", "token", "token_str", "sequence"} for p in out)
    scores = [p["score"] for p in out]
    assert scores == sorted(scores, reverse=True)
    ids, positions, probs = hand_probs(mlm, text)
    assert len(positions) == 1
    top = allowed(mlm, probs[0]).topk(7)
    assert [p["token"] for p in out] == top.indices.tolist()
    np.testing.assert_allclose(scores, top.values.numpy(), atol=1e-6)
    tok = mlm.tokenizer
    for p in out:
        assert p["token"] not in tok.all_special_ids
        assert p["token_str"] == tok.decode([p["token"]])
        filled = [p["token"] if t == tok.mask_token_id else t for t in ids[1:-1]]
        assert p["sequence"] == tok.decode(filled)
        assert "[MASK]" not in p["sequence"]


def test_fill_mask_top_k(fill_mask):
    five = fill_mask("hello [MASK] world")
    assert len(five) == 5    # the default
    one = fill_mask("hello [MASK] world", top_k=1)
    assert one == five[:1]
    with pytest.raises(ValueError, match="top_k"):
        fill_mask("hello [MASK] world", top_k=0)


def test_fill_mask_several_masks_and_several_texts(fill_mask, mlm):
    text = "The [MASK] sat on the [MASK] today."
    out = fill_mask(text, top_k=3)
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(m, list) and len(m) == 3 for m in out)
    ids, positions, probs = hand_probs(mlm, text)
    tok = mlm.tokenizer
    for m, predictions in enumerate(out):
        top = allowed(mlm, probs[m]).topk(3)
        assert [p["token"] for p in predictions] == top.indices.tolist()
        np.testing.assert_allclose([p["score"] for p in predictions], top.values.numpy(), atol=1e-6)
        for p in predictions:
            assert p["sequence"].count(tok.mask_token) == 1   # only this mask is filled

    texts = ["a [MASK]", text, "Free software is a matter of [MASK], not price.", "[MASK]"]
    batched = fill_mask(texts, top_k=3, batch_size=3)  # padding + sorting inside
    assert len(batched) == len(texts)
    for t, got in zip(texts, batched):
        single = fill_mask(t, top_k=3)
        assert [p["token"] for p in _flat(got)] == [p["token"] for p in _flat(single)]
        np.testing.assert_allclose([p["score"] for p in _flat(got)], [p["score"] for p in _flat(single)],
                                   atol=1e-6)
    assert fill_mask([]) == []


def _flat(result):
    return [p for m in result for p in m] if result and isinstance(result[0], list) else result


def test_fill_mask_targets(fill_mask, mlm):
    tok = mlm.tokenizer
    text = "You may copy the [MASK]."
    words = ["program", "software", "license"]
    first_ids = [tok(w, add_special_tokens=False)["input_ids"][0] for w in words]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fill_mask(text, targets=words, top_k=10)
    assert len(out) == 3 and sorted(p["token"] for p in out) == sorted(first_ids)
    _, _, probs = hand_probs(mlm, text)
    for p in out:
        assert p["score"] == pytest.approx(float(probs[0, p["token"]]), abs=1e-6)
    assert [p["score"] for p in out] == sorted((p["score"] for p in out), reverse=True)
    assert len(fill_mask(text, targets=words, top_k=2)) == 2
    single = fill_mask(text, targets="software")
    assert len(single) == 1 and single[0]["token"] == first_ids[1]

    long_word = "Überprüfungsverfahren"
    assert len(tok(long_word, add_special_tokens=False)["input_ids"]) > 1
    with pytest.warns(UserWarning, match="split into"):
        fill_mask(text, targets=[long_word])


def test_fill_mask_without_mask_names_the_text_and_the_mask_token(fill_mask):
    with pytest.raises(ValueError, match=r"no mask token in 'The cat sat\.'.*\[MASK\]"):
        fill_mask("The cat sat.")
    with pytest.raises(ValueError, match="no mask token"):
        fill_mask(["a [MASK]", "no mask here"])


def test_fill_mask_long_texts_are_truncated_but_the_mask_must_survive(fill_mask, mlm):
    tok = mlm.tokenizer
    limit = mlm.config.max_position_embeddings  # the EMD's absolute positions cap the length
    long_tail = "[MASK] sat on the mat. " + "The cat sat on the mat. " * 20
    assert len(tok.encode(long_tail)) > limit
    out = fill_mask(long_tail, top_k=3)
    enc = tok(long_tail, truncation=True, max_length=limit, return_tensors="pt")
    with torch.no_grad():
        probs = mlm(**enc).logits[0, 1].double().softmax(-1)
    assert [p["token"] for p in out] == allowed(mlm, probs).topk(3).indices.tolist()
    with pytest.raises(ValueError, match=rf"past the first {limit} tokens.*shorten"):
        fill_mask("The cat sat on the mat. " * 20 + "[MASK]")


def test_fill_mask_v1_checkpoint(mlm):
    fm = pipeline("fill-mask", model=fx.v1_checkpoint())
    model = fm.model
    assert model.config.is_v1 and not model.enhanced_mask_decoder
    text = "Free [MASK] is a matter of liberty."
    out = fm(text, top_k=4)
    _, _, probs = hand_probs(model, text)
    top = allowed(model, probs[0]).topk(4)
    assert [p["token"] for p in out] == top.indices.tolist()
    np.testing.assert_allclose([p["score"] for p in out], top.values.numpy(), atol=1e-6)


# ------------------------------------------------------------------------------------------ pipeline()
def test_pipeline_factory(mlm, classifier):
    with pytest.raises(ValueError, match="fill-mask.*feature-extraction"):
        pipeline("summarization", model=mlm)
    fm = pipeline("fill-mask", model=mlm, top_k=2)
    assert isinstance(fm, FillMaskPipeline) and fm.model is mlm
    assert len(fm("a [MASK] b")) == 2
    with pytest.raises(ValueError, match="masked-LM"):
        pipeline("fill-mask", model=classifier)
    for task in ("sentence-embeddings", "embeddings"):   # pooled vectors (feature-extraction: per token)
        se = pipeline(task, model=fx.mlm_checkpoint())
        assert isinstance(se, SentenceEmbeddingPipeline) and se.model.task == "base"
        np.testing.assert_allclose(se(TEXTS[:4]), encode(mlm, TEXTS[:4]), atol=ATOL)
        np.testing.assert_allclose(se(TEXTS[:4], pooling="cls", normalize=True, layer=1),
                                   encode(mlm, TEXTS[:4], pooling="cls", normalize=True, layer=1), atol=ATOL)
    se = pipeline("sentence-embeddings", model=classifier, pooling="max")
    np.testing.assert_allclose(se(TEXTS[:3]), encode(classifier, TEXTS[:3], pooling="max"), atol=1e-7)
    fe = pipeline("feature-extraction", model=fx.mlm_checkpoint())
    assert isinstance(fe, FeatureExtractionPipeline)
    tokens = encode(mlm, TEXTS[:2], output_value="token_embeddings")
    for got, want in zip(fe(TEXTS[:2]), tokens):   # transformers' format: (1, L, D) nested lists
        np.testing.assert_allclose(np.array(got), want.unsqueeze(0).numpy(), atol=ATOL)
    assert fastdeberta.pipeline is pipeline
    with pytest.raises(fastdeberta.ModelNotFoundError):
        pipeline("fill-mask", model="/no/such/folder")


def test_pipeline_with_an_unreadable_tokenizer_says_how_to_pass_another(tmp_path, mlm):
    folder = fx.with_unreadable_tokenizer(tmp_path / "model", fx.mlm_checkpoint())
    with pytest.raises(ValueError, match=r"bpe_encoder\.bin.*tokenizer=FOLDER_OR_REPO_ID.*pipeline\(\)"):
        pipeline("feature-extraction", model=folder)
    # the way out the message names: the model's own tokenizer files are not read
    se = pipeline("sentence-embeddings", model=folder, tokenizer=fx.mlm_checkpoint())
    np.testing.assert_allclose(se(TEXTS[:3]), encode(mlm, TEXTS[:3]), atol=ATOL)


def test_pipeline_checks_dtype_of_a_loaded_model(mlm):
    for bad in ("float8", torch.int8):
        with pytest.raises(ValueError, match=r"dtype.*'bfloat16'"):
            pipeline("feature-extraction", model=mlm, dtype=bad)
    assert {p.dtype for p in mlm.parameters()} == {torch.float32}
    pipeline("feature-extraction", model=mlm, dtype="auto")   # a loaded model stays as it is
    assert {p.dtype for p in mlm.parameters()} == {torch.float32}


def test_pipeline_finds_a_tokenizer_by_repo_id_in_the_same_cache(tmp_path, mlm, cache_only_hub):
    cache = fx.hub_cache_of(fx.mlm_checkpoint(), tmp_path / "hf-cache", "org/tiny-mlm")
    text = "The [MASK] sat on the mat."
    expected = pipeline("fill-mask", model=mlm)(text, top_k=3)
    by_id = pipeline("fill-mask", model="org/tiny-mlm", tokenizer="org/tiny-mlm", cache_dir=cache,
                     local_files_only=True)
    assert by_id(text, top_k=3) == expected
    bare = fastdeberta.from_pretrained(fx.mlm_checkpoint(), load_tokenizer=False)
    loaded = pipeline("fill-mask", model=bare, tokenizer="org/tiny-mlm", cache_dir=cache,
                      local_files_only=True)
    assert loaded(text, top_k=3) == expected
    assert cache_only_hub == [True, True, True]
    with pytest.raises(TypeError, match="cache_dir"):
        pipeline("fill-mask", model=mlm, cache_dir=cache)   # nothing to load: the option would be ignored
