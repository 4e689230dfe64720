"""End-to-end demo, fully offline: ``python -m fastdeberta.demo [--out .demo]`` (``make demo``).

On the model shipped inside the package (``fastdeberta/deberta-v3-tiny-en``: a small DeBERTa-v3
pretrained by this project with RTD + GDES on open English text, see its model card):

1. ``fastdeberta info`` on it;
2. fill-mask with its generator (Enhanced Mask Decoder) on simple sentences and on sentences from documents held out of its
   training, showing whether the word that was there is among the top 5;
3. sentence embeddings from its discriminator: a cosine-similarity table of paraphrases;
4. its disentangled attention: how much of each layer's attention scores comes from content (c2c)
   and from relative position (c2p, p2c), and the interactive page ``fastdeberta attention`` writes.

``--train-tiny`` instead trains a tiny masked LM from scratch on this machine's gettext UI strings for a
few minutes and uses that (the toolkit's training path end to end, with no shipped weights involved).
"""

from __future__ import annotations

import argparse
import gettext
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

LOCALE_GLOB = "/usr/share/locale/*/LC_MESSAGES/*.mo"
LICENSE_GLOB = "/usr/share/common-licenses/*"

FILL_MASK_EXAMPLES = [
    "The file could not be [MASK].",
    "Do you want to [MASK] the changes?",
    "Unable to open [MASK] file",
    "Are you sure you want to [MASK] this folder?",
    "Not enough [MASK] space on the device",
]
EMBED_EXAMPLES = [
    "Could not open the file",
    "Unable to open file",
    "Save changes before closing?",
    "Do you want to save the changes?",
    "Show hidden files",
    "Display hidden files and folders",
]

# %s, %d, %-10s, %1$s, %lu, %pB, %(name)s, {0}, {name}
_FORMAT_RE = re.compile(r"%(?:\([^)]*\))?(?:\d+\$)?[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|L|z|j|t|p[A-Za-z])?"
                        r"[diouxXeEfFgGcrsaAn%]|\{[\w.]*\}")
_TAG_RE = re.compile(r"</?[A-Za-z][^>]*>")
_MNEMONIC_RE = re.compile(r"(?<![\w])_(?=\w)")
_OPTION_RE = re.compile(r"^\s*-{1,2}\S.*?\s{2,}")     # "  -s, --stats   show statistics" -> "show statistics"
_SPACE_RE = re.compile(r"\s+")


def say(msg: str = "") -> None:
    print(msg, flush=True)


_SECTIONS = [0]


def section(title: str, numbered: bool = True) -> None:
    """A heading; numbered ones count up in the order printed (the two demo paths show different parts)."""
    if numbered:
        _SECTIONS[0] += 1
        title = f"{_SECTIONS[0]}. {title}"
    say()
    say(f"== {title} " + "=" * max(0, 72 - len(title)))


# ----------------------------------------------------------------------------------- corpus
def clean_line(line: str) -> str | None:
    """One UI string, normalised for training; None if it is not a 3+ word English phrase."""
    line = _OPTION_RE.sub("", line)
    line = _TAG_RE.sub(" ", line)
    line = _FORMAT_RE.sub(" ", line)
    line = _MNEMONIC_RE.sub("", line).replace("&&", "&")
    line = _SPACE_RE.sub(" ", line).strip(" \t:")
    if len(line) < 10 or len(line) > 300:
        return None
    words = re.findall(r"[A-Za-z]{2,}", line)
    if len(words) < 3:
        return None
    ascii_letters = sum(c.isascii() and c.isalpha() for c in line)
    if ascii_letters < 0.6 * len(line):                # code, tables, paths, non-English sources
        return None
    return line


def catalog_msgids(path: str) -> list[str]:
    try:
        with open(path, "rb") as fh:
            catalog = gettext.GNUTranslations(fh)._catalog
    except Exception:                                  # broken or unsupported catalog: skip it
        return []
    out = []
    for key in catalog:
        msgid = key[0] if isinstance(key, tuple) else key        # plural forms: (msgid, n)
        if isinstance(msgid, str) and msgid:
            out.append(msgid.split("\x04", 1)[-1])               # drop a msgctxt prefix
    return out


