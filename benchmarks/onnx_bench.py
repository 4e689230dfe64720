"""ONNX rows of the benchmark: fastdeberta on onnxruntime against transformers eager (fp32, the same
random DeBERTa-v3-base weights and inputs), its int8 graph against its fp32 graph, and fastdeberta's
PyTorch engine beside them. Everything runs in this one process, alternating between engines.

The graph is made with ``fastdeberta.export.export_onnx`` (so its parity check and int8 accuracy
report run too) and run through ``fastdeberta.export.engine.make_session`` (the engine's session:
intra-op threads = cores, every graph optimisation).

    python benchmarks/onnx_bench.py --quick                 # 3 repetitions per shape (~10 min on 2 busy cores)
    python benchmarks/onnx_bench.py                         # 10 repetitions
    python benchmarks/onnx_bench.py --profile 2x512         # onnxruntime profiler: share of time per op type
    python benchmarks/onnx_bench.py --export-dir DIR        # keep / reuse the exported folder
    python benchmarks/onnx_bench.py --smoke                 # tiny model and shapes: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from run import alternate, machine, markdown_table  # noqa: E402  (the shared measurement helpers)

from fastdeberta import DebertaModel  # noqa: E402
from fastdeberta.config import preset_config  # noqa: E402
from fastdeberta.export import export_onnx  # noqa: E402
from fastdeberta.export.engine import MANIFEST_FILE, ONNX_FILE, QUANTIZED_FILE, cpu_cores, make_session  # noqa: E402

SHAPES = ((8, 128), (2, 512), (1, 2048))
TARGETS = {(8, 128): 1.8, (2, 512): 2.4, (1, 2048): 4.0}     # onnxruntime fp32 over transformers eager


def build_models(smoke: bool):
    """transformers' DeBERTa-v2 (eager attention) and fastdeberta with the same random weights."""
    import transformers

    overrides = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128) if smoke else {}
    cfg = preset_config("deberta-v3-base", **overrides)
    torch.manual_seed(0)
    hf_cfg = transformers.DebertaV2Config(**{k: v for k, v in cfg.to_dict().items() if k != "model_type"},
                                          attn_implementation="eager")
    hf = transformers.DebertaV2Model(hf_cfg).eval()
    ours = DebertaModel(cfg).eval()
    missing, _ = ours.load_state_dict(hf.state_dict(), strict=False)
    assert not missing, missing
    return hf, ours


def exported(ours: DebertaModel, folder: Path | None) -> tuple[Path, dict, float | None]:
    """The export folder (made here unless ``folder`` already holds one), its manifest, export seconds."""
    if folder is not None and (folder / MANIFEST_FILE).is_file():
        return folder, json.loads((folder / MANIFEST_FILE).read_text()), None
    folder = folder or Path(tempfile.mkdtemp(prefix="onnx-bench-")) / "v3-base"
    start = time.perf_counter()
    result = export_onnx(ours, folder, quantize="int8")
    return folder, result.manifest, time.perf_counter() - start


