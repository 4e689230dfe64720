"""Experiments with DeBERTa's disentangled attention: measured, on a trained model.

    python examples/attention_experiments.py --model PATH_OR_REPO_ID     # a masked-LM checkpoint
    python examples/attention_experiments.py --threads 1                 # trains a tiny one first (~10 minutes)

Questions answered, each over held-out sentences (text the model was not trained on when the script
trains it; with --model, sentences from this machine's gettext catalogs):

1. How much does each term (c2c, c2p, p2c) contribute to the attention scores, layer by layer?
   (share of the within-row score variance, ``fastdeberta.interpret.summaries.term_shares``)
2. Which heads are positional, and where do they look? (positional share >= 0.5, peak key offset,
   and how much more mass the peak holds than uniform attention would put there)
3. How does fill-mask accuracy change when a term is switched off at inference?
   (``fastdeberta.interpret.switch_off_terms``; the model is not retrained)
4. Which heads react to word order? (the same sentences with their words shuffled;
   ``order_sensitivity``: total variation distance of each head's attention, tokens aligned)

Without --model, the script trains a tiny DeBERTa-v3-style masked LM (the demo's architecture, with
the Enhanced Mask Decoder) on the gettext UI strings of this machine (--train-steps, at most
--train-seconds), holding out
--sentences of them for the measurements. Results are printed and written to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

import fastdeberta
from fastdeberta.demo import build_model, collect_corpus, train_sentencepiece
from fastdeberta.interpret import explain_attention, switch_off_terms
from fastdeberta.interpret.summaries import (
    distance_profile,
    key_offsets,
    order_sensitivity,
    positional_share,
    term_shares,
    uniform_distance_profile,
)
from fastdeberta.io import atomic_write_text

ABLATIONS = ([], ["c2c"], ["c2p"], ["p2c"], ["c2p", "p2c"])


def say(message: str = "") -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- the model
def train_tiny_model(out: Path, steps: int, seconds: float, held_out: int, seed: int):
    """Train the demo's tiny v3-style MLM on all but ``held_out`` corpus strings; returns (model, held-out texts)."""
    from fastdeberta.tokenizer import Tokenizer
    from fastdeberta.training import train_mlm

    corpus, source = collect_corpus()
    if len(corpus) < held_out + 1000:
        raise SystemExit(f"only {len(corpus)} strings found ({source}); need more than {held_out + 1000}")
    train, test = corpus[held_out:], corpus[:held_out]
    say(f"corpus: {source}: {len(train):,} training strings, {len(test)} held out")
    folder = out / "tiny-model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spm.model").write_bytes(train_sentencepiece(train, 4000, seed))
    tokenizer = Tokenizer.from_spm(folder / "spm.model", model_max_length=128)
    torch.manual_seed(seed)
    model = build_model(tokenizer.vocab_size, hidden=128, layers=4)
    model.tokenizer = tokenizer
    say(f"training a {model.num_parameters() / 1e6:.1f} M-parameter v3-style MLM for {steps} steps (at most {seconds:.0f} s) "
        f"on {torch.get_num_threads()} CPU threads ...")
    start = time.perf_counter()
    history = train_mlm(model, train, tokenizer=tokenizer, steps=steps, lr=1e-3, batch_size=32, max_length=32,
                        warmup=0.05, seed=seed, time_limit=seconds, progress=sys.stderr.isatty())
    first, last = history[:20], history[-20:]
    say(f"trained {len(history)} steps in {time.perf_counter() - start:.0f} s; loss "
        f"{sum(first) / len(first):.2f} (first {len(first)} steps) -> {sum(last) / len(last):.2f} (last {len(last)})")
    model.save_pretrained(folder)
    return model.eval(), test, {"trained_steps": len(history), "train_seconds": round(time.perf_counter() - start, 1),
                                "final_loss": round(sum(last) / len(last), 3), "corpus": source}


def load_model(reference: str, held_out: int):
    model = fastdeberta.from_pretrained(reference, task="masked-lm").eval()
    corpus, source = collect_corpus()
    return model, corpus[:held_out], {"model": reference, "corpus": source}


