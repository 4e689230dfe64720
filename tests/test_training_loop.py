"""The shared training loop: exact resume after SIGKILL, atomic checkpoints, schedules, parameter
groups, accumulation, best-model selection and early stopping, precision choice."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastdeberta import DebertaConfig, DebertaForSequenceClassification
from fastdeberta.training import Trainer, TrainingArguments, lr_schedule, param_groups, resolve_precision
from fastdeberta.training import loop as loop_module

TINY = dict(model_type="deberta-v2", vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=32, relative_attention=True, position_buckets=8,
            pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm",
            share_att_key=True, num_labels=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)

# The training run of the resume test, as a script: a real process that can be SIGKILLed. Dropout is
# on and compute_loss draws random token replacements, so every kind of randomness is exercised.
SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from fastdeberta import DebertaConfig, DebertaForSequenceClassification
    from fastdeberta.training import Trainer, TrainingArguments
    cfg = DebertaConfig.from_dict({cfg})
    torch.manual_seed(0)
    model = DebertaForSequenceClassification(cfg)
    gen = torch.Generator().manual_seed(1)
    data = [{{"input_ids": torch.randint(5, 40, (8,), generator=gen), "labels": i % 2}} for i in range(30)]
    def collate(ex):
        return {{"input_ids": torch.stack([e["input_ids"] for e in ex]),
                "labels": torch.tensor([e["labels"] for e in ex])}}
    def loss(model, batch, generator):
        ids = batch["input_ids"].clone()
        noise = torch.rand(ids.shape, generator=generator) < 0.2
        ids[noise] = torch.randint(5, 40, ids.shape, generator=generator)[noise]
        time.sleep(float(sys.argv[3]))
        return model(input_ids=ids, labels=batch["labels"]).loss, {{"noise": float(noise.float().mean())}}
    args = TrainingArguments(output_dir=sys.argv[1], learning_rate=1e-3, max_steps=24, batch_size=4,
                             gradient_accumulation_steps=2, save_steps=4, logging_steps=3, precision="fp32",
                             progress=False, save_total_limit=2)
    Trainer(model, args, data, collate_fn=collate, compute_loss=loss).train(resume=sys.argv[2] == "resume")
""")


def _run(script: Path, out: Path, mode: str, delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(out), mode, str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_and_resume_reaches_bitwise_equal_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(cfg=repr(TINY)))

    straight = tmp_path / "straight"
    proc = _run(script, straight, "fresh")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    killed = tmp_path / "killed"
    proc = _run(script, killed, "fresh", delay=0.05)
    deadline = time.time() + 240
    while not (killed / "checkpoint-8").is_dir():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        assert time.time() < deadline, "no checkpoint-8 appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists()          # it really stopped mid-run

    proc = _run(script, killed, "resume")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "resumed from checkpoint-8" in stdout + stderr

    a = load_file(straight / "checkpoint-24" / "state.safetensors")
    b = load_file(killed / "checkpoint-24" / "state.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    # the log of the resumed run equals the uninterrupted one's, timing fields aside
    def log(folder):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.endswith("_per_s")} for r in rows]
    assert log(straight) == log(killed)
    assert [r["step"] for r in log(straight)] == [3, 6, 9, 12, 15, 18, 21, 24]


def _tiny_setup(n: int = 16, seed: int = 0):
    torch.manual_seed(seed)
    model = DebertaForSequenceClassification(DebertaConfig.from_dict(dict(TINY, hidden_dropout_prob=0.0,
                                                                         attention_probs_dropout_prob=0.0)))
    gen = torch.Generator().manual_seed(3)
    data = [{"input_ids": torch.randint(5, 40, (6,), generator=gen), "labels": i % 2} for i in range(n)]

    def collate(ex):
        return {"input_ids": torch.stack([e["input_ids"] for e in ex]),
                "labels": torch.tensor([e["labels"] for e in ex])}

    return model, data, collate


