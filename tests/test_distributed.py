"""Data-parallel training under torch.distributed (gloo, CPU): processes launched the way torchrun
launches them (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in the environment).

Two processes with per-process batch B must train the same model as one process with batch 2B; a
killed two-process run must resume to bitwise the same weights; a failure on rank 0 must stop every
process; only rank 0 writes; and ``torchrun`` itself runs ``fastdeberta pretrain``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastdeberta.training.distributed import DistContext, shard

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(model_type="deberta-v2", vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=32, relative_attention=True, position_buckets=8,
            pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm",
            share_att_key=True, num_labels=2)

# One process of a job. argv: output folder, "fresh"|"resume", per-process batch, steps, dropout,
# noise (random token replacement drawn from the loop's generator), die_at (micro-batch index at
# which every process exits hard, as if the job were killed; -1: never), init seed.
WORKER = textwrap.dedent("""
    import os, sys, torch
    torch.set_num_threads(1)
    out, mode, batch, steps, dropout, noise, die_at, init_seed = sys.argv[1:9]
    from fastdeberta import DebertaConfig, DebertaForSequenceClassification
    from fastdeberta.training import Trainer, TrainingArguments
    from fastdeberta.training.distributed import launched, leave
    cfg = dict({cfg}, hidden_dropout_prob=float(dropout), attention_probs_dropout_prob=float(dropout))
    with launched() as (ctx, device):
        torch.manual_seed(int(init_seed) + ctx.rank)   # replicas differ: the loop must align them
        model = DebertaForSequenceClassification(DebertaConfig.from_dict(cfg))
        gen = torch.Generator().manual_seed(1)
        data = [{{"input_ids": torch.randint(5, 40, (8,), generator=gen), "labels": i % 2}} for i in range(32)]
        def collate(ex):
            return {{"input_ids": torch.stack([e["input_ids"] for e in ex]),
                    "labels": torch.tensor([e["labels"] for e in ex])}}
        seen = []
        def loss(model, batch, generator):
            seen.append(len(seen))
            if len(seen) - 1 == int(die_at):
                os._exit(3)
            ids = batch["input_ids"].clone()
            if float(noise):
                flip = torch.rand(ids.shape, generator=generator) < float(noise)
                ids[flip] = torch.randint(5, 40, ids.shape, generator=generator)[flip]
            return model(input_ids=ids, labels=batch["labels"]).loss, {{"ids_sum": float(ids.sum())}}
        args = TrainingArguments(output_dir=out, learning_rate=3e-3, max_steps=int(steps), batch_size=int(batch),
                                 save_steps=4, logging_steps=1, precision="fp32", progress=False,
                                 save_total_limit=3, warmup_steps=2)
        Trainer(model, args, data, collate_fn=collate, compute_loss=loss).train(resume=mode == "resume")
    leave(0)                # as the CLI does after a data-parallel run (see distributed.leave)
