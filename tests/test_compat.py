"""Drop-in compatibility with transformers: the same calls through transformers and fastdeberta on
checkpoints the tests build, compared field by field (loading keywords, whole padded tensors, state
dicts with tied keys, model methods, config attributes, pipelines).

sentence-transformers' side is in test_compat_sentence_transformers.py.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference_fixtures as fx  # noqa: E402
from conftest import hf_model, make_inputs, variant  # noqa: E402

import fastdeberta  # noqa: E402
from fastdeberta.errors import InputTypeError, InvalidInputError  # noqa: E402

transformers = pytest.importorskip("transformers")


# the models here are tiny: one thread is fastest and avoids thread thrashing on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """Checkpoints written by transformers: {(variant, task): folder}, built on first use."""
    root = tmp_path_factory.mktemp("hf")
    made: dict[tuple[str, str], Path] = {}

    def get(name: str, task: str, **overrides) -> Path:
        key = (name, task, tuple(sorted(overrides.items())))
        if key not in made:
            folder = root / f"{name}-{task}-{len(made)}"
            hf_model(variant(name, **overrides), task).save_pretrained(folder)
            made[key] = folder
        return made[key]

    return get


def hf_load(folder: Path, task: str, **kwargs):
    from conftest import HF_CLASS_SUFFIX

    config = json.loads((folder / "config.json").read_text())
    prefix = "Deberta" if config["model_type"] == "deberta" else "DebertaV2"
    return getattr(transformers, prefix + HF_CLASS_SUFFIX[task]).from_pretrained(folder, **kwargs).eval()


# ------------------------------------------------------------------------------------------ whole tensors
@pytest.mark.parametrize("name", ["v3", "v1-talking-both", "v2-xlarge-style"])
@pytest.mark.parametrize("task", ["base", "masked-lm", "token-classification", "question-answering"])
def test_whole_padded_outputs_equal_transformers(hf_folders, name, task):
    """Padded positions too: torch.allclose over whole tensors, as a transformers user writes it."""
    folder = hf_folders(name, task)
    theirs = hf_load(folder, task)
    ours = fastdeberta.from_pretrained(folder, task=task)
    inputs = make_inputs(variant(name), 21)
    assert not inputs["attention_mask"].all()    # padded rows present
    with torch.no_grad():
        a = theirs(**inputs, output_hidden_states=True)
        b = ours(**inputs, output_hidden_states=True)
    fields = [k for k in ("last_hidden_state", "logits", "start_logits", "end_logits") if k in a]
    for field in fields:
        assert torch.allclose(b[field], a[field], atol=1e-4, rtol=1e-4), field
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert torch.allclose(y, x, atol=1e-4, rtol=1e-4)


def test_padded_query_rows_attend_uniformly_in_both_paths(hf_folders):
    folder = hf_folders("v3", "base")
    inputs = make_inputs(variant("v3"), 21)
    with torch.no_grad():
        want = hf_load(folder, "base")(**inputs).last_hidden_state
        for attention in ("fast", "reference"):
            got = fastdeberta.from_pretrained(folder, attention=attention)(**inputs).last_hidden_state
            padded = ~inputs["attention_mask"].bool()
            assert torch.allclose(got[padded], want[padded], atol=1e-4, rtol=1e-4), attention


# ------------------------------------------------------------------------------------------ state dicts
@pytest.mark.parametrize("name,legacy", [("v3", True), ("v3", False), ("v1-base", True)])
def test_masked_lm_state_dicts_load_strictly_both_ways(hf_folders, name, legacy):
    folder = hf_folders(name, "masked-lm", legacy=legacy)
    theirs = hf_load(folder, "masked-lm")
    ours = fastdeberta.from_pretrained(folder, task="masked-lm", enhanced_mask_decoder=False)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict(), strict=True)
    fresh = fastdeberta.DebertaForMaskedLM(ours.config, enhanced_mask_decoder=False)
    fresh.load_state_dict(theirs.state_dict(), strict=True)
    inputs = make_inputs(variant(name), 9)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(**inputs).logits, theirs(**inputs).logits, atol=1e-4, rtol=1e-4)
    if legacy:   # the decoder is the word embedding matrix, not a copy
        assert fresh.cls.predictions.decoder.weight is fresh.deberta.embeddings.word_embeddings.weight
        assert fresh.cls.predictions.decoder.bias is fresh.cls.predictions.bias


def test_saved_files_leave_out_the_tied_copies(tmp_path, hf_folders):
    from safetensors import safe_open

    ours = fastdeberta.from_pretrained(hf_folders("v3", "masked-lm"), task="masked-lm")
    ours.save_pretrained(tmp_path / "out")
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "cls.predictions.bias" in keys and not {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"} & keys


# ------------------------------------------------------------------------------------------ loading keywords
def test_torch_dtype_and_device_map_as_transformers(hf_folders, tmp_path):
    folder = hf_folders("v3", "base")
    model = fastdeberta.from_pretrained(folder, torch_dtype=torch.bfloat16, device_map="cpu")
    theirs = hf_load(folder, "base", dtype=torch.bfloat16, device_map="cpu")
    assert model.dtype == theirs.dtype == torch.bfloat16 and model.device.type == "cpu"
    model.save_pretrained(tmp_path / "bf16")     # no "dtype is not JSON serializable"
    written = json.loads((tmp_path / "bf16" / "config.json").read_text())
    theirs.save_pretrained(tmp_path / "bf16-hf")
    written_hf = json.loads((tmp_path / "bf16-hf" / "config.json").read_text())
    assert written["dtype"] == written_hf["dtype"] == "bfloat16"      # the weights' dtype, as transformers 5
    assert not {"device_map", "torch_dtype", "_name_or_path"} & set(written)
    assert fastdeberta.from_pretrained(tmp_path / "bf16", torch_dtype="auto").dtype == torch.bfloat16
    assert model.config.name_or_path == theirs.config.name_or_path == str(folder)
    assert fastdeberta.from_pretrained(folder, device_map="auto").device.type == ("cuda" if torch.cuda.is_available()
                                                                                  else "cpu")
    assert fastdeberta.from_pretrained(folder, device_map={"": "cpu"}).device.type == "cpu"
    with pytest.raises(InvalidInputError, match="2 devices"):
        fastdeberta.from_pretrained(folder, device_map={"deberta.embeddings": "cpu", "deberta.encoder": 0})
    with pytest.raises(InvalidInputError, match="disagree"):
        fastdeberta.from_pretrained(folder, dtype="float32", torch_dtype=torch.bfloat16)


def test_torch_dtype_auto_reads_the_config(tmp_path, hf_folders):
    source = hf_folders("v3", "base")
    folder = tmp_path / "auto"
    folder.mkdir()
    config = json.loads((source / "config.json").read_text())
    config["dtype"] = "bfloat16"
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    assert fastdeberta.from_pretrained(folder, torch_dtype="auto").dtype == torch.bfloat16
    assert hf_load(folder, "base", dtype="auto").dtype == torch.bfloat16


def test_output_hidden_states_and_attentions_at_load_time(hf_folders):
    folder = hf_folders("v3", "base")
    inputs = make_inputs(variant("v3"), 7)
    theirs = hf_load(folder, "base", output_hidden_states=True, output_attentions=True)
    ours = fastdeberta.from_pretrained(folder, output_hidden_states=True, output_attentions=True)
    assert ours.config.output_hidden_states and ours.config.output_attentions
    with torch.no_grad():
        a, b = theirs(**inputs), ours(**inputs)
        assert len(b.hidden_states) == len(a.hidden_states) == 3
        for x, y in zip(a.attentions, b.attentions):
            assert torch.allclose(y, x, atol=1e-5)
        assert ours(**inputs, output_hidden_states=False).hidden_states is None   # the call still wins
    plain = fastdeberta.from_pretrained(folder)
    assert plain(**inputs).hidden_states is None
    plain.config.output_hidden_states = True          # set after loading, as transformers users do
    assert len(plain(**inputs).hidden_states) == 3


def test_attn_implementation_and_other_accepted_keywords(hf_folders):
    folder = hf_folders("v3", "base")
    impl = lambda m: {layer.attention.self.implementation for layer in m.encoder.layer}  # noqa: E731
    assert impl(fastdeberta.from_pretrained(folder, attn_implementation="eager")) == {"reference"}
    assert impl(fastdeberta.from_pretrained(folder, attn_implementation="sdpa")) == {"fast"}
    with pytest.raises(InvalidInputError, match="flash_attention_2.*eager.*sdpa"):
        fastdeberta.from_pretrained(folder, attn_implementation="flash_attention_2")
    model = fastdeberta.from_pretrained(folder, low_cpu_mem_usage=True, trust_remote_code=True, use_safetensors=True)
    assert model.task == "base"
    with pytest.raises(fastdeberta.CheckpointError, match="pytorch_model.bin"):
        fastdeberta.from_pretrained(folder, use_safetensors=False)   # only a safetensors file there


def test_unknown_keywords_are_errors_naming_the_closest_known_name(hf_folders):
    folder = hf_folders("v3", "base")
    with pytest.raises(InputTypeError, match="'foo'"):
        fastdeberta.from_pretrained(folder, foo=1)
    with pytest.raises(TypeError, match="'output_hidden_state'.*Did you mean 'output_hidden_states'"):
        fastdeberta.from_pretrained(folder, output_hidden_state=True)
    with pytest.raises(TypeError, match="Did you mean 'torch_dtype'"):
        fastdeberta.from_pretrained(folder, torch_dtyp=torch.float16)
    # config fields still override, including keys only config.json has
    model = fastdeberta.from_pretrained(folder, hidden_dropout_prob=0.3, transformers_version="0")
    assert model.config.hidden_dropout_prob == 0.3


def test_enhanced_mask_decoder_false_equals_transformers_masked_lm():
    """transformers' DebertaV2ForMaskedLM has no Enhanced Mask Decoder: with it switched off the logits agree."""
    folder = fx.mlm_checkpoint()    # saved with an EMD (absolute position table present)
    assert fastdeberta.from_pretrained(folder).enhanced_mask_decoder
    ours = fastdeberta.from_pretrained(folder, enhanced_mask_decoder=False)
    assert not ours.enhanced_mask_decoder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.AutoModelForMaskedLM.from_pretrained(folder).eval()
    enc = ours.tokenizer(["The [MASK] sat.", "a b [MASK] c d e f"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(ours(**enc).logits, theirs(**enc).logits, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------ methods, config
def test_model_methods_as_transformers(hf_folders):
    folder = hf_folders("v3", "masked-lm")
    theirs = hf_load(folder, "masked-lm")
    ours = fastdeberta.from_pretrained(folder, task="masked-lm", enhanced_mask_decoder=False)
    assert ours.main_input_name == theirs.main_input_name == "input_ids"
    assert torch.equal(ours.get_output_embeddings().weight, theirs.get_output_embeddings().weight)
    assert ours.get_output_embeddings().weight is ours.get_input_embeddings().weight
    for task in ("sequence-classification", "question-answering"):
        model = fastdeberta.from_pretrained(hf_folders("v3", task), task=task)
        assert model.get_input_embeddings() is model.deberta.embeddings.word_embeddings
        assert model.get_output_embeddings() is None and hf_load(hf_folders("v3", task), task).get_output_embeddings() is None

    old = ours.config.vocab_size
    ids = make_inputs(variant("v3"), 9, pad=False)
    with torch.no_grad():
        before = ours(**ids).logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in (ours, theirs):
            model.resize_token_embeddings(old + 7, pad_to_multiple_of=8)
    size = -(-(old + 7) // 8) * 8
    assert ours.config.vocab_size == theirs.config.vocab_size == size
    # kept rows unchanged, new rows the mean of the old ones (transformers adds ~1e-5 noise)
    assert torch.allclose(ours.get_input_embeddings().weight, theirs.get_input_embeddings().weight, atol=1e-3)
    assert torch.allclose(ours.cls.predictions.bias, theirs.cls.predictions.bias, atol=1e-3)
    assert ours.get_output_embeddings().weight is ours.get_input_embeddings().weight   # still tied
    with torch.no_grad():
        after = ours(**ids).logits
    assert after.shape[-1] == size and torch.allclose(after[..., :old], before, atol=1e-5)
    assert torch.allclose(after, theirs(**ids).logits, atol=1e-2)
    with pytest.raises(InvalidInputError, match="new_num_tokens"):
        ours.resize_token_embeddings(0)


def test_config_attributes_as_transformers(hf_folders):
    folder = hf_folders("v3", "sequence-classification")
    ours = fastdeberta.from_pretrained(folder).config
    theirs = transformers.AutoConfig.from_pretrained(folder)
    for name in ("architectures", "num_labels", "tie_word_embeddings", "output_hidden_states", "output_attentions"):
        assert getattr(ours, name) == getattr(theirs, name), name
    plain = fastdeberta.DebertaConfig.from_dict(variant("v3"))
    assert plain.num_labels == transformers.DebertaV2Config(**{k: v for k, v in variant("v3").items()
                                                               if k != "model_type"}).num_labels == 2
    assert "num_labels" not in plain.to_dict()       # implied, as transformers writes configs
    assert fastdeberta.DebertaConfig.from_dict(variant("v3", id2label={0: "a", 1: "b", 2: "c"})).num_labels == 3
    assert plain.dtype is None and fastdeberta.DebertaConfig.from_dict(variant("v3", dtype="bfloat16")).torch_dtype \
        == torch.bfloat16


# ------------------------------------------------------------------------------------------ pipelines
@pytest.fixture(scope="module")
def hf_fill_mask():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.pipeline("fill-mask", model=str(fx.mlm_checkpoint()), device=-1)


def test_fill_mask_fields_equal_transformers(hf_fill_mask):
    # transformers' masked-LM has no Enhanced Mask Decoder: compare with it switched off
    ours = fastdeberta.pipeline("fill-mask", model=str(fx.mlm_checkpoint()), device=-1, torch_dtype="float32",
                                enhanced_mask_decoder=False)
    text = "Free software is a matter of [MASK]."
    special = set(ours.tokenizer.all_special_ids)
    theirs = [p for p in hf_fill_mask(text, top_k=12) if p["token"] not in special][:5]   # we skip special tokens
    got = ours(text)
    assert [p["token"] for p in got] == [p["token"] for p in theirs]
    for a, b in zip(got, theirs):
        assert a["token_str"] == b["token_str"] and a["sequence"] == b["sequence"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
    # exact vocabulary pieces as targets resolve to the same ids
    targets = ["▁the", "▁software", "▁free"]
    a, b = ours(text, targets=targets), hf_fill_mask(text, targets=targets)
    assert [(p["token"], p["token_str"], p["sequence"]) for p in a] == [(p["token"], p["token_str"], p["sequence"])
                                                                        for p in b]
    np.testing.assert_allclose([p["score"] for p in a], [p["score"] for p in b], atol=1e-6)


def test_fill_mask_two_masks_and_tokenizer_kwargs(hf_fill_mask):
    ours = fastdeberta.pipeline("fill-mask", model=str(fx.mlm_checkpoint()), device=torch.device("cpu"),
                                enhanced_mask_decoder=False)
    text = "The [MASK] sat on the [MASK] today."
    got, theirs = ours(text, targets=["▁software", "▁the"]), hf_fill_mask(text, targets=["▁software", "▁the"])
    assert len(got) == len(theirs) == 2
    for mine, their in zip(got, theirs):
        assert [p["token"] for p in mine] == [p["token"] for p in their]
        np.testing.assert_allclose([p["score"] for p in mine], [p["score"] for p in their], atol=1e-6)
        for p in mine:   # as transformers: the whole input, this mask filled, special tokens shown
            assert p["sequence"].startswith("[CLS]") and p["sequence"].count("[MASK]") == 1
    long = "[MASK] " + "The cat sat on the mat. " * 10
    kwargs = {"truncation": True, "max_length": 12}
    np.testing.assert_allclose([p["score"] for p in ours(long, tokenizer_kwargs=kwargs, targets=["▁the"])],
                               [p["score"] for p in hf_fill_mask(long, tokenizer_kwargs=kwargs, targets=["▁the"])],
                               atol=1e-6)
    with pytest.raises(InvalidInputError, match="tokenizer_kwargs"):
        ours(long, tokenizer_kwargs={"padding_side": "left"})


def test_feature_extraction_equals_transformers():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = transformers.pipeline("feature-extraction", model=str(fx.mlm_checkpoint()), device=-1)
    ours = fastdeberta.pipeline("feature-extraction", model=str(fx.mlm_checkpoint()), device=-1)
    texts = ["The cat sat on the mat.", "Hello"]
    a, b = ours(texts), theirs(texts)
    for x, y in zip(a, b):
        assert np.array(x).shape == np.array(y).shape and np.array(x).shape[0] == 1   # (1, L, D)
        np.testing.assert_allclose(np.array(x), np.array(y), atol=1e-5)
    one = ours(texts[0], return_tensors=True)
    assert isinstance(one, torch.Tensor) and torch.allclose(one, theirs(texts[0], return_tensors=True), atol=1e-5)


def test_pipeline_argument_errors():
    """Issue 13: model=None, unknown keywords, transformers' device numbers."""
    with pytest.raises(TypeError, match="needs model="):   # (no default model has a question-answering head)
        fastdeberta.pipeline("question-answering", model=None)
    with pytest.raises(InputTypeError, match="'foo'"):
        fastdeberta.pipeline("fill-mask", model=str(fx.mlm_checkpoint()), foo=1)
    with pytest.raises(TypeError, match="Did you mean 'top_k'"):
        fastdeberta.pipeline("fill-mask", model=str(fx.mlm_checkpoint()), topk=3)
    with pytest.raises(InvalidInputError, match="-1 for the CPU"):
        fastdeberta.pipeline("fill-mask", model=str(fx.mlm_checkpoint()), device=-2)
    assert fastdeberta.pipeline("fill-mask", model=str(fx.mlm_checkpoint()), device=-1).device.type == "cpu"


def test_fill_mask_with_masks_past_the_limit_is_an_error_not_fewer_results():
    fm = fastdeberta.pipeline("fill-mask", model=str(fx.mlm_checkpoint()))
    limit = fm.model.config.max_position_embeddings
    text = " ".join(["[MASK]"] * 200)
    with pytest.raises(InvalidInputError, match=rf"of the 200 mask tokens.*past the first {limit} tokens"):
        fm(text)
    assert len(fm(" ".join(["[MASK]"] * 20), top_k=1)) == 20