def collect_corpus() -> tuple[list[str], str]:
    """Deduplicated English sentences from gettext catalogs (or, failing that, license texts)."""
    files = sorted(glob.glob(LOCALE_GLOB))
    raw: set[str] = set()
    for path in files:
        raw.update(catalog_msgids(path))
    source = f"msgids of {len(files)} gettext catalogs ({LOCALE_GLOB})"
    if not raw:
        licenses = sorted(p for p in glob.glob(LICENSE_GLOB) if os.path.isfile(p))
        for path in licenses:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
            raw.update(re.split(r"(?<=[.;:])\s+|\n\s*\n", text))
        source = (f"NO gettext catalogs found; fell back to {len(licenses)} license texts "
                  f"({LICENSE_GLOB})")
    lines: set[str] = set()
    for text in raw:
        for part in text.splitlines():
            cleaned = clean_line(part)
            if cleaned:
                lines.add(cleaned)
    corpus = sorted(lines)
    random.Random(0).shuffle(corpus)
    return corpus, source


# -------------------------------------------------------------------------------- tokenizer
def train_sentencepiece(texts: list[str], vocab_size: int, seed: int = 0) -> bytes:
    """A unigram spm.model of up to ``vocab_size`` pieces with DeBERTa's specials (smaller if the text is)."""
    from fastdeberta.pretraining.vocab import train_sentencepiece as train

    return train(texts, vocab_size, seed=seed, exact_size=False)


# ------------------------------------------------------------------------------------ model
def build_model(vocab_size: int, hidden: int, layers: int):
    from fastdeberta import DebertaForMaskedLM, preset_config

    config = preset_config(
        "deberta-v3-xsmall",
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        max_position_embeddings=128,
        position_buckets=64,
    )
    # position_biased_input=False + relative_attention=True: the Enhanced Mask Decoder is used
    return DebertaForMaskedLM(config, enhanced_mask_decoder=True)


def train_demo_model(out: Path, steps: int, seed: int, time_limit: float | None = None) -> float:
    from fastdeberta.tokenizer import Tokenizer
    from fastdeberta.training import train_mlm

    section("training text")
    t0 = time.perf_counter()
    corpus, source = collect_corpus()
    if not corpus:
        raise SystemExit("no training text found on this machine (no gettext catalogs, no license texts)")
    words = sum(len(t.split()) for t in corpus)
    say(f"source: {source}")
    say(f"{len(corpus):,} distinct strings, {words:,} words ({time.perf_counter() - t0:.1f} s). Samples:")
    for text in corpus[:5]:
        say(f"  - {text[:100]}")

    section("SentencePiece vocabulary")
    t0 = time.perf_counter()
    spm_vocab = 4000 if len(corpus) > 5000 else 1000
    proto = train_sentencepiece(corpus, spm_vocab, seed)
    model_dir = out / "model"
    staging = out / "model.partial"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "spm.model").write_bytes(proto)
    tokenizer = Tokenizer.from_spm(staging / "spm.model", model_max_length=128)
    say(f"unigram model, {tokenizer.vocab_size - 1} pieces + [MASK] = {tokenizer.vocab_size} ids "
        f"({time.perf_counter() - t0:.1f} s); [MASK] id {tokenizer.mask_token_id}")
    say(f"  'Unable to open the file' -> {tokenizer.tokenize('Unable to open the file')}")

    section("tiny DeBERTa-v3 masked LM")
    torch.manual_seed(seed)
    model = build_model(tokenizer.vocab_size, hidden=128, layers=4)
    model.tokenizer = tokenizer
    cfg = model.config
    say(f"{model.num_parameters() / 1e6:.2f} M parameters: hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, "
        f"{cfg.num_attention_heads} heads, vocab {cfg.vocab_size}, position buckets {cfg.position_buckets}, "
        f"Enhanced Mask Decoder: {model.enhanced_mask_decoder}")
    say(f"training {steps} steps of 64 strings (masked LM, 15% masking, AdamW, lr 1e-3) "
        f"on {torch.get_num_threads()} CPU threads ...")
    t0 = time.perf_counter()
    history = train_mlm(model, corpus, tokenizer=tokenizer, steps=steps, lr=1e-3, batch_size=64,
                        max_length=48, warmup=0.05, seed=seed, log_every=max(1, steps // 8), time_limit=time_limit,
                        progress=sys.stderr.isatty())
    seconds = time.perf_counter() - t0
    first = sum(history[:20]) / max(1, len(history[:20]))
    last = sum(history[-20:]) / max(1, len(history[-20:]))
    say(f"trained in {seconds:.0f} s; loss {first:.2f} (first 20 steps) -> {last:.2f} (last 20 steps)")

    model.save_pretrained(staging)
    (staging / "demo_training.json").write_text(json.dumps({
        "source": source, "strings": len(corpus), "steps": len(history), "seconds": round(seconds, 1),
        "loss_first20": round(first, 4), "loss_last20": round(last, 4), "seed": seed,
    }, indent=2) + "\n")
    if model_dir.exists():
        shutil.rmtree(model_dir)
    staging.rename(model_dir)                   # only a complete model folder ever appears at out/model
    size = sum(p.stat().st_size for p in model_dir.iterdir())
    say(f"saved to {model_dir} ({size / 1e6:.1f} MB): {', '.join(sorted(p.name for p in model_dir.iterdir()))}")
    return seconds


# -------------------------------------------------------------------------------- using it
def show_info(model_dir: Path | str) -> None:
    section("fastdeberta info")
    say(f"$ fastdeberta info --model {model_dir}")
    # the `fastdeberta` console script, run with this interpreter (works without the venv's bin/ on PATH)
    cli = "import sys; from fastdeberta.cli.main import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", cli, "info", "--model", str(model_dir)],
                            capture_output=True, text=True)
    say((result.stdout + result.stderr).rstrip())
    if result.returncode != 0:
        raise SystemExit(f"fastdeberta info failed with exit code {result.returncode}")


