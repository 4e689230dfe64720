"""``fastdeberta attention``: see a checkpoint's attention split into content and position terms.

Writes into --output: the term heatmaps of one layer/head, the layer x head grid of positional
shares, the distance profiles (PNGs), the summaries (summary.json) and the interactive page
(attention.html); prints a one-line JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .common import TOKENIZER_HINT, CliError, add_model_arguments, add_runtime_arguments, load_kwargs

HELP = "split each head's attention into content and position terms: PNGs, summary JSON and an HTML page"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "attention", help=HELP, description="Split each head's attention into content and position terms: PNGs, "
        "a summary JSON and an interactive HTML page. DeBERTa's score is c2c (content to content) + "
        "c2p (content to position) + p2c (position to content); this shows each term per layer and head, which "
        "heads attend by position, where attention goes by distance, and (with --compare) which heads react to "
        "word order. Open OUTPUT/attention.html in a browser (it needs no network).",
    )
    add_model_arguments(parser, tokenizer=True)
    parser.add_argument("--text", "-t", required=True, help="the text to explain")
    parser.add_argument("--compare", default=None,
                        help="a second text with the same words in another order: adds order sensitivity per head")
    parser.add_argument("--layer", type=int, default=0,
                        help="layer of the term heatmaps (default 0; negative counts from the end)")
    parser.add_argument("--head", type=int, default=0, help="head of the term heatmaps (default 0)")
    parser.add_argument("--output", "-o", required=True, help="output folder (created if missing)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="refuse texts longer than this many tokens (default: the model's maximum)")
    add_runtime_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    for name in ("text", "compare"):
        value = getattr(args, name)
        if value is not None and not value.strip():
            raise CliError(f"--{name} is empty; give the text to explain, e.g. --{name} \"The cat sat on the mat.\"")
    if args.max_length is not None and args.max_length < 3:
        raise CliError(f"--max-length must be at least 3 ([CLS], one token, [SEP]), got {args.max_length}")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise CliError(f"--output {output} is a file; give a folder")


def _check_head(config: Any, layer: int, head: int) -> None:
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    if not -layers <= layer < layers:
        raise CliError(f"--layer {layer} is out of range: this model has {layers} layers (0 ... {layers - 1}, "
                       "or -1 for the last)")
    if not 0 <= head < heads:
        raise CliError(f"--head {head} is out of range: this model has {heads} heads per layer (0 ... {heads - 1})")


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    from ..checkpoint import TokenizerLoadError, load_model
    from ..interpret import explain_attention
    from ..interpret.page import write_page
    from ..interpret.plots import plot_distance_profiles, plot_positional_grid, plot_terms
    from ..interpret.summaries import summarize
    from ..io import atomic_write_text

    start = time.perf_counter()
    try:
        model = load_model(args.model, task="base", dtype=args.dtype, device=args.device,
                           load_tokenizer=args.tokenizer is None, **load_kwargs(args))
    except TokenizerLoadError as err:
        raise err.with_hint(TOKENIZER_HINT) from err.cause
    _check_head(model.config, args.layer, args.head)
    tokenizer = None
    if args.tokenizer is not None:
        from ..tokenizer import Tokenizer

        tokenizer = Tokenizer.from_pretrained(args.tokenizer, **load_kwargs(args))

    explanation = explain_attention(model, args.text, tokenizer, max_length=args.max_length)
    compare = (explain_attention(model, args.compare, tokenizer, max_length=args.max_length)
               if args.compare is not None else None)
    summary = summarize(explanation, compare)
    summary["model"]["name"] = str(args.model)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    layer = args.layer % model.config.num_hidden_layers
    files = {
        "summary": atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n"),
        "terms": plot_terms(explanation, layer, args.head, out / f"terms_layer{layer}_head{args.head}.png"),
        "positional_grid": plot_positional_grid(summary, out / "positional_grid.png"),
        "distance_profiles": plot_distance_profiles(summary, out / "distance_profiles.png"),
        "page": write_page(explanation, out / "attention.html", title=str(args.model)),
    }
    report = {
        "tokens": len(explanation.tokens[0]), "layers": explanation.num_layers, "heads": explanation.num_heads,
        "terms": list(explanation.term_names),
        "mean_share": {name: round(sum(layer_["mean_share"][name] for layer_ in summary["layers"])
                                   / len(summary["layers"]), 4) for name in explanation.term_names},
        "positional_heads": len(summary["positional_heads"]),
        "files": {name: str(path) for name, path in files.items()},
        "seconds": round(time.perf_counter() - start, 3),
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0
