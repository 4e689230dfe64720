"""A tiny randomly initialised model learns a synthetic task through every head to (near) perfect scores:
the whole path data file -> features -> training loop -> evaluation works for each task."""

from __future__ import annotations

import finetune_fixtures as ff
import pytest

from fastdeberta.tasks.run import evaluate_file, finetune, predict_file

CASES = {
    # name: (task, rows builder, metric, threshold, training examples)
    "regression": ("sequence-classification", ff.regression_rows, "pearson", 0.95, 96),
    "ner": ("token-classification", ff.ner_rows, "f1", 0.95, 96),
    "qa": ("question-answering", ff.qa_rows, "exact_match", 90.0, 96),
    "multiple-choice": ("multiple-choice", ff.choice_rows, "accuracy", 0.95, 160),
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return ff.base_checkpoint(tmp_path_factory.mktemp("learn") / "base")


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in ("qa", "multiple-choice") else c
                                  for c in sorted(CASES)])   # qa / multiple choice: ~8 s each, run with -m slow
def test_tiny_model_learns(case, base, tmp_path, single_thread):
    task, rows, metric, threshold, size = CASES[case]
    train = ff.write_jsonl(tmp_path / "train.jsonl", rows(size))
    held_out = ff.write_jsonl(tmp_path / "eval.jsonl", rows(32, seed=1))
    result = finetune(task, base, train, tmp_path / "out", eval_file=held_out, learning_rate=5e-3,
                      num_train_epochs=6, batch_size=8, precision="fp32", progress=False, log=lambda m: None,
                      warmup_ratio=0.1, seed=1, eval_steps=1000, max_length=64)
    assert result.metrics[metric] >= threshold, result.metrics
    # evaluate_file reloads the saved model and gets the same numbers
    again = evaluate_file(tmp_path / "out", held_out)
    assert again[metric] == pytest.approx(result.metrics[metric], abs=1e-6)
    if case == "ner":
        count = predict_file(tmp_path / "out", held_out, tmp_path / "p.jsonl")
        import json

        predictions = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
        assert count == 32 == len(predictions)
        gold = rows(32, seed=1)
        for entities, row in zip(predictions, gold):
            words = [w for w, t in zip(row["tokens"], row["tags"]) if t == "B-PER"]
            assert [e["word"] for e in entities if e["entity_group"] == "PER"] == words
        # raw text in, same entities out (character offsets into that text)
        texts = ff.write_jsonl(tmp_path / "texts.jsonl", [{"text": " ".join(r["tokens"])} for r in gold])
        predict_file(tmp_path / "out", texts, tmp_path / "t.jsonl")
        from_text = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
        assert from_text == predictions
        for entities, row in zip(from_text, gold):
            text = " ".join(row["tokens"])
            assert all(text[e["start"]:e["end"]] == e["word"] for e in entities)
        # windows of 12 tokens overlapping by 4: every sentence still gets its names
        predict_file(tmp_path / "out", texts, tmp_path / "w.jsonl", max_length=12,
                     pipeline_options={"stride": 4, "aggregation_strategy": "first"})
        windowed = [json.loads(line) for line in (tmp_path / "w.jsonl").read_text().splitlines()]
        found = sum(e["entity_group"] == "PER" for entities in windowed for e in entities)
        expected = sum(t == "B-PER" for row in gold for t in row["tags"])
        assert found >= 0.9 * expected
