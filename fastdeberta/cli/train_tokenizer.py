"""``fastdeberta train-tokenizer``: train a SentencePiece vocabulary with DeBERTa's special tokens."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import CliError

HELP = "train a SentencePiece unigram vocabulary ([PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3 ... [MASK]) on text files"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-tokenizer", help=HELP, description=HELP[0].upper() + HELP[1:] + ". The output folder holds spm.model, "
        "tokenizer_config.json, special_tokens_map.json and added_tokens.json, loadable by "
        "fastdeberta.Tokenizer.from_pretrained and transformers' DebertaV2Tokenizer. Prints a JSON summary.",
    )
    parser.add_argument("--input", "-i", nargs="+", required=True,
                        help=".txt files (one sentence or paragraph per line; blank lines separate documents), "
                             ".jsonl files ({\"text\": ...} per line) or folders of them")
    parser.add_argument("--vocab-size", type=int, required=True,
                        help="ids in all, [MASK] included: the model's embedding size (e.g. 12288); "
                             "[MASK] gets id N-1")
    parser.add_argument("--output", "-o", required=True, help="output folder (replaced atomically if it exists)")
    parser.add_argument("--max-sentences", type=int, default=2_000_000,
                        help="train on a uniform random sample of this many lines, 0 for all (default 2000000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the line sample and of SentencePiece (default 0)")
    parser.add_argument("--model-max-length", type=int, default=512,
                        help="model_max_length written to tokenizer_config.json (default 512)")
    parser.add_argument("--character-coverage", type=float, default=0.9995,
                        help="share of characters the pieces must cover; rarer ones become [UNK] (default 0.9995)")
    parser.add_argument("--allow-smaller", action="store_true",
                        help="accept a smaller vocabulary when the text is too small for --vocab-size")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..pretraining.vocab import train_tokenizer

    if args.max_sentences < 0:
        raise CliError(f"--max-sentences must be 0 (all) or positive, got {args.max_sentences}")
    if not 0.0 < args.character_coverage <= 1.0:
        raise CliError(f"--character-coverage must be in (0, 1], got {args.character_coverage}")
    summary = train_tokenizer(
        args.input, args.output, args.vocab_size, max_sentences=args.max_sentences or None, seed=args.seed,
        model_max_length=args.model_max_length, exact_size=not args.allow_smaller,
        character_coverage=args.character_coverage,
    )
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