def batches(items: list[str], size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ----------------------------------------------------------------------------- 1 + 2: terms and positional heads
def term_contributions(model, texts: list[str]) -> dict:
    """Per layer and head: term shares and positional share, pooled over all texts; distance profiles."""
    totals: dict[int, dict[str, torch.Tensor]] = {}
    profiles: dict[int, torch.Tensor] = {}
    uniform = None
    weight = 0
    for chunk in batches(texts, 32):
        explanation = explain_attention(model, chunk)
        rows = int(explanation.attention_mask.sum())
        offsets = key_offsets(explanation)
        values, base = uniform_distance_profile(offsets, explanation.attention_mask)
        for number, layer in explanation.layers.items():
            shares = term_shares(layer, explanation.attention_mask)
            for name, share in shares.items():
                totals.setdefault(number, {}).setdefault(name, torch.zeros_like(share))
                totals[number][name] += share * rows                          # weight each batch by its rows
            _, mass = distance_profile(layer, offsets, explanation.attention_mask)
            profiles[number] = profiles.get(number, 0) + _on_offsets(values, mass, range(-8, 9)) * rows
        uniform = (uniform if uniform is not None else 0) + _on_offsets(values, base[None], range(-8, 9))[0] * rows
        weight += rows
    layers = {}
    for number, shares in totals.items():
        shares = {name: value / weight for name, value in shares.items()}
        layers[number] = {"shares": shares, "positional": positional_share(shares), "profile": profiles[number] / weight}
    return {"layers": layers, "uniform_profile": uniform / weight, "offsets": list(range(-8, 9))}


def _on_offsets(values: list[int], mass: torch.Tensor, wanted) -> torch.Tensor:
    """(H, K) mass over ``values`` -> (H, len(wanted)) over the offsets ``wanted`` (0 where absent)."""
    out = torch.zeros(mass.shape[0], len(wanted))
    for k, offset in enumerate(wanted):
        if offset in values:
            out[:, k] = mass[:, values.index(offset)]
    return out


# ----------------------------------------------------------------------------- 3: fill-mask with terms off
def masked_examples(tokenizer, texts: list[str], seed: int, rate: float = 0.15):
    """(input_ids, attention_mask, labels) with ``rate`` of the ordinary tokens replaced by [MASK]."""
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    chosen = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(seed)) < rate) & mask.bool() & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    return ids.masked_fill(chosen, tokenizer.mask_token_id), mask, labels


@torch.no_grad()
def fill_mask_accuracy(model, examples) -> dict[str, float]:
    ids, mask, labels = examples
    correct = total = 0
    loss = 0.0
    for start in range(0, ids.shape[0], 64):
        rows = slice(start, start + 64)
        out = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows])
        chosen = labels[rows] != -100
        correct += int((out.logits.argmax(-1)[chosen] == labels[rows][chosen]).sum())
        total += int(chosen.sum())
        loss += float(out.loss) * int(chosen.sum())
    return {"top1": correct / max(total, 1), "loss": loss / max(total, 1), "masked_tokens": total}


