"""Load test of ``fastdeberta serve`` on loopback: throughput and latency with dynamic batching, and
the same load with one input per forward pass (``--max-batch-requests 1``) for comparison.

    python benchmarks/serve_load.py                        # a tiny random model built in a temp folder
    python benchmarks/serve_load.py --size small           # hidden 256, 6 layers
    python benchmarks/serve_load.py --model FOLDER --clients 16 --duration 20 --json serve.json

For each mode the script starts ``python -m fastdeberta serve`` on 127.0.0.1 (a free port), runs
``--clients`` client threads for ``--duration`` seconds, each sending /embed requests of 1 to
``--max-texts`` random texts back to back over a keep-alive connection, then stops the server with
SIGTERM. It reports requests/s, inputs/s, p50 / p95 / p99 latency, the mean number of inputs per
forward pass (from /metrics) and the status codes seen. Traffic goes to 127.0.0.1 only; every loop is
bounded in time and in count.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
MAX_DURATION = 300.0
MAX_CLIENTS = 256
MAX_REQUESTS_PER_CLIENT = 100_000
WORDS = ("free software license terms copy distribute program work cat sat on the mat liberty price "
         "warranty merchantability fitness purpose source code modify version public general").split()


# ------------------------------------------------------------------------------------------ model
SIZES = {"tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256),
         "small": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024)}


def random_model(folder: Path, size: str = "tiny") -> Path:
    """A randomly initialised DeBERTa-v3-style encoder of ``SIZES[size]`` with a SentencePiece vocabulary
    trained on the licence texts of this machine, saved in ``folder``."""
    import io

    import sentencepiece as spm
    import torch

    from fastdeberta import DebertaModel
    from fastdeberta.config import DebertaConfig
    from fastdeberta.tokenizer import Tokenizer

    lines = [line.strip() for path in sorted(Path("/usr/share/common-licenses").glob("*")) if path.is_file()
             for line in path.read_text(encoding="utf-8", errors="ignore").splitlines() if len(line.strip()) > 20]
    lines = lines or [" ".join(random.Random(i).choice(WORDS) for _ in range(12)) for i in range(2000)]
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model_file, vocab_size=1000, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", hard_vocab_limit=False, minloglevel=2, num_threads=1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spm.model").write_bytes(model_file.getvalue())
    tokenizer = Tokenizer.from_spm(folder / "spm.model")
    config = DebertaConfig.from_dict(dict(
        model_type="deberta-v2", vocab_size=tokenizer.vocab_size, **SIZES[size], max_position_embeddings=512,
        relative_attention=True,
        position_buckets=64, max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
        pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0))
    torch.manual_seed(0)
    model = DebertaModel(config)
    model.tokenizer = tokenizer
    model.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------------------- server
class Server:
    """``python -m fastdeberta serve`` on 127.0.0.1, port chosen by the system."""

    def __init__(self, model: str, extra: list[str], startup_timeout: float = 120.0):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastdeberta", "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
             "--log-level", "info", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(startup_timeout):
            self.proc.kill()
            raise RuntimeError("the server did not start:\n" + "".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found.group(1)
                self.ready.set()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


# ------------------------------------------------------------------------------------------- load
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def metric(page: str, name: str) -> float:
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def run_load(url: str, clients: int, duration: float, max_texts: int, seed: int) -> dict:
    latencies: list[float] = []
    statuses: Counter = Counter()
    inputs_sent = [0]
    lock = threading.Lock()
    before = httpx.get(url + "/metrics", timeout=30).text
    stop_at = time.monotonic() + duration

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= stop_at:
                    break
                texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 48)))
                         for _ in range(rng.randint(1, max_texts))]
                start = time.perf_counter()
                try:
                    status = http.post("/embed", json={"inputs": texts, "truncate": True}).status_code
                except httpx.TransportError as err:
                    status = type(err).__name__
                with lock:
                    latencies.append(time.perf_counter() - start)
                    statuses[status] += 1
                    if status == 200:
                        inputs_sent[0] += len(texts)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - started
    after = httpx.get(url + "/metrics", timeout=30).text
    batches = metric(after, "fastdeberta_batch_size_count") - metric(before, "fastdeberta_batch_size_count")
    rows = metric(after, "fastdeberta_batch_size_sum") - metric(before, "fastdeberta_batch_size_sum")
    ok = statuses.get(200, 0)
    return {"requests_per_s": round(ok / elapsed, 1), "inputs_per_s": round(inputs_sent[0] / elapsed, 1),
            "p50_ms": round(1000 * percentile(latencies, 50), 1), "p95_ms": round(1000 * percentile(latencies, 95), 1),
            "p99_ms": round(1000 * percentile(latencies, 99), 1), "requests": sum(statuses.values()),
            "mean_inputs_per_forward": round(rows / batches, 2) if batches else 0.0,
            "statuses": {str(k): v for k, v in statuses.items()}, "seconds": round(elapsed, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: a random model of --size in a temp folder)")
    parser.add_argument("--size", choices=list(SIZES), default="tiny",
                        help="without --model: tiny (hidden 64, 4 layers) or small (hidden 256, 6 layers)")
    parser.add_argument("--clients", type=int, default=8, help=f"concurrent clients (default 8, at most {MAX_CLIENTS})")
    parser.add_argument("--duration", type=float, default=10.0,
                        help=f"seconds of load per mode (default 10, at most {MAX_DURATION:g})")
    parser.add_argument("--max-texts", type=int, default=4, help="texts per request: 1 to this (default 4)")
    parser.add_argument("--threads", type=int, default=None, help="the server's --threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be in 1..{MAX_CLIENTS}")
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION:g}]")
    threads = ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory(prefix="fastdeberta-serve-load-") as tmp:
        model = args.model or str(random_model(Path(tmp) / args.size, args.size))
        results = {}
        modes = {"dynamic batching": [], "one input per forward": ["--max-batch-requests", "1"]}
        for name, extra in modes.items():
            server = Server(model, ["--max-concurrent-requests", str(max(64, 2 * args.clients)), *threads, *extra])
            try:
                run_load(server.url, min(args.clients, 2), min(2.0, args.duration), args.max_texts, args.seed + 99)
                results[name] = run_load(server.url, args.clients, args.duration, args.max_texts, args.seed)
            finally:
                results.setdefault(name, {})["exit_code"] = server.stop()
    batched, single = results["dynamic batching"], results["one input per forward"]
    gain = batched["inputs_per_s"] / single["inputs_per_s"] if single.get("inputs_per_s") else float("nan")
    size = SIZES[args.size]
    summary = {"model": args.model or f"random {args.size} (hidden {size['hidden_size']}, "
                                      f"{size['num_hidden_layers']} layers)", "clients": args.clients,
               "duration_s": args.duration, "cpu": _cpu(), "torch_threads": args.threads or "default",
               "results": results, "throughput_gain": round(gain, 2)}
    print(f"{'mode':<24}{'req/s':>8}{'inputs/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'inputs/fwd':>12}  statuses")
    for name, r in results.items():
        print(f"{name:<24}{r['requests_per_s']:>8}{r['inputs_per_s']:>10}{r['p50_ms']:>9}{r['p95_ms']:>9}"
              f"{r['p99_ms']:>9}{r['mean_inputs_per_forward']:>12}  {r['statuses']}")
    print(f"throughput gain of dynamic batching: {gain:.2f}x  ({summary['cpu']})")
    if args.json:
        from fastdeberta.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return f"{os.cpu_count()} logical CPUs"


if __name__ == "__main__":
    sys.exit(main())
