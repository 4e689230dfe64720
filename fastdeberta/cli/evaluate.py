"""``fastdeberta evaluate``: the task's metrics of a fine-tuned model on a labelled file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import CliError
from .train import TASK_CHOICES, add_task_columns, task_options

HELP = "compute a fine-tuned model's metrics on a labelled data file"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help=HELP, description=HELP.capitalize() + ": accuracy and macro-F1 (classification), "
        "Pearson/Spearman (regression), entity precision/recall/F1 (token classification), exact match/F1 "
        "(question answering), accuracy (multiple choice). The task, columns and maximum length come from the "
        "folder's finetune.json unless given. Labels the model does not know are an error.")
    parser.add_argument("--model", "-m", required=True, help="fine-tuned model folder (a train --output)")
    parser.add_argument("--data", required=True, help="labelled data file, same format as for training")
    parser.add_argument("--output", "-o", default=None, help="also write the metrics to this JSON file")
    parser.add_argument("--task", choices=TASK_CHOICES, default=None,
                        help="task (default: from finetune.json or the model's config)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per batch (default 32)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per input (default: as trained)")
    add_task_columns(parser)
    parser.add_argument("--offline", action="store_true", help="never download; use a local folder or the cache")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON line")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..tasks.run import evaluate_file

    for name in ("batch_size", "max_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    options = task_options(args)             # the trained model's config decides the problem type
    metrics = evaluate_file(args.model, args.data, task_name=args.task, task_options=options,
                            max_length=args.max_length, batch_size=args.batch_size, output=args.output,
                            load_options={"local_files_only": bool(args.offline)})
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
    else:
        width = max(len(k) for k in metrics)
        for name, value in metrics.items():
            print(f"{name:<{width}}  {value:.4f}")
    return 0
