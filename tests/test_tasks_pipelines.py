"""Task pipelines: output formats and values equal transformers' pipelines on the same tiny checkpoint
(text classification, token classification, zero-shot), and QA decoding against a brute-force reference."""

from __future__ import annotations

import functools
import math

import finetune_fixtures as ff
import pytest
import torch
from conftest import randomize_

from fastdeberta import TASKS
from fastdeberta.inference.pipelines import pipeline
from fastdeberta.tasks.qa import decode_answers, qa_features

TEXTS = ["free software is a matter of liberty", "you may copy the file", "the system works with this"]
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


@functools.cache
def _checkpoint(task: str, labels: tuple[tuple[int, str], ...], root: str) -> str:
    from pathlib import Path

    id2label = dict(labels)
    config = ff.tiny_config(num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(0)
    model = randomize_(TASKS[task](config), seed=3)
    model.tokenizer = ff.tokenizer()
    folder = Path(root) / f"{task}-{'-'.join(id2label.values())}"
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("task-pipelines"))


def _theirs(task: str, folder: str):
    transformers = pytest.importorskip("transformers")
    model_class = {"text-classification": transformers.DebertaV2ForSequenceClassification,
                   "zero-shot-classification": transformers.DebertaV2ForSequenceClassification,
                   "token-classification": transformers.DebertaV2ForTokenClassification}[task]
    model = model_class.from_pretrained(folder).eval()
    tokenizer = transformers.DebertaV2Tokenizer.from_pretrained(folder)
    return transformers.pipeline(task, model=model, tokenizer=tokenizer, device="cpu")


