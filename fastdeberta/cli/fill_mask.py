"""``fastdeberta fill-mask``: predict the words behind [MASK] tokens."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import TOKENIZER_HINT, CliError, add_model_arguments, add_runtime_arguments, load_kwargs

HELP = "predict masked words (write the mask token, usually [MASK], in each TEXT)"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "fill-mask", help=HELP, description=HELP.capitalize() + ".",
        epilog='--json prints a list with one object per TEXT: {"text": ..., "masks": [[{"score", "token", '
               '"token_str", "sequence"}, ...] one list per mask]}. '
               'Example: fastdeberta fill-mask --model microsoft/deberta-v3-base "Paris is the [MASK] of France."',
    )
    parser.add_argument("texts", metavar="TEXT", nargs="+", help="text(s) containing the mask token")
    add_model_arguments(parser, tokenizer=True)
    parser.add_argument("--top-k", type=int, default=5, help="predictions per mask (default 5)")
    parser.add_argument("--targets", default=None,
                        help="comma-separated candidate words to score instead of the whole vocabulary")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    add_runtime_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def _per_mask(result: list) -> list[list[dict]]:
    """One text's pipeline result as a list per mask (the pipeline flattens single-mask results)."""
    return [result] if result and isinstance(result[0], dict) else result


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CliError(f"--top-k must be at least 1, got {args.top_k}")
    from ..checkpoint import TokenizerLoadError
    from ..inference.pipelines import pipeline

    try:
        fm = pipeline("fill-mask", model=args.model, tokenizer=args.tokenizer, device=args.device,
                      dtype=args.dtype, **load_kwargs(args))
    except TokenizerLoadError as err:
        raise err.with_hint(TOKENIZER_HINT) from err.cause
    mask = fm.tokenizer.mask_token
    for text in args.texts:  # check every text before running any
        if mask not in text:
            raise CliError(f"no mask token in {text!r}; write {mask} where a word should be predicted")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else None
    results = fm(list(args.texts), top_k=args.top_k, targets=targets)
    documents = [{"text": text, "masks": _per_mask(result)} for text, result in zip(args.texts, results)]
    if args.json:
        json.dump(documents, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    for n, doc in enumerate(documents):
        if n:
            print()
        print(f"text: {doc['text']}")
        for m, predictions in enumerate(doc["masks"]):
            if len(doc["masks"]) > 1:
                print(f"  mask {m + 1} of {len(doc['masks'])}")
            width = max([len(p["token_str"]) for p in predictions] + [5])
            print(f"  {'rank':>4}  {'score':>8}  {'token':<{width}}  sequence")
            for rank, p in enumerate(predictions, 1):
                print(f"  {rank:>4}  {p['score']:>8.4f}  {p['token_str']:<{width}}  {p['sequence']}")
    return 0
