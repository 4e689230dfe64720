"""``fastdeberta pretrain``: pretrain a DeBERTa from raw text (MLM with the EMD, or RTD + GDES)."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "pretrain from raw text: masked LM with the Enhanced Mask Decoder, or DeBERTa-v3's RTD with GDES"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("pretrain", help=HELP, description=HELP.capitalize() + ". Checkpoints are "
                                   "written atomically to OUTPUT/checkpoint-STEP and --resume continues exactly. Data parallel: run the "
                                   "same command under torchrun (e.g. `torchrun --standalone --nproc-per-node 2 -m "
                                   "fastdeberta pretrain ...`); --batch-size is then per process and only rank 0 "
                                   "writes OUTPUT.")
    parser.add_argument("--objective", choices=["mlm", "rtd"], default="rtd",
                        help="mlm: masked LM through the EMD; rtd: generator + replaced-token-detection "
                             "discriminator (default)")
    parser.add_argument("--config", default="deberta-v3-xsmall",
                        help="size preset (deberta-v3-xsmall/-small/-base/-large) or a config.json path; the "
                             "vocabulary size and special ids come from the tokenizer")
    parser.add_argument("--tokenizer", required=True, help="folder with spm.model (see train-tokenizer)")
    parser.add_argument("--corpus", required=True, nargs="+",
                        help="text files or folders (one document per blank-line-separated block, or .jsonl "
                             "with a 'text' field), or one packed .npy file")
    parser.add_argument("--valid", nargs="+", default=None,
                        help="held-out text files or packed .npy (default: hold out --valid-fraction of the "
                             "corpus documents)")
    parser.add_argument("--output", required=True, help="run folder: checkpoints, metrics.jsonl, final model")
    data = parser.add_argument_group("data and masking")
    data.add_argument("--seq-length", type=int, default=128, help="tokens per packed sequence (default 128)")
    data.add_argument("--valid-fraction", type=float, default=0.01, help="documents held out (default 0.01)")
    data.add_argument("--masking", choices=["token", "whole_word", "span"], default="token",
                      help="what is selected for prediction (default token)")
    data.add_argument("--mask-probability", type=float, default=0.15, help="share selected (default 0.15)")
    data.add_argument("--max-span", type=int, default=3, help="longest n-gram for --masking span (default 3)")
    rtd = parser.add_argument_group("replaced token detection")
    rtd.add_argument("--generator-layers", type=int, default=None,
                     help="generator depth (default: half the discriminator's)")
    rtd.add_argument("--embedding-sharing", choices=["gdes", "es", "none"], default="gdes",
                     help="gdes: gradient-disentangled (default); es: plain ELECTRA sharing; none")
    rtd.add_argument("--rtd-lambda", type=float, default=50.0,
                     help="weight of the RTD loss (paper: 50, default; original code recipes: 10)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=int, default=10000, help="optimizer steps (default 10000)")
    opt.add_argument("--batch-size", type=int, default=32, help="sequences per micro-batch, per process under torchrun (default 32)")
    opt.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    opt.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    opt.add_argument("--warmup", type=float, default=0.06,
                     help="warmup: a fraction of --steps if < 1, else a number of steps (default 0.06)")
    opt.add_argument("--schedule", choices=["linear", "cosine", "constant"], default="linear",
                     help="decay after warmup (default linear)")
    opt.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    opt.add_argument("--max-grad-norm", type=float, default=1.0, help="clip gradients (0: off; default 1.0)")
    opt.add_argument("--dropout", type=float, default=None,
                     help="rate of every dropout while pretraining, e.g. 0 for a model that underfits its "
                          "corpus; the saved config.json keeps the config's rates, the ones fine-tuning starts "
                          "from; pass the same value again with --resume (default: the config's rates)")
    opt.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                     help="auto: bf16 autocast where the CPU/GPU has native bf16, else fp32 (default)")
    opt.add_argument("--seed", type=int, default=42, help="seed for weights, data order and masking")
    run = parser.add_argument_group("run")
    run.add_argument("--eval-every", type=int, default=500, help="evaluate every N steps (default 500)")
    run.add_argument("--eval-sequences", type=int, default=256, help="held-out sequences per evaluation")
    run.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps (default 500)")
    run.add_argument("--log-every", type=int, default=10, help="write metrics every N steps (default 10)")
    run.add_argument("--keep", type=int, default=2, help="newest checkpoints kept (default 2)")
    run.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    run.add_argument("--init-from", default=None,
                     help="start from saved weights instead of random ones (rtd: a folder with generator/ and "
                          "discriminator/, e.g. the shipped model; mlm: a masked-LM folder); the step count, "
                          "optimizer and schedule start anew")
    run.add_argument("--device", default="cpu", help="torch device (default cpu)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(run=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    from ..pretraining.run import PretrainArguments, pretrain
    from ..training import TrainingArguments
    from ..training.distributed import launched

    warmup_steps = int(args.warmup) if args.warmup >= 1 else 0
    training = TrainingArguments(
        output_dir=args.output, learning_rate=args.lr, max_steps=args.steps, batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, weight_decay=args.weight_decay, adam_beta2=0.98,
        lr_scheduler_type=args.schedule, warmup_ratio=args.warmup if args.warmup < 1 else 0.0,
        warmup_steps=warmup_steps, max_grad_norm=args.max_grad_norm, precision=args.precision, seed=args.seed,
        logging_steps=args.log_every, eval_steps=args.eval_every, save_steps=args.save_every,
        save_total_limit=args.keep, progress=not args.no_progress)
    options = PretrainArguments(
        objective=args.objective, config=args.config, generator_layers=args.generator_layers,
        embedding_sharing=args.embedding_sharing, rtd_lambda=args.rtd_lambda, masking=args.masking,
        mask_probability=args.mask_probability, max_span=args.max_span, seq_length=args.seq_length,
        valid_fraction=args.valid_fraction, eval_sequences=args.eval_sequences,
        dropout=args.dropout)
    with launched(args.device) as (ctx, device):         # torchrun: one process of a data-parallel job
        result = pretrain(options, training, tokenizer_dir=args.tokenizer, corpus=args.corpus, valid=args.valid,
                          resume=args.resume, device=device, init_from=args.init_from)
    if not ctx.main:
        return 0
    summary = {"steps": result.global_step, "train_loss": result.train_loss, "metrics": result.metrics,
               "output": str(result.model_dir)}
    print(json.dumps(summary, indent=None if args.json else 2))
    return 0