# ----------------------------------------------------------------------------- 4: word order
def shuffled(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(10):
        rng.shuffle(words)
        if " ".join(words) != text:
            break
    return " ".join(words)


def order_reaction(model, texts: list[str], seed: int) -> tuple[dict[int, torch.Tensor], int]:
    """Mean attention change per head (layer -> (H,)) between each text and its shuffled words."""
    rng = random.Random(seed)
    pairs = [(text, shuffled(text, rng)) for text in texts]
    pairs = [(a, b) for a, b in pairs if a != b]
    sums: dict[int, torch.Tensor] = {}
    used = 0
    for chunk in batches(pairs, 32):
        originals = explain_attention(model, [a for a, _ in chunk])
        reordered = explain_attention(model, [b for _, b in chunk])
        for i in range(len(chunk)):
            try:
                result = order_sensitivity(originals, reordered, index_first=i, index_second=i)
            except ValueError:                 # the two tokenizations share too few tokens: skip the pair
                continue
            for number, per in result["layers"].items():
                sums[number] = sums.get(number, 0) + per["attention"]
            used += 1
    return {number: value / max(used, 1) for number, value in sums.items()}, used


# ----------------------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="masked-LM checkpoint folder or Hub id (default: train a tiny one)")
    parser.add_argument("--out", default=".attention-experiments", help="output folder (default .attention-experiments)")
    parser.add_argument("--train-steps", type=int, default=1500, help="training steps without --model (default 1500)")
    parser.add_argument("--train-seconds", type=float, default=900.0,
                        help="stop training after this many seconds even if fewer steps were taken (default 900)")
    parser.add_argument("--sentences", type=int, default=300, help="held-out sentences measured (default 300)")
    parser.add_argument("--order-sentences", type=int, default=100, help="sentences shuffled for question 4 (default 100)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; on a busy machine 1 can be several times faster)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        model, texts, about = load_model(args.model, args.sentences)
    else:
        model, texts, about = train_tiny_model(out, args.train_steps, args.train_seconds, args.sentences, args.seed)
    about["cpu_threads"] = torch.get_num_threads()
    texts = [t for t in texts if len(t.split()) >= 3]
    config = model.config
    say(f"model: {config.num_hidden_layers} layers x {config.num_attention_heads} heads, terms "
        f"{', '.join(config.attention_terms) if config.relative_attention else 'none'}; {len(texts)} held-out sentences")

    say("\n1. share of the score variance (within each query row) per term, mean over heads")
    contributions = term_contributions(model, texts)
    say("   layer   " + "".join(f"{name:>8}" for name in contributions["layers"][0]["shares"]) + "   positional")
    for number, layer in contributions["layers"].items():
        say(f"   {number:>5}   " + "".join(f"{float(s.mean()):8.3f}" for s in layer["shares"].values())
            + f"   {float(layer['positional'].mean()):10.3f}")

    say("\n2. positional heads (positional share >= 0.5): peak key offset, mass there vs uniform attention")
    offsets, uniform = contributions["offsets"], contributions["uniform_profile"]
    positional = []
    for number, layer in contributions["layers"].items():
        for head, share in enumerate(layer["positional"].tolist()):
            profile = layer["profile"][head]
            peak = int(profile.argmax())
            lift = float(profile[peak] / uniform[peak].clamp_min(1e-9))
            row = {"layer": number, "head": head, "positional_share": round(share, 3), "peak_offset": offsets[peak],
                   "peak_mass": round(float(profile[peak]), 3), "lift_over_uniform": round(lift, 2)}
            if share >= 0.5:
                positional.append(row)
                say(f"   layer {number} head {head}: share {share:.2f}, peak at offset {offsets[peak]:+d} "
                    f"with {float(profile[peak]):.2f} of the mass ({lift:.1f}x uniform)")
    if not positional:
        say("   none")

    say("\n3. fill-mask top-1 accuracy on 15% masked tokens of the held-out sentences, terms switched off")
    examples = masked_examples(model.tokenizer, texts, args.seed)
    ablations = {}
    for off in ABLATIONS:
        name = "none (full model)" if not off else " + ".join(off) + " off"
        with switch_off_terms(model, off):
            ablations[name] = fill_mask_accuracy(model, examples)
        result = ablations[name]
        say(f"   {name:<20} top-1 {result['top1']:.3f}   loss {result['loss']:.3f}   ({result['masked_tokens']} tokens)")

    say("\n4. reaction to word order: attention change per head (total variation, tokens aligned), words shuffled")
    reaction, used = order_reaction(model, texts[:args.order_sentences], args.seed)
    for number, per_head in reaction.items():
        say(f"   layer {number}: " + "  ".join(f"h{h} {v:.3f}" for h, v in enumerate(per_head.tolist())))
    say(f"   ({used} sentences)")

    results = {
        "about": about, "sentences": len(texts),
        "term_shares": {str(n): {name: [round(x, 4) for x in s.tolist()] for name, s in layer["shares"].items()}
                        for n, layer in contributions["layers"].items()},
        "positional_heads": positional, "fill_mask": ablations,
        "order_reaction": {str(n): [round(x, 4) for x in v.tolist()] for n, v in reaction.items()},
        "order_sentences": used,
    }
    path = atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    say(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