def test_partial_checkpoints_are_ignored_and_removed_on_resume(tmp_path):
    model, data, collate = _tiny_setup()
    args = TrainingArguments(output_dir=tmp_path, learning_rate=1e-3, max_steps=4, batch_size=4, save_steps=2,
                             precision="fp32", progress=False)
    Trainer(model, args, data, collate_fn=collate).train()
    # a write that died half way (temp folder) and a folder missing its state files
    (tmp_path / ".checkpoint-6.abc.tmp").mkdir()
    (tmp_path / ".checkpoint-6.abc.tmp" / "optimizer.pt").write_bytes(b"\0" * 10)
    broken = tmp_path / "checkpoint-8"
    broken.mkdir()
    (broken / "state.safetensors").write_bytes(b"garbage")
    messages: list[str] = []
    args = TrainingArguments(output_dir=tmp_path, learning_rate=1e-3, max_steps=6, batch_size=4, save_steps=2,
                             precision="fp32", progress=False)
    model2, _, _ = _tiny_setup()
    out = Trainer(model2, args, data, collate_fn=collate, log=messages.append).train(resume=True)
    assert any("resumed from checkpoint-4" in m for m in messages), messages
    assert any("incomplete checkpoint write" in m for m in messages), messages
    assert not (tmp_path / ".checkpoint-6.abc.tmp").exists()
    assert out.global_step == 6 and (tmp_path / "checkpoint-6").is_dir()


def test_resuming_with_another_step_count_says_the_schedule_changes(tmp_path):
    """--resume with a new max_steps keeps the state and recomputes the learning rate for the new total."""
    model, data, collate = _tiny_setup()
    common = dict(output_dir=tmp_path, learning_rate=1e-3, batch_size=4, save_steps=2, precision="fp32",
                  progress=False, lr_scheduler_type="linear", warmup_steps=0, logging_steps=1)
    Trainer(model, TrainingArguments(max_steps=4, **common), data, collate_fn=collate).train()
    messages: list[str] = []
    model2, _, _ = _tiny_setup()
    out = Trainer(model2, TrainingArguments(max_steps=8, **common), data, collate_fn=collate,
                  log=messages.append).train(resume=True)
    assert any("written for 4 steps, this run has 8" in m for m in messages), messages
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["lr"] for r in rows if "lr" in r}
    # steps 1-4 ran under the 4-step schedule, steps 5-8 under the 8-step one: 1e-3 * (1 - step/8)
    assert lr[4] == pytest.approx(0.0, abs=1e-12) and lr[5] == pytest.approx(1e-3 * 3 / 8)
    assert out.global_step == 8


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    model, data, collate = _tiny_setup()
    args = TrainingArguments(output_dir=tmp_path, max_steps=2, batch_size=4, precision="fp32", progress=False)
    Trainer(model, args, data, collate_fn=collate).train()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(model, args, data, collate_fn=collate).train()
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    results = []
    for batch_size, acc in ((8, 1), (4, 2)):
        model, data, collate = _tiny_setup()
        args = TrainingArguments(output_dir=tmp_path / f"{batch_size}", learning_rate=1e-3, max_steps=1,
                                 batch_size=batch_size, gradient_accumulation_steps=acc, precision="fp32",
                                 progress=False, warmup_ratio=0.0)
        Trainer(model, args, data, collate_fn=collate).train()
        results.append({k: v.clone() for k, v in model.state_dict().items()})
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], atol=1e-6, rtol=1e-5, msg=name)


def test_best_model_and_early_stopping(tmp_path):
    model, data, collate = _tiny_setup()
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.8, 0.95, 0.99])

    def evaluate(m):
        return {"accuracy": next(scores)}

    args = TrainingArguments(output_dir=tmp_path, learning_rate=1e-3, max_steps=20, batch_size=4, eval_steps=2,
                             save_steps=2, metric_for_best_model="accuracy", early_stopping_patience=3,
                             precision="fp32", progress=False)
    out = Trainer(model, args, data, collate_fn=collate, eval_fn=evaluate).train()
    # evaluations at steps 2, 4, 6, 8, 10: best 0.9 at step 4, then three without improvement -> stop at 10
    assert out.global_step == 8 + 2 and out.best_step == 4 and out.best_metric == 0.9
    assert (tmp_path / "checkpoint-4").is_dir()               # the best checkpoint survives pruning
    best = load_file(tmp_path / "best" / "model.safetensors")
    final = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(best[k], final[k]) for k in best)  # the final model is the best one
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval_accuracy"] for r in rows if "eval_accuracy" in r] == [0.5, 0.9, 0.7, 0.6, 0.8]


def test_unknown_best_metric_is_a_clear_error(tmp_path):
    model, data, collate = _tiny_setup()
    args = TrainingArguments(output_dir=tmp_path, max_steps=2, batch_size=4, eval_steps=1,
                             metric_for_best_model="f1", precision="fp32", progress=False)
    with pytest.raises(ValueError, match=r"metric_for_best_model='f1'.*\['accuracy'\]"):
        Trainer(model, args, data, collate_fn=collate, eval_fn=lambda m: {"accuracy": 1.0}).train()


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    model, data, collate = _tiny_setup()
    args = TrainingArguments(output_dir=tmp_path, max_steps=3, batch_size=4, precision="fp32", progress=False)

    def bad_loss(m, batch, generator):
        return m(**batch).loss * float("nan"), {}

    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        Trainer(model, args, data, collate_fn=collate, compute_loss=bad_loss).train()


