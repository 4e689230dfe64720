"""Fine-tuning step benchmark: fastdeberta vs transformers' DebertaV2ForSequenceClassification.

One training step = forward + loss + backward + AdamW step (fused, as both libraries' trainers use it),
batch 8 x 128, DeBERTa-v3-base shape with random weights (the same weights in both), dropout on, fp32
(``--bf16``: both under bf16 autocast). Both models run in one process, alternating, after one warm-up
step each (which allocates the gradients and optimizer state, so the peak memory below is what one step
adds: activations and temporaries). Reports tokens/s, the speed ratio (wall time, and process CPU time,
which is steadier on a shared machine), and peak resident memory added by one step (Linux VmHWM, the
measurement of benchmarks/run.py).

    python benchmarks/finetune.py            # 10 timed steps each
    python benchmarks/finetune.py --quick    # 3 timed steps each
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from run import alternate, machine, peak_memory  # noqa: E402

import fastdeberta as fd  # noqa: E402


def build(num_labels: int = 3, seed: int = 0):
    import transformers

    config = fd.preset_config("deberta-v3-base", num_labels=num_labels)
    torch.manual_seed(seed)
    ours = fd.DebertaForSequenceClassification(config).train()
    hf_config = transformers.DebertaV2Config(**{k: v for k, v in config.to_dict().items() if k != "model_type"})
    theirs = transformers.DebertaV2ForSequenceClassification(hf_config).train()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def make_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], bf16: bool, cpu_seconds: list[float]):
    """One training step as a function; each call appends the process CPU time it took to ``cpu_seconds``."""
    # fused AdamW for both: what fastdeberta's Trainer and transformers' (optim="adamw_torch_fused") use
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, fused=True)

    def step() -> float:
        start = time.process_time()
        optimizer.zero_grad(set_to_none=False)       # gradients stay allocated between steps, as in training
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        cpu_seconds.append(time.process_time() - start)
        return float(loss.detach())

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 timed steps each instead of 10")
    parser.add_argument("--bf16", action="store_true", help="both models under bf16 autocast")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 gives the steadiest CPU-time ratio on a shared machine")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 10
    if args.threads:
        torch.set_num_threads(args.threads)

    ours, theirs = build()
    gen = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(4, 128000, (args.batch, args.length), generator=gen),
             "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long),
             "labels": torch.randint(0, 3, (args.batch,), generator=gen)}
    cpu: dict[str, list[float]] = {"fastdeberta": [], "transformers": []}
    steps = {name: make_step(model, batch, args.bf16, cpu[name])
             for name, model in (("fastdeberta", ours), ("transformers", theirs))}
    for step in steps.values():          # warm-up: gradients and AdamW state get allocated here
        step()
    memory = {name: peak_memory(step)[0] for name, step in steps.items()}
    for times in cpu.values():
        times.clear()
    seconds = alternate(steps, repeats)
    cpu_median = {k: statistics.median(v[1:]) for k, v in cpu.items()}   # v[0]: alternate's own warm-up
    tokens = args.batch * args.length
    result = {
        "cpu": machine(), "threads": torch.get_num_threads(), "shape": f"{args.batch}x{args.length}",
        "precision": "bf16 autocast" if args.bf16 else "fp32", "timed_steps": repeats,
        "tokens_per_s": {k: round(tokens / v, 1) for k, v in seconds.items()},
        "speedup": round(seconds["transformers"] / seconds["fastdeberta"], 3),
        # process CPU time per step: steadier than wall time when other jobs share the cores
        "cpu_seconds_per_step": {k: round(v, 3) for k, v in cpu_median.items()},
        "speedup_cpu_time": round(cpu_median["transformers"] / cpu_median["fastdeberta"], 3),
        "peak_step_mib": {k: round(v, 1) for k, v in memory.items()},
        "memory_ratio": round(memory["fastdeberta"] / memory["transformers"], 3) if memory["transformers"] else None,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