def use_model(model_dir: Path) -> None:
    import fastdeberta

    show_info(model_dir)

    section("fill-mask (top 5)")
    say(f'fill = fastdeberta.pipeline("fill-mask", model="{model_dir}")')
    fill = fastdeberta.pipeline("fill-mask", model=str(model_dir), top_k=5)
    for text, preds in zip(FILL_MASK_EXAMPLES, fill(FILL_MASK_EXAMPLES)):
        say(text)
        say("    " + "   ".join(f"{p['token_str']!r} {p['score']:.2f}" for p in preds))

    section("sentence embeddings: cosine similarity")
    say("model.encode(sentences, normalize=True) (mean pooling)")
    para, others = similarity_table(fill.model, EMBED_EXAMPLES)
    say(f"mean cosine of the paraphrase pairs (0,1) (2,3) (4,5): {para:.2f}; of the other pairs: {others:.2f}")


def similarity_table(model, sentences: list[str]) -> tuple[float, float]:
    """Print the cosine-similarity table of ``sentences`` (paraphrase pairs at (0,1) (2,3) (4,5));
    return the mean cosine of those pairs and of all other pairs."""
    vectors = torch.as_tensor(model.encode(sentences, normalize=True))
    sims = vectors @ vectors.T
    n = len(sentences)
    for i, text in enumerate(sentences):
        say(f"  [{i}] {text}")
    say("      " + "".join(f"[{j}]".rjust(7) for j in range(n)))
    for i in range(n):
        say(f"  [{i}] " + "".join(f"{sims[i, j].item():7.2f}" for j in range(n)))
    pairs = [(0, 1), (2, 3), (4, 5)]
    others = [sims[i, j].item() for i in range(n) for j in range(i + 1, n) if (i, j) not in pairs]
    return sum(sims[i, j].item() for i, j in pairs) / len(pairs), sum(others) / len(others)


ABOUT = """\
What this is: a TINY DeBERTa-v3-style masked language model ({params}) trained from scratch for
{minutes} on this machine's gettext UI strings (menu items, dialog and error messages). It is NOT
a pretrained DeBERTa: its predictions only reflect that small corpus. It exists to show the toolkit
end to end -- tokenizer training, the model with its Enhanced Mask Decoder, MLM training, saving,
loading, fill-mask, embeddings and the CLI -- with no network access. For real work load a
pretrained checkpoint, e.g. fastdeberta.from_pretrained("microsoft/deberta-v3-base", task="masked-lm")."""


def train_tiny_main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    model_dir = out / "model"
    say("fastdeberta demo: train a tiny DeBERTa on this machine's UI strings, then use it.")
    if model_dir.is_dir() and (model_dir / "model.safetensors").is_file() and not args.force:
        say(f"{model_dir} exists; skipping training (use --force to retrain).")
    else:
        train_demo_model(out, args.steps, args.seed, args.time_limit or None)

    use_model(model_dir)

    info_path = model_dir / "demo_training.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    from safetensors import safe_open

    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    minutes = f"{info['seconds'] / 60:.1f} minutes" if "seconds" in info else "a few minutes"
    section("what this demo model is", numbered=False)
    say(ABOUT.format(params=f"{params / 1e6:.1f} M parameters", minutes=minutes))
    return 0