""").format(cfg=repr(TINY))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script: Path, outs: list[Path], *args: object, timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Start one process per output folder (rank = position), as torchrun would; wait for all."""
    world, port = len(outs), _free_port()
    procs = []
    for rank, out in enumerate(outs):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        if world == 1:
            for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
                env.pop(key)
        procs.append(subprocess.Popen([sys.executable, str(script), str(out), *map(str, args)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


def _ok(results: list[subprocess.CompletedProcess]) -> None:
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]


def _said(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return script


def test_shard_splits_a_block_and_wraps_at_the_end_of_the_epoch():
    order = list(range(10))
    alone = DistContext(0, 1)
    assert shard(order, 2, 4, alone) == [8, 9]                       # one process: the short last batch
    parts = [shard(order, 1, 2, DistContext(r, 3)) for r in range(3)]
    assert parts == [[6, 7], [8, 9], [0, 1]]                          # block 1 = positions 6..11, wrapped
    assert sorted(sum((shard(order, 0, 2, DistContext(r, 3)) for r in range(3)), [])) == [0, 1, 2, 3, 4, 5]


def test_two_processes_train_the_model_of_one_process_with_the_global_batch(worker, tmp_path):
    """No dropout or noise: per-process batch 2 on 2 processes = batch 4 on 1 (gradients averaged).
    Different initial seeds per process: the replicas must be aligned to rank 0's weights."""
    one = tmp_path / "one"
    _ok(_launch(worker, [one], "fresh", 4, 10, 0.0, 0.0, -1, 0))
    two, elsewhere = tmp_path / "two", tmp_path / "rank1-elsewhere"
    results = _launch(worker, [two, elsewhere], "fresh", 2, 10, 0.0, 0.0, -1, 0)
    _ok(results)
    assert not elsewhere.exists()                                     # only rank 0 writes
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    log_one, log_two = _log(one), _log(two)
    assert [r["step"] for r in log_one] == [r["step"] for r in log_two] == list(range(1, 11))
    for r1, r2 in zip(log_one, log_two):
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-5)
        assert r2["ids_sum"] == pytest.approx(r1["ids_sum"] / 2)        # a metric: the mean over processes
        assert r2["examples_per_s"] > 0
    assert "data parallel: 2 processes" in _said(results[0])
    assert "data parallel" not in _said(results[1])                  # the others stay quiet


def test_killed_two_process_job_resumes_to_bitwise_equal_weights(worker, tmp_path):
    """Dropout and per-process noise on: every random stream is per process and restored per process."""
    straight = tmp_path / "straight"
    _ok(_launch(worker, [straight, straight], "fresh", 2, 12, 0.1, 0.2, -1, 0))
    killed = tmp_path / "killed"
    results = _launch(worker, [killed, killed], "fresh", 2, 12, 0.1, 0.2, 6, 0)   # dies in step 7
    assert all(r.returncode == 3 for r in results), [r.stderr[-2000:] for r in results]
    assert (killed / "checkpoint-4").is_dir() and not (killed / "checkpoint-8").exists()
    rng = torch.load(killed / "checkpoint-4" / "rng.pt", weights_only=True)
    assert rng["world_size"] == 2 and len(rng["ranks"]) == 2
    assert not torch.equal(rng["ranks"][0]["torch"], rng["ranks"][1]["torch"])   # dropout differs per process
    results = _launch(worker, [killed, killed], "resume", 2, 12, 0.1, 0.2, -1, 0)
    _ok(results)
    assert "resumed from checkpoint-4" in _said(results[0])
    a, b = _weights(straight), _weights(killed)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["loss"] for r in _log(straight)] == [r["loss"] for r in _log(killed)]


def test_resuming_with_another_process_count_says_it_is_not_exact(worker, tmp_path):
    run = tmp_path / "run"
    _ok(_launch(worker, [run, run], "fresh", 2, 4, 0.1, 0.0, -1, 0))
    shutil.copy(run / "metrics.jsonl", tmp_path / "before.jsonl")
    results = _launch(worker, [run], "resume", 2, 6, 0.1, 0.0, -1, 0)
    _ok(results)
    assert "written by 2 process(es) and this run has 1" in _said(results[0])
    assert "the data order follows the new global batch (2 instead of 4)" in _said(results[0])
    assert [r["step"] for r in _log(run)][-2:] == [5, 6]


def test_a_failure_on_rank_0_stops_every_process_with_its_message(worker, tmp_path):
    run = tmp_path / "run"
    _ok(_launch(worker, [run, run], "fresh", 2, 2, 0.0, 0.0, -1, 0))
    results = _launch(worker, [run, run], "fresh", 2, 2, 0.0, 0.0, -1, 0, timeout=120)   # no --resume
    assert results[0].returncode != 0 and "FileExistsError" in results[0].stderr
    assert results[1].returncode != 0 and "rank 0 failed" in results[1].stderr
    assert "already holds a training run" in results[1].stderr


def test_torchrun_runs_pretraining_on_two_processes(tmp_path):
    """``torchrun --standalone --nproc-per-node 2 -m fastdeberta pretrain``: one run folder, one log,
    checkpoints that a single process resumes."""
    from fastdeberta.pretraining.vocab import train_tokenizer

    words = "the cat sat on a mat while the dog ran to the park and a bird sang in the old tree".split()
    gen = torch.Generator().manual_seed(0)
    docs = [" ".join(words[int(i)] for i in torch.randint(len(words), (int(8 + d % 9),), generator=gen)) + "."
            for d in range(60)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(docs) + "\n")
    train_tokenizer([corpus], tmp_path / "tok", vocab_size=50, exact_size=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({k: v for k, v in TINY.items() if k != "num_labels"} | {"vocab_size": 50}))
    common = ["pretrain", "--tokenizer", str(tmp_path / "tok"), "--corpus", str(corpus), "--config", str(config),
              "--output", str(tmp_path / "run"), "--seq-length", "16", "--batch-size", "2", "--save-every", "2",
              "--eval-every", "2", "--valid-fraction", "0.2", "--precision", "fp32", "--no-progress", "--json",
              "--log-every", "1"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "fastdeberta"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(torchrun + common + ["--steps", "4"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["steps"] == 4                  # printed by rank 0 only
    rows = _log(tmp_path / "run")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]           # one log, not two
    state = json.loads((tmp_path / "run" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    assert (tmp_path / "run" / "generator" / "config.json").is_file()
    from fastdeberta.cli.main import main

    assert main(common + ["--steps", "6", "--resume"]) == 0                  # one process continues it
    assert [r["step"] for r in _log(tmp_path / "run") if "loss" in r][-2:] == [5, 6]


def test_torchrun_fine_tunes_with_evaluation_and_the_best_model(tmp_path):
    """``torchrun -m fastdeberta train`` with --eval: rank 0 evaluates, keeps the best model and prints;
    the result predicts like a model trained by one process."""
    import finetune_fixtures as ff

    ff.base_checkpoint(tmp_path / "base")
    ff.write_csv(tmp_path / "train.csv", ff.classification_rows(160))
    ff.write_csv(tmp_path / "eval.csv", ff.classification_rows(40, seed=1))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "fastdeberta", "train", "--task", "sequence-classification", "--model", str(tmp_path / "base"),
               "--train", str(tmp_path / "train.csv"), "--eval", str(tmp_path / "eval.csv"), "--output", str(out),
               "--lr", "5e-3", "--warmup-ratio", "0.1", "--batch-size", "4", "--epochs", "8", "--precision", "fp32",
               "--no-progress", "--seed", "2", "--json"]
    done = subprocess.run(command, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1                                                  # rank 0 prints
    summary = summaries[0]
    assert summary["steps"] == 8 * 20                                            # 160 / (4 x 2) per epoch
    assert summary["best_metric"] >= 0.95, summary    # what one process with batch 8 reaches (test_finetune_cli)
    evals = [r for r in _log(out) if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [20 * e for e in range(1, 9)]
    assert summary["best_metric"] == max(r["eval_accuracy"] for r in evals)
    assert json.loads((out / "finetune.json").read_text())["task"] == "sequence-classification"
    from fastdeberta.cli.main import main

    assert main(["evaluate", "--model", str(out), "--data", str(tmp_path / "eval.csv"), "--json"]) == 0


def test_torchrun_pretraining_on_bad_text_stops_every_process_with_the_reason(tmp_path):
    corpus = tmp_path / "empty.txt"
    corpus.write_text("\n\n")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "fastdeberta", "pretrain", "--tokenizer", str(ROOT / "fastdeberta/shipped/deberta-v3-tiny-en/discriminator"),
               "--corpus", str(corpus), "--output", str(tmp_path / "run"), "--steps", "2"]
    done = subprocess.run(command, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=180)
    assert done.returncode != 0
    assert "no text in" in done.stderr                                   # rank 0's own error
    assert "rank 0 failed, so this process stops too" in done.stderr    # the other one, told why