def _same(ours, theirs, path="result"):
    """Equal structure and keys, equal strings/ints, floats within 1e-5."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), f"{path}: keys {sorted(ours)} vs {sorted(theirs)}"
        for k in theirs:
            _same(ours[k], theirs[k], f"{path}.{k}")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{path}: {ours!r:.200} vs {theirs!r:.200}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, str) or isinstance(theirs, int) and not hasattr(theirs, "dtype"):
        assert ours == theirs, f"{path}: {ours!r} vs {theirs!r}"
    else:
        assert math.isclose(float(ours), float(theirs), rel_tol=1e-4, abs_tol=1e-5), f"{path}: {ours} vs {theirs}"


# ------------------------------------------------------------------ text classification
@pytest.mark.parametrize("call", [
    dict(inputs=TEXTS[0]),
    dict(inputs=TEXTS),
    dict(inputs=TEXTS[0], top_k=None),
    dict(inputs=TEXTS, top_k=2),
    dict(inputs=TEXTS[1], function_to_apply="sigmoid", top_k=None),
    dict(inputs={"text": TEXTS[0], "text_pair": TEXTS[1]}),
])
def test_text_classification_equals_transformers(root, call, single_thread):
    folder = _checkpoint("sequence-classification", ((0, "neg"), (1, "neu"), (2, "pos")), root)
    ours = pipeline("text-classification", model=folder)
    theirs = _theirs("text-classification", folder)
    kwargs = {k: v for k, v in call.items() if k != "inputs"}
    _same(ours(call["inputs"], **kwargs), theirs(call["inputs"], **kwargs))


def test_text_classification_format_and_errors(root, single_thread):
    folder = _checkpoint("sequence-classification", ((0, "neg"), (1, "neu"), (2, "pos")), root)
    classify = pipeline("sentiment-analysis", model=folder)
    single = classify("free software")
    assert isinstance(single, list) and set(single[0]) == {"label", "score"} and single[0]["label"] in {"neg", "neu", "pos"}
    everything = classify("free software", top_k=None)
    assert sum(d["score"] for d in everything) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="top_k must be a positive int or None"):
        classify("x", top_k=0)
    with pytest.raises(ValueError, match="function_to_apply must be"):
        classify("x", function_to_apply="relu")
    from fastdeberta import from_pretrained

    tagger = from_pretrained(_checkpoint("token-classification", tuple(NER_LABELS.items()), root))
    with pytest.raises(ValueError, match="text-classification needs a sequence-classification model"):
        pipeline("text-classification", model=tagger)


# ------------------------------------------------------------------ token classification
# words that are whole pieces or start with a '▁x' piece: where splitting on spaces (transformers) and
# SentencePiece word starts (here) agree
NER_TEXTS = ["free software is the work of you, and this may be free", "you may copy the file, and this system works.",
             "the source code of this program is free software"]


def _without_leading_space(entities: list[dict], text: str) -> list[dict]:
    """transformers 5's DeBERTa-v2 offsets include the space before a word ('▁software' -> ' software');
    ours start at the word. Move their starts past that space to compare the rest exactly."""
    out = []
    for e in entities:
        e = dict(e)
        while e["start"] < e["end"] and text[e["start"]].isspace():
            e["start"] += 1
        out.append(e)
    return out


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_equals_transformers(root, strategy, single_thread):
    folder = _checkpoint("token-classification", tuple(NER_LABELS.items()), root)
    ours = pipeline("token-classification", model=folder, aggregation_strategy=strategy)
    theirs = _theirs("token-classification", folder)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # transformers warns that it falls back to splitting on spaces
        expected = [_without_leading_space(theirs(t, aggregation_strategy=strategy), t) for t in NER_TEXTS]
    got = ours(NER_TEXTS)
    assert any(len(e) for e in expected), "random weights predicted no entity at all: the test would be empty"
    _same(got, expected)


def test_token_classification_words_follow_sentencepiece_boundaries(root, single_thread):
    """'! John' tokenizes to '▁' + 'J' 'o' 'h' 'n' here: the lone '▁' starts the word, so word-level
    aggregation keeps 'John' whole (transformers, splitting on spaces, would cut it after '▁')."""
    folder = _checkpoint("token-classification", tuple(NER_LABELS.items()), root)
    ner = pipeline("ner", model=folder, aggregation_strategy="first", ignore_labels=[])
    text = "Hello! John Smith"
    words = ner(text)
    assert [text[e["start"]:e["end"]] for e in words] == [w["word"] for w in words]
    assert "John" in [w["word"] for w in ner(text, aggregation_strategy="max")] or \
        any("John" in w["word"] for w in words)
    tokens = ner(text, aggregation_strategy="none")
    assert {"entity", "score", "index", "word", "start", "end"} == set(tokens[0])
    with pytest.raises(ValueError, match="aggregation_strategy must be one of"):
        ner(text, aggregation_strategy="longest")


# ------------------------------------------------------------------ zero-shot
@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_equals_transformers(root, multi_label, single_thread):
    folder = _checkpoint("sequence-classification", ((0, "contradiction"), (1, "neutral"), (2, "entailment")), root)
    ours = pipeline("zero-shot-classification", model=folder)
    theirs = _theirs("zero-shot-classification", folder)
    labels = ["software", "law", "food"]
    for text in TEXTS[:2]:
        got = ours(text, candidate_labels=labels, multi_label=multi_label, hypothesis_template="It is about {}.")
        expected = theirs(text, candidate_labels=labels, multi_label=multi_label, hypothesis_template="It is about {}.")
        _same(got, expected)
    batched = ours(TEXTS, "software, law")
    assert [r["sequence"] for r in batched] == TEXTS and all(len(r["labels"]) == 2 for r in batched)
    assert all(sum(r["scores"]) == pytest.approx(1.0) for r in batched)


def test_zero_shot_needs_an_entailment_label(root):
    folder = _checkpoint("sequence-classification", ((0, "neg"), (1, "neu"), (2, "pos")), root)
    with pytest.raises(ValueError, match="needs an NLI model with an 'entailment' label"):
        pipeline("zero-shot-classification", model=folder)


# ------------------------------------------------------------------ question answering
def _brute_force(start_logits, end_logits, offsets, context, max_answer_len):
    """Every (s, e) span of context tokens in every window, scored as transformers' pipeline does."""
    best = []
    for starts, ends, offs in zip(start_logits, end_logits, offsets):
        allowed = [i == 0 or o is not None for i, o in enumerate(offs)]
        big = torch.tensor([-10000.0 if not a else 0.0 for a in allowed])
        p_start, p_end = (starts + big).softmax(-1), (ends + big).softmax(-1)
        for s in range(len(offs)):
            for e in range(s, min(len(offs), s + max_answer_len)):
                if offs[s] is not None and offs[e] is not None:
                    best.append((float(p_start[s] * p_end[e]), offs[s][0], offs[e][1]))
    return max(best)


