"""Task metrics against hand-computed values: seqeval-style entities, SQuAD EM/F1, classification scores."""

from __future__ import annotations

import pytest
import torch

from fastdeberta.tasks.entities import detect_scheme, entity_scores, extract_entities
from fastdeberta.tasks.metrics import accuracy, macro_f1, multilabel_scores, pearson, spearman
from fastdeberta.tasks.squad_metrics import normalize_answer, squad_scores, token_f1


# ------------------------------------------------------------------ entities
def test_strict_iob2_extraction():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-PER", "B-ORG"]
    # the I-LOC run has no B-: not an entity in strict mode; B-LOC is cut by I-PER (other type)
    assert extract_entities(tags, "IOB2", "strict") == [("PER", 0, 1), ("LOC", 5, 5), ("ORG", 7, 7)]


def test_default_mode_accepts_i_starts_like_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-PER", "B-ORG"]
    assert extract_entities(tags, "IOB2", "default") == [("PER", 0, 1), ("LOC", 3, 4), ("LOC", 5, 5),
                                                         ("PER", 6, 6), ("ORG", 7, 7)]


def test_strict_bioes_extraction():
    tags = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "B-ORG", "I-ORG", "O", "B-PER", "E-LOC", "E-PER", "S-MISC"]
    # B-ORG I-ORG never closed, B-PER closed by E-LOC, lone E-PER: none of them is an entity
    assert extract_entities(tags, "BIOES", "strict") == [("PER", 0, 0), ("LOC", 1, 3), ("MISC", 10, 10)]
    assert detect_scheme([tags]) == "BIOES" and detect_scheme([["B-X", "I-X", "O"]]) == "IOB2"


def test_entity_scores_per_type_and_micro():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "O", "O"]]
    scores = entity_scores(gold, pred)
    # gold: PER(0,0-1) LOC(0,3) LOC(1,0) PER(1,2); predicted: PER(0,0-1) PER(0,3) LOC(1,0)
    # hits: PER(0,0-1), LOC(1,0) -> precision 2/3, recall 2/4
    assert scores["overall"]["precision"] == pytest.approx(2 / 3)
    assert scores["overall"]["recall"] == pytest.approx(0.5)
    assert scores["overall"]["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert scores["PER"]["precision"] == pytest.approx(0.5) and scores["PER"]["recall"] == pytest.approx(0.5)
    assert scores["LOC"]["precision"] == pytest.approx(1.0) and scores["LOC"]["recall"] == pytest.approx(0.5)
    assert scores["overall"]["accuracy"] == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted"):
        entity_scores([["O", "O"]], [["O"]])


def test_partial_boundary_is_a_miss():
    scores = entity_scores([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])
    assert scores["overall"]["f1"] == 0.0


# ------------------------------------------------------------------ SQuAD
def test_normalisation_as_the_official_script():
    assert normalize_answer("  The Quick, brown FOX!  ") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theory") == "theory"          # articles only as whole words


def test_squad_em_f1_hand_computed():
    gold = {"1": ["the cat sat"], "2": ["Paris", "in Paris"], "3": [], "4": ["blue"]}
    predictions = {"1": "cat sat on", "2": "paris!", "3": "", "4": "red"}
    # 1: tokens cat sat on vs cat sat -> P 2/3 R 1 F1 0.8; EM 0.  2: EM 1 F1 1.  3: no answer, empty -> 1, 1.  4: 0, 0
    scores = squad_scores(predictions, gold)
    assert scores["exact_match"] == pytest.approx(100 * 2 / 4)
    assert scores["f1"] == pytest.approx(100 * (0.8 + 1 + 1 + 0) / 4)
    assert scores["no_answer_exact_match"] == pytest.approx(100.0)
    assert scores["has_answer_f1"] == pytest.approx(100 * 1.8 / 3)
    assert token_f1("", "something") == 0.0 and token_f1("", "") == 1.0
    with pytest.raises(ValueError, match="no prediction for 1 question"):
        squad_scores({}, {"x": ["a"]})


# ------------------------------------------------------------------ classification / regression
def test_accuracy_and_macro_f1():
    gold = [0, 0, 1, 1, 2]
    pred = [0, 1, 1, 1, 0]
    # class 0: P 1/2 R 1/2 F1 .5; class 1: P 2/3 R 1 F1 .8; class 2: P 0 R 0 F1 0
    assert accuracy(gold, pred) == pytest.approx(3 / 5)
    assert macro_f1(gold, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_multilabel_scores():
    gold = torch.tensor([[1, 0, 1], [0, 1, 0]])
    pred = torch.tensor([[1, 0, 0], [0, 1, 0]])
    scores = multilabel_scores(gold, pred)
    assert scores["micro_precision"] == 1.0 and scores["micro_recall"] == pytest.approx(2 / 3)
    assert scores["subset_accuracy"] == 0.5
    assert scores["macro_f1"] == pytest.approx((1 + 1 + 0) / 3)


def test_pearson_spearman_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    x = [1.0, 2.0, 2.0, 3.5, 0.1, 7.0]
    y = [2.0, 1.0, 4.0, 4.0, 0.0, 9.0]
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0
