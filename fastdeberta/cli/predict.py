"""``fastdeberta predict``: run a fine-tuned model over a file; one JSON line per input record."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import CliError
from .train import TASK_CHOICES, add_task_columns, task_options

HELP = "predict with a fine-tuned model: one JSON line per input record, in input order"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict", help=HELP, description=HELP.capitalize() + ", in the formats of transformers' pipelines: "
        "{label, score} (classification), a list of {entity_group, score, word, start, end} (token "
        "classification), {id, score, start, end, answer} (question answering), {label, score, scores} "
        "(multiple choice). Labels in the input, if any, are ignored.")
    parser.add_argument("--model", "-m", required=True, help="fine-tuned model folder (a train --output)")
    parser.add_argument("--input", "-i", required=True, help="input data file (same formats as for training)")
    parser.add_argument("--output", "-o", required=True, help="output .jsonl file")
    parser.add_argument("--task", choices=TASK_CHOICES, default=None,
                        help="task (default: from finetune.json or the model's config)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per batch (default 32)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per input (default: as trained)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="classification: the k best labels as a list (default: the best one as a dict); "
                             "question answering: the k best answers")
    parser.add_argument("--function-to-apply", choices=["softmax", "sigmoid", "none"], default=None,
                        help="classification scores (default: softmax, sigmoid for multi-label, none for regression)")
    parser.add_argument("--aggregation-strategy", choices=["none", "simple", "first", "average", "max"],
                        default="first", help="token classification: how tokens form entities (default first: "
                        "each word takes its first sub-token's tag, as the model was trained; simple groups raw tokens)")
    parser.add_argument("--stride", type=int, default=None,
                        help="token classification: read texts longer than --max-length in windows overlapping by "
                             "this many tokens (default: truncate)")
    parser.add_argument("--handle-impossible-answer", action="store_true",
                        help="question answering: allow the empty answer (SQuAD v2 models)")
    add_task_columns(parser)
    parser.add_argument("--offline", action="store_true", help="never download; use a local folder or the cache")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..tasks.run import predict_file

    for name in ("batch_size", "max_length", "top_k"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not args.output.endswith(".jsonl"):
        raise CliError(f"--output must be a .jsonl file, got {args.output!r}")
    options = {"top_k": args.top_k if args.top_k is not None else "legacy", "function_to_apply": args.function_to_apply,
               "aggregation_strategy": args.aggregation_strategy, "stride": args.stride,
               "handle_impossible_answer": args.handle_impossible_answer}
    count = predict_file(args.model, args.input, args.output, task_name=args.task, task_options=task_options(args),
                         max_length=args.max_length, batch_size=args.batch_size, pipeline_options=options,
                         load_options={"local_files_only": bool(args.offline)})
    print(json.dumps({"count": count, "output": args.output}), file=sys.stdout)
    return 0