def test_qa_decoding_equals_brute_force_over_windows():
    tok = ff.tokenizer()
    context = " ".join(["free software is good and you may copy the file"] * 12)
    features = qa_features(tok, "what may you copy ?", context, max_length=40, doc_stride=10)
    assert len(features) > 3
    # windows overlap by doc_stride context tokens and cover the context
    covered = [o for f in features for o in f["_offsets"] if o is not None]
    assert covered[0][0] == 0 and covered[-1][1] == len(context)
    gen = torch.Generator().manual_seed(0)
    starts = [torch.randn(len(f["input_ids"]), generator=gen) * 3 for f in features]
    ends = [torch.randn(len(f["input_ids"]), generator=gen) * 3 for f in features]
    offsets = [f["_offsets"] for f in features]
    answers = decode_answers(starts, ends, offsets, context, top_k=3, max_answer_len=5)
    score, start, end = _brute_force(starts, ends, offsets, context, 5)
    assert answers[0]["score"] == pytest.approx(score) and (answers[0]["start"], answers[0]["end"]) == (start, end)
    assert answers[0]["answer"] == context[start:end]
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)


def test_qa_pipeline_format(root, single_thread):
    folder = _checkpoint("question-answering", ((0, "LABEL_0"), (1, "LABEL_1")), root)
    qa = pipeline("question-answering", model=folder)
    context = "you may copy the file and free software is good"
    answer = qa(question="what may you copy ?", context=context)
    assert set(answer) == {"score", "start", "end", "answer"} and answer["answer"] == context[answer["start"]:answer["end"]]
    several = qa({"question": "what ?", "context": context}, top_k=3, handle_impossible_answer=True)
    assert isinstance(several, list) and len(several) == 3
    assert [a["score"] for a in several] == sorted((a["score"] for a in several), reverse=True)
    batch = qa([{"question": "what ?", "context": context}] * 2)
    assert isinstance(batch, list) and batch[0] == batch[1]
    with pytest.raises(ValueError, match="doc_stride=400 must be smaller than the context window"):
        qa(question="what ?", context=context, doc_stride=400)
    with pytest.raises(ValueError, match="question and context must be non-empty strings"):
        qa(question="", context=context)


@pytest.mark.parametrize("strategy", ["simple", "first", "max"])
def test_token_classification_stride_windows_equal_transformers(root, strategy, single_thread):
    """A text longer than the model's length, read in windows overlapping by `stride` tokens: the same
    entities as transformers' pipeline with the same window length and stride."""
    folder = _checkpoint("token-classification", tuple(NER_LABELS.items()), root)
    text = " ".join(NER_TEXTS * 3)
    ours = pipeline("token-classification", model=folder, aggregation_strategy=strategy, max_length=16, stride=4)
    theirs = _theirs("token-classification", folder)
    theirs.tokenizer.model_max_length = 16
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _without_leading_space(theirs(text, aggregation_strategy=strategy, stride=4), text)
    got = ours(text)
    assert len(ours.tokenizer(text)["input_ids"]) > 3 * 16                  # several windows
    assert max(e["start"] for e in got) > len(text) // 2                   # entities past the first window
    _same(got, expected)
    truncated = pipeline("token-classification", model=folder, aggregation_strategy=strategy, max_length=16)(text)
    assert max((e["end"] for e in truncated), default=0) < len(text) // 3    # without stride: cut off
    with pytest.raises(ValueError, match="stride needs an aggregation_strategy other than 'none'"):
        ours(text, aggregation_strategy="none")
    with pytest.raises(ValueError, match=r"stride must be an int in \[0, 14\)"):
        ours(text, stride=14)
