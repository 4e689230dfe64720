"""``fastdeberta train``: fine-tune a task head on a CSV / TSV / JSONL / Parquet / CoNLL / SQuAD file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import CliError

HELP = "fine-tune a model (classification, NER, question answering, multiple choice) on a data file"
TASK_CHOICES = ("sequence-classification", "token-classification", "question-answering", "multiple-choice")


def add_task_columns(parser: argparse.ArgumentParser) -> None:
    """Column options shared by train / evaluate / predict."""
    group = parser.add_argument_group("data columns")
    group.add_argument("--text-column", default=None, help="classification: column holding the text (default: text)")
    group.add_argument("--text-pair-column", default=None,
                       help="classification: column holding the second text of a pair (default: text_pair, if present)")
    group.add_argument("--label-column", default=None,
                       help="classification / multiple choice: column holding the label (default: label)")
    group.add_argument("--tokens-column", default=None, help="token classification JSONL: field with the words "
                       "(default: tokens)")
    group.add_argument("--tags-column", default=None, help="token classification JSONL: field with one tag per word "
                       "(default: tags)")
    group.add_argument("--question-column", default=None, help="multiple choice: column holding the question "
                       "(default: question)")
    group.add_argument("--choices-column", default=None, help="multiple choice: column holding a list of choices "
                       "(default: choices)")
    group.add_argument("--choice-columns", default=None,
                       help="multiple choice: comma-separated columns, one choice each (instead of a list column)")


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    """The column / task options given on the command line (None where not given)."""
    names = {"text_column": "text_column", "text_pair_column": "text_pair_column", "label_column": "label_column",
             "tokens_column": "tokens_column", "tags_column": "tags_column", "question_column": "question_column",
             "choices_column": "choices_column"}
    options = {key: getattr(args, attr, None) for key, attr in names.items()}
    if getattr(args, "choice_columns", None):
        options["choice_columns"] = [c.strip() for c in args.choice_columns.split(",") if c.strip()]
    for key in ("problem_type", "doc_stride", "max_answer_len"):
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    if getattr(args, "label_all_tokens", False):
        options["label_all_tokens"] = True
    return {k: v for k, v in options.items() if v is not None}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help=HELP, description=HELP.capitalize() + ". Data: .csv/.tsv/.jsonl/.parquet (classification, "
        "multiple choice), .jsonl with tokens+tags or CoNLL (token classification), SQuAD .json/.jsonl "
        "(question answering). Writes checkpoints, metrics.jsonl and the final model (best on --eval when given) "
        "into --output; --resume continues a killed run exactly. Data parallel: the same command under torchrun "
        "(`torchrun --nproc-per-node N -m fastdeberta train ...`).")
    parser.add_argument("--task", required=True, choices=TASK_CHOICES, help="what to train")
    parser.add_argument("--model", "-m", required=True,
                        help="pretrained checkpoint folder or Hub repo id (its tokenizer files are needed)")
    parser.add_argument("--train", required=True, help="training data file")
    parser.add_argument("--eval", default=None, help="evaluation data file (evaluated every --eval-every steps or "
                        "each epoch; the best model by the task's metric is kept)")
    parser.add_argument("--output", "-o", required=True, help="output folder")
    parser.add_argument("--epochs", type=float, default=3.0, help="training epochs (default 3)")
    parser.add_argument("--max-steps", type=int, default=-1, help="optimizer steps; overrides --epochs when > 0")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per batch, per process under torchrun (default 16)")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    parser.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (default 2e-5; LoRA: try 5e-4)")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    parser.add_argument("--warmup-ratio", type=float, default=0.06, help="warmup fraction of the steps (default 0.06)")
    parser.add_argument("--scheduler", choices=["linear", "cosine", "constant"], default="linear",
                        help="learning-rate decay after warmup (default linear)")
    parser.add_argument("--layerwise-lr-decay", type=float, default=1.0,
                        help="< 1: lower layers get lr * decay**depth (default 1: off)")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm (0: off; default 1)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: bf16 autocast where the hardware has it, else fp32 (default auto)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per input (default 256; question answering 384; capped by the model)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (data order, dropout, new head)")
    parser.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (default 0: each epoch)")
    parser.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (default 0: each epoch)")
    parser.add_argument("--save-total-limit", type=int, default=2, help="checkpoints kept (default 2; best kept too)")
    parser.add_argument("--logging-steps", type=int, default=10, help="metrics.jsonl line every N steps (default 10)")
    parser.add_argument("--early-stopping", type=int, default=0,
                        help="stop after N evaluations without improvement (default 0: never)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --output")
    parser.add_argument("--problem-type", default=None,
                        choices=["single_label_classification", "multi_label_classification", "regression"],
                        help="classification kind (default: from the labels: lists -> multi-label, fractional "
                             "numbers -> regression, else single label)")
    parser.add_argument("--label-all-tokens", action="store_true",
                        help="token classification: label every sub-token (default: the first of each word only)")
    parser.add_argument("--doc-stride", type=int, default=None,
                        help="question answering: overlap in tokens between context windows (default 128)")
    parser.add_argument("--max-answer-len", type=int, default=None,
                        help="question answering: longest answer in tokens at evaluation (default 30)")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--lora", action="store_true", help="train LoRA adapters + the head only")
    lora.add_argument("--lora-r", type=int, default=8, help="adapter rank (default 8)")
    lora.add_argument("--lora-alpha", type=float, default=16.0, help="adapter scale numerator (default 16)")
    lora.add_argument("--lora-dropout", type=float, default=0.0, help="dropout on the adapter input (default 0)")
    lora.add_argument("--lora-targets", default="query_proj,value_proj",
                      help="comma-separated linear layer names (default query_proj,value_proj)")
    add_task_columns(parser)
    parser.add_argument("--offline", action="store_true", help="never download; use a local folder or the cache")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.set_defaults(run=run)
    return parser


def _check_numbers(args: argparse.Namespace) -> None:
    positive = {"--batch-size": args.batch_size, "--grad-accum": args.grad_accum, "--lora-r": args.lora_r}
    if args.max_length is not None:
        positive["--max-length"] = args.max_length
    for name, value in positive.items():
        if value < 1:
            raise CliError(f"{name} must be at least 1, got {value}")
    for name, value in {"--eval-every": args.eval_every, "--save-every": args.save_every}.items():
        if value < 0:
            raise CliError(f"{name} must be 0 (each epoch) or a positive number of steps, got {value}")
    if args.lr <= 0:
        raise CliError(f"--lr must be positive, got {args.lr}")
    if args.epochs <= 0 and args.max_steps <= 0:
        raise CliError(f"--epochs must be positive (or give --max-steps), got {args.epochs}")


def run(args: argparse.Namespace) -> int:
    from ..training.distributed import launched

    _check_numbers(args)
    lora = None
    if args.lora:
        from ..training.lora import LoraConfig

        lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                          target_modules=[t.strip() for t in args.lora_targets.split(",") if t.strip()])
    with launched() as (ctx, _):                        # torchrun: one process of a data-parallel job
        result = _finetune(args, lora)
    if not ctx.main:
        return 0
    summary = {"output": str(result.model_dir), "steps": result.global_step, "train_loss": result.train_loss,
               "metrics": result.metrics, "best_metric": result.best_metric, "best_step": result.best_step}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"trained {result.global_step} steps, mean loss {result.train_loss:.4f}; model in {result.model_dir}")
        for name, value in result.metrics.items():
            print(f"  eval {name}: {value:.4f}")
    return 0


def _finetune(args: argparse.Namespace, lora: Any) -> Any:
    from ..tasks.run import finetune

    return finetune(
        args.task, args.model, args.train, args.output, eval_file=args.eval, task_options=task_options(args),
        max_length=args.max_length, lora=lora, resume=args.resume,
        log=lambda message: print(message, file=sys.stderr),
        load_options={"local_files_only": bool(args.offline)},
        learning_rate=args.lr, num_train_epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
        lr_scheduler_type=args.scheduler, layerwise_lr_decay=args.layerwise_lr_decay,
        max_grad_norm=args.max_grad_norm, precision=args.precision, seed=args.seed, eval_steps=args.eval_every,
        save_steps=args.save_every, save_total_limit=args.save_total_limit, logging_steps=args.logging_steps,
        early_stopping_patience=args.early_stopping, progress=not args.no_progress,
    )
