"""Pretraining throughput: fastdeberta's MLM step vs transformers' DebertaV2ForMaskedLM, same config,
same batch, same dtype, fwd + bwd + AdamW, one process, alternating.

    python benchmarks/pretrain.py [--config fastdeberta/pretraining/configs/deberta-v3-tiny.json]
                                  [--batch 32] [--seq 128] [--vocab 12288] [--repeats 5] [--dtype fp32|bf16]

fastdeberta runs its pretraining objective (``MLMObjective``: masking, the EMD, the vocabulary
projection at the masked positions only); transformers runs ``DebertaV2ForMaskedLM`` (no EMD, logits at
every position) on the same masked batch with labels. Both use the same AdamW settings (fused, as both
libraries' trainers do). Reported: tokens/s of each and their ratio (target of issue 9: >= 1.5x; also as a
ratio of process CPU time, steadier on a shared machine), the CPU, the thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastdeberta import DebertaConfig, DebertaForMaskedLM  # noqa: E402
from fastdeberta.io import atomic_write_text  # noqa: E402
from fastdeberta.pretraining.objectives import MaskingOptions, MLMObjective  # noqa: E402


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "")
    simd = "AVX-512 BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
    return f"{fields.get('Model name', '?').strip()} family {fields.get('CPU family', '?').strip()} ({simd})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "fastdeberta/pretraining/configs/deberta-v3-tiny.json"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=12288)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 gives the steadiest CPU-time ratio on a shared machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    data = json.loads(Path(args.config).read_text())
    data.update(vocab_size=args.vocab, pad_token_id=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config = DebertaConfig.from_dict(data)
    torch.manual_seed(0)
    ours = DebertaForMaskedLM(config, head_layout="legacy", enhanced_mask_decoder=True).train()
    hf_config = transformers.DebertaV2Config(**{k: v for k, v in data.items() if k != "model_type"}, legacy=True)
    theirs = transformers.DebertaV2ForMaskedLM(hf_config).train()
    masking = MaskingOptions(mask_token_id=args.vocab - 1, vocab_size=args.vocab, special_ids=(0, 1, 2, 3))
    objective = MLMObjective(masking)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, args.vocab - 1, (args.batch, args.seq), generator=gen)
    ids[:, 0], ids[:, -1] = 1, 2
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    masked, labels = masking.apply(ids, batch["attention_mask"], torch.Generator().manual_seed(1))
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-4, fused=True)
    autocast = dict(device_type="cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step_ours() -> None:
        with torch.autocast(**autocast):
            loss, _ = objective(ours, batch, torch.Generator().manual_seed(1))
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)

    def step_theirs() -> None:
        with torch.autocast(**autocast):
            loss = theirs(input_ids=masked, attention_mask=batch["attention_mask"], labels=labels).loss
        loss.backward()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"fastdeberta": [], "transformers": []}
    cpu_times: dict[str, list[float]] = {"fastdeberta": [], "transformers": []}   # process CPU time
    for fn in (step_ours, step_theirs):           # warm-up
        fn()
    for _ in range(args.repeats):                  # alternate so both see the same machine state
        for name, fn in (("fastdeberta", step_ours), ("transformers", step_theirs)):
            start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    tokens = args.batch * args.seq
    result = {name: {"median_s": statistics.median(t), "tokens_per_s": tokens / statistics.median(t)}
              for name, t in times.items()}
    result["speedup"] = result["transformers"]["median_s"] / result["fastdeberta"]["median_s"]
    for name, t in cpu_times.items():        # steadier than wall time when other jobs share the cores
        result[name]["median_cpu_s"] = statistics.median(t)
    result["speedup_cpu_time"] = result["transformers"]["median_cpu_s"] / result["fastdeberta"]["median_cpu_s"]
    result["setup"] = {"config": Path(args.config).name, "batch": args.batch, "seq": args.seq, "vocab": args.vocab,
                       "dtype": args.dtype, "threads": torch.get_num_threads(), "cpu": cpu(),
                       "torch": torch.__version__, "transformers": transformers.__version__}
    print(json.dumps(result, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
