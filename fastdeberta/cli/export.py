"""``fastdeberta export onnx``: an ONNX graph correct at every length, checked against PyTorch."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .common import CliError, add_model_arguments, load_kwargs

HELP = "export a model for deployment (onnx: a graph for onnxruntime)"
TASK_CHOICES = ("base", "masked-lm", "sequence-classification", "token-classification", "question-answering",
                "multiple-choice")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help=HELP, description=HELP.capitalize() + ".")
    formats = parser.add_subparsers(dest="format", metavar="FORMAT")
    onnx = formats.add_parser(
        "onnx", help="ONNX graph + config + tokenizer + manifest, checked against PyTorch",
        description="Export to ONNX with dynamic batch and sequence axes. The relative-position buckets are "
        "computed in the graph, so it is correct at every length, not only the traced one. Before the folder is "
        "written, onnxruntime is compared with PyTorch at lengths 1, 7, 128, 300, 512 and one past the traced "
        "length (capped at --max-length) with padded batches; an export off by more than 1e-4 (relative to the "
        "output's size when larger than 1) writes nothing. Output folder: model.onnx, config.json, tokenizer "
        "files, manifest.json (+ model_quantized.onnx with --quantize int8). Load it with "
        "fastdeberta.from_pretrained(FOLDER) or any command's --model FOLDER. Prints a JSON summary.",
    )
    add_model_arguments(onnx)
    onnx.add_argument("--task", choices=TASK_CHOICES, default=None,
                      help="head to export (default: the checkpoint's, from config.json architectures)")
    onnx.add_argument("--output", "-o", required=True, help="folder to write (replaced atomically if it exists)")
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset, 17-23 (default 18)")
    onnx.add_argument("--quantize", choices=["int8"], default=None,
                      help="also write model_quantized.onnx (onnxruntime dynamic int8) and its measured accuracy")
    onnx.add_argument("--max-length", type=int, default=None,
                      help="longest input the graph must serve and be checked at (default: the model's limit; "
                           "512 for models without an absolute position table)")
    onnx.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    onnx.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    onnx.set_defaults(run=run)
    parser.set_defaults(run=lambda args: _no_format(parser))
    return parser


def _no_format(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    raise CliError("name the export format: fastdeberta export onnx --model M --output DIR")


def run(args: argparse.Namespace) -> int:
    from ..export import OnnxRuntimeMissingError, export_onnx

    start = time.perf_counter()
    print(f"exporting {args.model} to {args.output} (tracing, then checking onnxruntime against PyTorch) ...",
          file=sys.stderr)
    try:
        result = export_onnx(args.model, args.output, task=args.task, opset=args.opset, quantize=args.quantize,
                             max_length=args.max_length, show_progress=not args.no_progress, **load_kwargs(args))
    except OnnxRuntimeMissingError as err:
        raise CliError(str(err)) from err
    manifest = result.manifest
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    summary = {
        "output": str(result.folder),
        "task": manifest["task"],
        "opset": manifest["opset"],
        "inputs": [i["name"] for i in manifest["inputs"]],
        "outputs": [o["name"] for o in manifest["outputs"]],
        "parity_max_abs_diff": manifest["parity"]["max_abs_diff"],
        "parity_lengths": manifest["parity"]["lengths"],
        "seconds": round(time.perf_counter() - start, 1),
    }
    if "quantization" in manifest:
        summary["int8_accuracy"] = manifest["quantization"]["accuracy"]
    print(json.dumps(summary))
    return 0