def test_parameter_groups_decay_and_layerwise_rates():
    model, _, _ = _tiny_setup()
    groups = param_groups(model, lr=1.0, weight_decay=0.01, layerwise_lr_decay=0.5)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["deberta.encoder.layer.0.attention.self.query_proj.bias"]["weight_decay"] == 0.0
    assert by_name["deberta.encoder.layer.0.attention.output.LayerNorm.weight"]["weight_decay"] == 0.0
    assert by_name["deberta.encoder.layer.0.attention.self.query_proj.weight"]["weight_decay"] == 0.01
    # 2 layers: head 1, layer 1 -> 0.5, layer 0 -> 0.25, embeddings -> 0.125
    assert by_name["classifier.weight"]["lr"] == 1.0
    assert by_name["deberta.encoder.layer.1.intermediate.dense.weight"]["lr"] == 0.5
    assert by_name["deberta.encoder.layer.0.intermediate.dense.weight"]["lr"] == 0.25
    assert by_name["deberta.encoder.rel_embeddings.weight"]["lr"] == 0.25
    assert by_name["deberta.embeddings.word_embeddings.weight"]["lr"] == 0.125
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_learning_rate_schedules():
    linear, cosine, constant = (lr_schedule(k, 2, 10) for k in ("linear", "cosine", "constant"))
    assert [linear(s) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert math.isclose(cosine(6), 0.5) and cosine(10) == pytest.approx(0.0, abs=1e-12)
    assert [constant(s) for s in (0, 1, 5, 10)] == [0.5, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown lr_scheduler_type 'step'"):
        lr_schedule("step", 0, 10)


def test_precision_falls_back_to_fp32_without_native_bf16(monkeypatch):
    monkeypatch.setattr(loop_module, "bf16_support", lambda device: (False, "no avx512_bf16"))
    dtype, note = resolve_precision("auto", torch.device("cpu"))
    assert dtype is None and "fp32" in note and "no avx512_bf16" in note
    monkeypatch.setattr(loop_module, "bf16_support", lambda device: (True, "the CPU has avx512_bf16"))
    assert resolve_precision("auto", torch.device("cpu"))[0] == torch.bfloat16
    assert resolve_precision("fp32", torch.device("cpu"))[0] is None


@pytest.mark.parametrize("field,value", [("learning_rate", 0), ("batch_size", 0), ("warmup_ratio", 1.5),
                                         ("precision", "fp8"), ("lr_scheduler_type", "step")])
def test_bad_arguments_are_refused(field, value, tmp_path):
    with pytest.raises(ValueError, match=field):
        TrainingArguments(output_dir=tmp_path, **{field: value})


def test_empty_training_data_is_refused(tmp_path):
    model, _, collate = _tiny_setup()
    with pytest.raises(ValueError, match="empty"):
        Trainer(model, TrainingArguments(output_dir=tmp_path), [], collate_fn=collate)




def test_bf16_loading_falls_back_to_fp32_without_native_bf16(tmp_path, monkeypatch):
    import fastdeberta
    from fastdeberta import hardware

    model, _, _ = _tiny_setup()
    model.save_pretrained(tmp_path)
    monkeypatch.delenv("FASTDEBERTA_FORCE_BF16", raising=False)
    monkeypatch.setattr(hardware, "bf16_support", lambda device: (False, "the CPU has no native bf16"))
    with pytest.warns(RuntimeWarning, match="no native bf16.*float32 instead"):
        loaded = fastdeberta.from_pretrained(tmp_path, dtype="bfloat16")
    assert loaded.dtype == torch.float32
    monkeypatch.setenv("FASTDEBERTA_FORCE_BF16", "1")
    assert fastdeberta.from_pretrained(tmp_path, dtype="bfloat16").dtype == torch.bfloat16
    monkeypatch.delenv("FASTDEBERTA_FORCE_BF16")
    monkeypatch.setattr(hardware, "bf16_support", lambda device: (True, "the CPU has avx512_bf16"))
    assert fastdeberta.from_pretrained(tmp_path, dtype="bfloat16").dtype == torch.bfloat16