def inputs(batch: int, length: int, vocab: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(batch * 100_000 + length)
    ids = torch.randint(5, vocab, (batch, length), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def measure(shapes, hf, ours, fp32, int8, repeats: int) -> list[dict]:
    rows = []
    for batch, length in shapes:
        x = inputs(batch, length, ours.config.vocab_size)
        feed = {k: v.numpy() for k, v in x.items()}
        with torch.inference_mode():
            reference = ours(**x).last_hidden_state.numpy()
            hf_diff = float(np.abs(hf(**x).last_hidden_state.numpy() - reference).max())
        ort_diff = float(np.abs(fp32.run(["last_hidden_state"], feed)[0] - reference).max())
        int8_cos = _cosine(int8.run(["last_hidden_state"], feed)[0], reference)

        times = alternate({
            "transformers": _torch_call(hf, x),
            "onnxruntime": _session_call(fp32, feed),
            "onnxruntime-int8": _session_call(int8, feed),
            "fastdeberta-pytorch": _torch_call(ours, x),
        }, repeats)
        rows.append({"shape": f"{batch}x{length}", "seconds": times,
                     "onnxruntime_over_transformers": times["transformers"] / times["onnxruntime"],
                     "int8_over_fp32_graph": times["onnxruntime"] / times["onnxruntime-int8"],
                     "pytorch_over_transformers": times["transformers"] / times["fastdeberta-pytorch"],
                     "target": TARGETS.get((batch, length)),
                     "max_abs_diff_onnxruntime_vs_pytorch": ort_diff, "max_abs_diff_transformers_vs_pytorch": hf_diff,
                     "int8_hidden_cosine_mean": int8_cos, "load_average": os.getloadavg()[0]})
        print(f"  {batch}x{length}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in times.items()), flush=True)
    return rows


def _torch_call(model, x):
    def call():
        with torch.inference_mode():
            model(**x)
    return call


def _session_call(session, feed):
    return lambda: session.run(["last_hidden_state"], feed)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).mean())


def table(rows: list[dict]) -> str:
    headers = ["shape", "transformers eager", "fastdeberta PyTorch", "onnxruntime fp32", "onnxruntime int8",
               "ORT fp32 / transformers", "target", "ORT int8 / ORT fp32", "PyTorch / transformers"]
    lines = []
    for r in rows:
        s = r["seconds"]
        target = r["target"]
        verdict = "" if target is None else f">= {target}x {'met' if r['onnxruntime_over_transformers'] >= target else 'NOT met'}"
        lines.append([r["shape"], f"{s['transformers'] * 1000:.0f} ms", f"{s['fastdeberta-pytorch'] * 1000:.0f} ms",
                      f"{s['onnxruntime'] * 1000:.0f} ms", f"{s['onnxruntime-int8'] * 1000:.0f} ms",
                      f"{r['onnxruntime_over_transformers']:.2f}x", verdict, f"{r['int8_over_fp32_graph']:.2f}x",
                      f"{r['pytorch_over_transformers']:.2f}x"])
    return markdown_table(headers, lines)


def profile(graph: Path, shape: str, vocab: int, threads: int, runs: int = 3) -> list[tuple[str, float]]:
    """Share of onnxruntime's node time per op type over ``runs`` calls at ``shape`` ("BxL")."""
    batch, length = (int(n) for n in shape.lower().split("x"))
    session = make_session(graph, threads, profile=True, spinning=False)
    feed = {k: v.numpy() for k, v in inputs(batch, length, vocab).items()}
    for _ in range(runs + 1):
        session.run(["last_hidden_state"], feed)
    trace = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            by_op[event["args"].get("op_name", "?")] += event["dur"]
    total = sum(by_op.values())
    return sorted(((op, t / total) for op, t in by_op.items()), key=lambda kv: -kv[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions per shape instead of 10")
    parser.add_argument("--smoke", action="store_true", help="tiny model and shapes (checks the script)")
    parser.add_argument("--profile", metavar="BxL", default=None,
                        help="only profile the fp32 graph at this shape (e.g. 2x512) and print time per op type")
    parser.add_argument("--export-dir", type=Path, default=None, help="reuse or keep the exported folder here")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    threads = cpu_cores()
    torch.set_num_threads(threads)
    print(f"machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    hf, ours = build_models(args.smoke)
    folder, manifest, export_seconds = exported(ours, args.export_dir)
    if export_seconds is not None:
        print(f"exported to {folder} in {export_seconds:.0f} s; parity max abs diff "
              f"{manifest['parity']['max_abs_diff']:.2e} at lengths {manifest['parity']['lengths']}", flush=True)
    if args.profile:
        for op, share in profile(folder / ONNX_FILE, args.profile, ours.config.vocab_size, threads)[:15]:
            print(f"  {op:28s} {share * 100:5.1f} %")
        return

    # Idle onnxruntime threads would otherwise spin and slow down the PyTorch runs that follow them.
    fp32 = make_session(folder / ONNX_FILE, threads, spinning=False)
    int8 = make_session(folder / QUANTIZED_FILE, threads, spinning=False)
    shapes = ((2, 16), (1, 64)) if args.smoke else SHAPES
    repeats = 1 if args.smoke else (3 if args.quick else 10)
    rows = measure(shapes, hf, ours, fp32, int8, repeats)
    print()
    print(table(rows))
    result = {"machine": machine(), "threads": threads, "repeats": repeats, "rows": rows,
              "export_seconds": export_seconds, "parity_at_export": manifest["parity"]["max_abs_diff"],
              "int8_accuracy_at_export": manifest.get("quantization", {}).get("accuracy"),
              "load_average_end": os.getloadavg()[0]}
    print(json.dumps(result))
    if args.json:
        from fastdeberta.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