# ------------------------------------------------------------------------ the shipped model
# Simple sentences, and sentences from documents held out of the shipped model's training (the corpus's
# valid split, .cache/corpus/valid.txt: dictionary usage examples), one word masked with the word that was there.
SHIPPED_FILL_MASK = [
    ("The cat sat on the [MASK].", None),
    ("She opened the [MASK] and walked into the garden.", None),
    ("Good afternoon, madam. How may I [MASK] you?", "help"),
    ("I do not intend to be [MASK] about it.", "quiet"),
    ("Did you ever [MASK] at Harvard?", "lecture"),
    ("I thought you were trying to get into [MASK].", "shape"),
]
SHIPPED_EMBED = [
    "The file could not be opened.",
    "Unable to open the file.",
    "A large body of salt water.",
    "The sea is wide and deep.",
    "Return a sorted list of the items.",
    "The function sorts the list and returns it.",
]


def shipped_demo(out: Path) -> int:
    import fastdeberta
    from fastdeberta.shipped import DEFAULT_MODEL, SHIPPED

    card = SHIPPED[DEFAULT_MODEL] / "README.md"
    say(f"fastdeberta demo on the shipped model {DEFAULT_MODEL} (offline; model card: {card})")
    show_info(DEFAULT_MODEL)

    section("fill-mask with the generator (top 5)")
    say('fill = fastdeberta.pipeline("fill-mask")          # no model: the shipped one')
    fill = fastdeberta.pipeline("fill-mask", top_k=5)
    texts = [text for text, _ in SHIPPED_FILL_MASK]
    for (text, original), preds in zip(SHIPPED_FILL_MASK, fill(texts)):
        words = [p["token_str"].strip() for p in preds]
        mark = "" if original is None else (f"   <- '{original}' in top 5" if original in words
                                            else f"   ('{original}' not in top 5)")
        say(text + mark)
        say("    " + "   ".join(f"{p['token_str']!r} {p['score']:.2f}" for p in preds))

    measured = SHIPPED[DEFAULT_MODEL] / "metrics.json"
    if measured.is_file():
        m = json.loads(measured.read_text(encoding="utf-8"))
        say(f"(measured on {m['sequences']:,} held-out sequences: the masked word is the top-1 prediction "
            f"{m['mlm_accuracy']:.1%} of the time -- a small model, briefly trained; see the model card)")

    section("sentence embeddings from the discriminator: cosine similarity")
    model = fastdeberta.from_pretrained(DEFAULT_MODEL)
    para, others = similarity_table(model, SHIPPED_EMBED)
    say(f"mean cosine of the paraphrase pairs (0,1) (2,3) (4,5): {para:.2f}; of the other pairs: {others:.2f} "
        "(a pretrained encoder without sentence-level training: raw mean-pooled vectors are all similar; "
        "fine-tune for real similarity)")

    section("disentangled attention: content vs relative position")
    text = "The quick brown fox jumps over the lazy dog."
    say(f"$ fastdeberta attention --text {text!r} --output {out / 'attention'}")
    cli = "import sys; from fastdeberta.cli.main import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", cli, "attention", "--text", text, "--output",
                             str(out / "attention")], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"fastdeberta attention failed: {result.stderr.strip()}")
    from fastdeberta.interpret.summaries import term_shares

    explanation = fastdeberta.explain_attention(model, text)
    say("share of each term in the within-row variance of the attention scores, mean over heads:")
    for index, layer in explanation.layers.items():
        shares = term_shares(layer, explanation.attention_mask)
        say(f"  layer {index}: " + "  ".join(f"{name} {float(share.mean()):5.1%}" for name, share in shares.items()))
    written = sorted(p.name for p in (out / "attention").iterdir())
    say(f"wrote {out / 'attention'}: {', '.join(written)} -- open attention.html in a browser")
    section("what this model is", numbered=False)
    say(f"A small DeBERTa-v3 pretrained by this project on a 2-core CPU; see {card} for its data, training "
        "time and measured held-out accuracy. For real work load a released checkpoint, e.g. "
        'fastdeberta.from_pretrained("microsoft/deberta-v3-base").')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastdeberta.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".demo", help="output folder (default: .demo)")
    parser.add_argument("--train-tiny", action="store_true",
                        help="train a tiny model on this machine's gettext strings instead of using the shipped one")
    parser.add_argument("--steps", type=int, default=500, help="--train-tiny: training steps (default: 500)")
    parser.add_argument("--time-limit", type=float, default=300.0,
                        help="--train-tiny: stop after this many seconds (default: 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="--train-tiny: retrain even if OUT/model exists")
    args = parser.parse_args(argv)
    if args.train_tiny:
        return train_tiny_main(args)
    return shipped_demo(Path(args.out))


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


if __name__ == "__main__":
    sys.exit(main())
