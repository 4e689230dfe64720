"""Data parallel on one machine: the same pretraining step as P processes x 1 thread (torchrun, gloo)
against 1 process x P threads, at the same global batch.

    python benchmarks/data_parallel.py --tokenizer TOK --corpus train.npy [--processes 2] [--batch 32]
                                       [--steps 40] [--objective rtd] [--config CONFIG]

Each configuration is a real ``fastdeberta pretrain`` run (into a temporary folder) for --steps steps;
its tokens/s comes from the run's own metrics.jsonl (windows of 10 steps, the first window skipped as
warm-up, the median of the rest). The configurations run one after the other, alternating, --repeats
times; the ratio is what to read (absolute rates move with the machine's load). Small models gain
from data parallelism on a few cores because one process's OpenMP threads split small matrices poorly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pretrain import cpu  # noqa: E402


def run(kind: str, args: argparse.Namespace, folder: Path) -> float:
    processes = args.processes if kind == "data-parallel" else 1
    threads = 1 if kind == "data-parallel" else args.processes
    batch = args.batch // processes
    command = ["-m", "fastdeberta", "pretrain", "--objective", args.objective, "--config", args.config,
               "--tokenizer", args.tokenizer, "--corpus", args.corpus, "--output", str(folder),
               "--batch-size", str(batch), "--steps", str(args.steps), "--log-every", "10", "--eval-every", "0",
               "--save-every", str(args.steps), "--seq-length", str(args.seq), "--no-progress", "--json",
               "--precision", args.precision]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] + command
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    rates = [json.loads(line)["tokens_per_s"] for line in (folder / "metrics.jsonl").read_text().splitlines()
             if "tokens_per_s" in line]
    return statistics.median(rates[1:] or rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--corpus", required=True, help="a packed .npy file (or text: packed once per run)")
    parser.add_argument("--config", default=str(ROOT / "fastdeberta/pretraining/configs/deberta-v3-tiny.json"))
    parser.add_argument("--objective", choices=["mlm", "rtd"], default="rtd")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="global batch (split over the processes)")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    if args.batch % args.processes:
        parser.error(f"--batch {args.batch} must be divisible by --processes {args.processes}")
    results: dict[str, list[float]] = {"threads": [], "data-parallel": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for kind in results:
                rate = run(kind, args, Path(tmp) / f"{kind}-{r}")
                results[kind].append(rate)
                print(f"repeat {r + 1}: {kind:13s} {rate:8.0f} tokens/s", flush=True)
    best = {k: max(v) for k, v in results.items()}
    print(f"machine: {cpu()}, {os.cpu_count()} cores; {args.objective}, global batch {args.batch}x{args.seq}, "
          f"precision {args.precision}")
    print(f"1 process x {args.processes} threads: {best['threads']:.0f} tokens/s; "
          f"{args.processes} processes x 1 thread (torchrun, gloo): {best['data-parallel']:.0f} tokens/s; "
          f"ratio {best['data-parallel'] / best['threads']:.2f}x (best of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
