"""Side-by-side speed, memory and accuracy benchmark: fastdeberta vs transformers (same weights), with a
BERT encoder of the same width/depth using scaled_dot_product_attention as the plain-attention limit.

Every comparison runs in this one process, alternating between implementations, and reports ratios
measured together. Random DeBERTa-v3-base weights (speed does not depend on the values).

What is measured (full mode; --smoke uses a tiny model and tiny shapes instead):
  * forward, fp32, inference_mode at 8x128, 2x512, 1x2048 (and 1x8192 for fastdeberta alone):
    tokens/s, speedup over transformers, time relative to BERT-SDPA, peak activation memory;
  * fastdeberta time / the time of its dense matmuls alone at 8x128 (same shapes, back to back);
  * a mixed-length corpus of real sentences (gettext msgids of this machine): fastdeberta's
    encode() against transformers used the usual way (tokenizer padding=True, batches of 32 in
    input order) and BERT-SDPA on fastdeberta's length-sorted batches;
  * a training step 8x128 (forward + backward, dropout on): speed and activation memory;
  * bf16 and int8 (fastdeberta.quantize.quantize_int8): speed at 8x128 relative to fp32 and accuracy
    against fp32 over the corpus: hidden-state cosine, fill-mask top-1 agreement (MLM head with the
    Enhanced Mask Decoder at masked tokens) and classification agreement (a random-weight
    sequence-classification head: argmax agreement).

Peak memory is the resident memory (VmHWM) added while one call runs, on Linux; weights and, for the
training step, the parameter gradients are already resident and do not count.

    python benchmarks/run.py            # everything (allow 20+ minutes on 2 cores)
    python benchmarks/run.py --quick    # skip transformers at 1x2048 and fastdeberta at 1x8192 (~10 min)
    python benchmarks/run.py --smoke    # tiny model, tiny shapes: checks the script end to end
    python benchmarks/run.py --json out.json
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import fastdeberta as fd
from fastdeberta.config import DebertaConfig, preset_config
from fastdeberta.inference.batching import make_batches
from fastdeberta.inference.embed import pool, tokenize_texts
from fastdeberta.model.heads import ContextPooler
from fastdeberta.quantize import quantize_int8


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    name: str
    model: dict[str, Any]                       # preset_config("deberta-v3-base", **model)
    shapes: tuple[tuple[int, int, float], ...]  # forward (batch, length, speedup target vs transformers)
    long_shape: tuple[int, int]                 # fastdeberta alone
    train_shape: tuple[int, int]
    corpus_size: int                            # sentences
    spm_vocab: int                              # SentencePiece vocabulary (a soft limit)
    accuracy_texts: int                         # corpus sentences in the accuracy report


FULL = Settings("full", {}, ((8, 128, 1.8), (2, 512, 2.4), (1, 2048, 5.0)), (1, 8192), (8, 128),
                corpus_size=2000, spm_vocab=8000, accuracy_texts=2000)
SMOKE = Settings("smoke", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
                 ((4, 32, 1.8), (2, 64, 2.4), (1, 256, 5.0)), (1, 1024), (4, 32),
                 corpus_size=300, spm_vocab=1000, accuracy_texts=300)

MIN_CORPUS = 2000             # sentences the full corpus row must have
BERT_TARGET = 1.15            # fastdeberta time / BERT-SDPA time, every forward shape
MATMUL_TARGET = 1.2           # fastdeberta time / its dense matmuls, first forward shape
MEMORY_TARGET = 0.25          # activation memory / transformers', longest forward shape (1x2048)
TRAIN_SPEEDUP_TARGET = 1.5
TRAIN_MEMORY_TARGET = 0.6
CORPUS_SPEEDUP_TARGET = 3.0
BF16_SPEED_TARGET = 2.0
BF16_COSINE_TARGET = 0.999    # mean cosine over all real tokens
BF16_TOP1_TARGET = 0.99


# ----------------------------------------------------------------------------- measurement helpers
def _status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def _release_free_memory() -> None:
    """Collect garbage and hand free heap pages back to the OS (glibc malloc_trim), so memory freed
    by an earlier run is not counted as already resident when the next one reuses it."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
        pass


def peak_memory(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(peak resident MiB added while ``fn`` runs, its result). Linux: reset VmHWM, run, read it back."""
    _release_free_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return float("nan"), fn()
    base = _status_kib("VmRSS")
    result = fn()
    return max(0, _status_kib("VmHWM") - base) / 1024, result


def alternate(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per call for each function, run round-robin after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def machine() -> str:
    model = "unknown CPU"
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = next(line for line in info.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    bf16 = ", native bf16" if "avx512_bf16" in flags or "amx_bf16" in flags else ", no native bf16"
    return (f"{model}, {os.cpu_count()} cores ({isa}{bf16}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


# ----------------------------------------------------------------------------- targets and results
@dataclass
class Check:
    """One target: ``value`` against ``target``, higher or lower being better."""

    name: str
    short: str                  # label in the main table's target column
    value: float | None         # None: not measured in this run
    target: float
    higher_is_better: bool
    unit: str = "x"
    fmt: str = ".3f"            # how the measured value is printed

    @property
    def met(self) -> bool | None:
        if self.value is None or math.isnan(self.value):
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def required(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}{self.unit}"

    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


@dataclass
class Row:
    """One workload of the main table. Times in seconds, memory in MiB, None where not run."""

    workload: str
    tokens: int                        # tokens processed per call (real tokens for the corpus)
    fd_s: float
    hf_s: float | None = None
    bert_s: float | None = None
    fd_mib: float | None = None
    hf_mib: float | None = None
    bert_mib: float | None = None
    checks: list[Check] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def speedup(self) -> float | None:
        return None if self.hf_s is None else self.hf_s / self.fd_s

    def over_bert(self) -> float | None:
        return None if self.bert_s is None else self.fd_s / self.bert_s

    def memory_ratio(self) -> float | None:
        if self.fd_mib is None or self.hf_mib is None or self.hf_mib <= 0:
            return None
        return self.fd_mib / self.hf_mib

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("checks", "extra")}
        out.update(fd_tok_s=self.tokens / self.fd_s,
                   hf_tok_s=None if self.hf_s is None else self.tokens / self.hf_s,
                   speedup_vs_hf=self.speedup(), fd_over_bert=self.over_bert(), mem_ratio=self.memory_ratio(),
                   **self.extra)
        out["checks"] = [dict(asdict(c), met=c.met) for c in self.checks]
        return out


@dataclass
class AccuracyRow:
    precision: str
    speed_vs_fp32: float
    tok_s: float
    cosine_mean: float
    cosine_min: float
    top1_agreement: float
    masked_tokens: int
    class_agreement: float
    texts: int
    has_nan: bool
    checks: list[Check] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "checks"}
        out["checks"] = [dict(asdict(c), met=c.met) for c in self.checks]
        return out


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in rows)])


def main_table(rows: list[Row]) -> str:
    headers = ["workload", "fastdeberta tok/s", "transformers tok/s", "speedup vs transformers",
               "time / BERT-SDPA", "fd peak MiB", "transformers peak MiB", "BERT-SDPA peak MiB",
               "target", "met"]
    body = []
    for r in rows:
        body.append([
            r.workload, _num(r.tokens / r.fd_s, ",.0f"),
            _num(None if r.hf_s is None else r.tokens / r.hf_s, ",.0f"),
            _num(r.speedup(), ".2f") + ("x" if r.speedup() is not None else ""),
            _num(r.over_bert(), ".2f"),
            _num(r.fd_mib, ",.0f"), _num(r.hf_mib, ",.0f"), _num(r.bert_mib, ",.0f"),
            "; ".join(f"{c.short} {c.required()}" for c in r.checks) or "-",
            "; ".join(c.verdict() for c in r.checks) or "-",
        ])
    return markdown_table(headers, body)


def accuracy_table(rows: list[AccuracyRow], shape: str) -> str:
    headers = ["precision", f"speed vs fp32 ({shape})", "tok/s", "hidden cosine mean", "hidden cosine min",
               "fill-mask top-1 agreement", "classification agreement", "target", "met"]
    body = [[
        r.precision, f"{r.speed_vs_fp32:.2f}x", f"{r.tok_s:,.0f}", f"{r.cosine_mean:.5f}", f"{r.cosine_min:.5f}",
        f"{100 * r.top1_agreement:.2f}% of {r.masked_tokens}", f"{100 * r.class_agreement:.2f}% of {r.texts}",
        "; ".join(f"{c.short} {c.required()}" for c in r.checks) or "- (report only)",
        "; ".join(c.verdict() for c in r.checks) or "-",
    ] for r in rows]
    return markdown_table(headers, body)


def checklist_table(checks: list[Check]) -> str:
    body = [[c.name, _num(c.value, c.fmt) + (c.unit if c.value is not None else ""), c.required(), c.verdict()]
            for c in checks]
    return markdown_table(["target", "measured", "required", "met"], body)


# ----------------------------------------------------------------------------- models
def model_config(settings: Settings) -> DebertaConfig:
    return preset_config("deberta-v3-base", max_position_embeddings=512, **settings.model)


def build_models(cfg: DebertaConfig, bert_max_len: int):
    """transformers' DeBERTa-v2 and fastdeberta with the same random weights, and BERT-SDPA."""
    import transformers

    torch.manual_seed(0)
    hf_cfg = transformers.DebertaV2Config(**{k: v for k, v in cfg.to_dict().items() if k != "model_type"})
    hf = transformers.DebertaV2Model(hf_cfg).eval()
    ours = fd.DebertaModel(cfg).eval()
    missing, _ = ours.load_state_dict(hf.state_dict(), strict=False)
    assert not missing, missing
    bert_cfg = transformers.BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                                       num_hidden_layers=cfg.num_hidden_layers,
                                       num_attention_heads=cfg.num_attention_heads,
                                       intermediate_size=cfg.intermediate_size,
                                       max_position_embeddings=bert_max_len, attn_implementation="sdpa")
    bert = transformers.BertModel(bert_cfg, add_pooling_layer=False).eval()
    return hf, ours, bert


def check_parity(hf, ours) -> float:
    ids = torch.randint(5, 5000, (2, 300))
    mask = torch.ones_like(ids)
    mask[1, 200:] = 0
    with torch.inference_mode():
        a = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        b = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    return float((a - b)[mask.bool()].abs().max())


def matmul_only(batch: int, length: int, cfg: DebertaConfig):
    """The encoder's dense matmuls alone: per layer q, k, v, output, FFN up, FFN down."""
    hidden, inter = cfg.hidden_size, cfg.intermediate_size
    tokens = batch * length
    x = torch.randn(tokens, hidden)
    h = torch.randn(tokens, inter)
    w_sq = [torch.randn(hidden, hidden) for _ in range(4)]
    w_up, w_down = torch.randn(inter, hidden), torch.randn(hidden, inter)
    b_h, b_i = torch.randn(hidden), torch.randn(inter)

    def run():
        for _ in range(cfg.num_hidden_layers):
            for w in w_sq:
                F.linear(x, w, b_h)
            F.linear(x, w_up, b_i)
            F.linear(h, w_down, b_h)
    return run


class AccuracyProbe(nn.Module):
    """One encoder pass, three read-outs: the last hidden states, the fill-mask prediction at every
    masked token (the MLM head behind the Enhanced Mask Decoder) and the class of a random-weight
    sequence-classification head ([CLS] -> pooler -> linear, as in DebertaForSequenceClassification)."""

    def __init__(self, mlm: fd.DebertaForMaskedLM, num_labels: int = 3):
        super().__init__()
        cfg = mlm.config
        self.mlm = mlm
        self.pooler = ContextPooler(cfg)
        self.classifier = nn.Linear(cfg.pooler_size, num_labels)
        for linear in (self.pooler.dense, self.classifier):
            nn.init.normal_(linear.weight, std=cfg.initializer_range)
            nn.init.zeros_(linear.bias)

    def forward(self, input_ids, attention_mask, masked, vocab: int):
        """``masked`` (B, L) bool marks the [MASK] positions; predictions are among the first ``vocab``
        ids (the tokenizer's: the model's embedding table may have unused rows beyond it)."""
        out, positions = self.mlm.deberta.features(input_ids, attention_mask)
        hidden = out.last_hidden_state
        token_logits = self.mlm.head(self.mlm.decoder_states(out, positions)[masked])[:, :vocab]  # (M, V)
        class_logits = self.classifier(self.pooler(hidden))                               # (B, C)
        return hidden.float(), token_logits.argmax(-1), class_logits.argmax(-1)


def random_probe(cfg: DebertaConfig, encoder: fd.DebertaModel) -> AccuracyProbe:
    """A probe whose encoder carries ``encoder``'s weights; MLM and classification heads random."""
    torch.manual_seed(1)
    mlm = fd.DebertaForMaskedLM(cfg).eval()
    missing, unexpected = mlm.deberta.load_state_dict(encoder.state_dict(), strict=False)
    assert not unexpected and all("position_embeddings" in k for k in missing), (missing, unexpected)
    return AccuracyProbe(mlm).eval()


def masked_batches(tok, texts: list[str], fraction: float = 0.15, seed: int = 0):
    """Length-sorted padded batches of ``texts`` with ``fraction`` of each text's tokens (at least
    one, never [CLS]/[SEP]) replaced by [MASK]."""
    rng = random.Random(seed)
    sequences = tokenize_texts(tok, texts, tok.model_max_length)
    for seq in sequences:
        inner = list(range(1, len(seq) - 1))
        for i in rng.sample(inner, min(len(inner), max(1, round(fraction * len(inner))))):
            seq[i] = tok.mask_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return list(make_batches(sequences, batch_size=32, max_tokens=4096, pad_id=pad))


def probe_outputs(probe: AccuracyProbe, batches, tok):
    """Hidden states of every real token, fill-mask top-1 ids, classes: each concatenated over batches."""
    hidden, top1, classes = [], [], []
    with torch.inference_mode():
        for b in batches:
            h, t, c = probe(b.input_ids, b.attention_mask, b.input_ids == tok.mask_token_id, len(tok))
            hidden.append(h[b.attention_mask.bool()])
            top1.append(t)
            classes.append(c)
    return torch.cat(hidden), torch.cat(top1), torch.cat(classes)


# ----------------------------------------------------------------------------- corpus
def gettext_sentences(limit: int = 4000) -> list[str]:
    """English UI sentences: msgids of the machine's gettext catalogs."""
    import gettext
    import glob

    seen: dict[str, None] = {}
    for path in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo")):
        try:
            with open(path, "rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog
        except Exception:  # malformed catalog: skip it
            continue
        for key in catalog:
            text = key[0] if isinstance(key, tuple) else key
            if isinstance(text, str) and len(text.split()) >= 3 and "\x00" not in text:
                seen.setdefault(" ".join(text.split()), None)
        if len(seen) >= limit * 3:
            break
    texts = list(seen)
    return texts[:: max(1, len(texts) // limit)][:limit]


def corpus_tokenizer(texts: list[str], folder: Path, vocab_size: int):
    """A SentencePiece unigram tokenizer trained on ``texts``. ``vocab_size`` is a soft limit
    (hard_vocab_limit=False): a few thousand short sentences support fewer pieces than asked for."""
    import sentencepiece as spm

    from fastdeberta.tokenizer import Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(folder / "spm"),
                                   vocab_size=vocab_size, hard_vocab_limit=False, model_type="unigram",
                                   pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]",
                                   bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]", minloglevel=2)
    return Tokenizer.from_spm(folder / "spm.model", model_max_length=512)


# ----------------------------------------------------------------------------- sections
def forward_rows(settings: Settings, cfg, hf, ours, bert, args) -> list[Row]:
    print("\nforward, fp32, inference_mode (median seconds; ratios measured in the same run)")
    rows = []
    longest = max(L for _, L, _ in settings.shapes)
    for index, (B, L, speedup_target) in enumerate(settings.shapes):
        ids = torch.randint(5, 5000, (B, L))
        fns = {"fastdeberta": lambda ids=ids: ours(input_ids=ids), "bert": lambda ids=ids: bert(input_ids=ids)}
        if not (args.quick and L == longest):
            fns["transformers"] = lambda ids=ids: hf(input_ids=ids)
        with torch.inference_mode():
            t = alternate(fns, 1 if L == longest else args.repeats)
            mem = {k: peak_memory(fn)[0] for k, fn in fns.items()}
        row = Row(f"{B}x{L} forward", B * L, t["fastdeberta"], t.get("transformers"), t["bert"],
                  mem["fastdeberta"], mem.get("transformers"), mem["bert"])
        row.checks.append(Check(f"{B}x{L} forward: speedup vs transformers", "speed", row.speedup(),
                                speedup_target, True))
        row.checks.append(Check(f"{B}x{L} forward: time / BERT-SDPA", "BERT", row.over_bert(), BERT_TARGET,
                                False, ""))
        if index == 0:
            with torch.inference_mode():
                tm = alternate({"fd": lambda ids=ids: ours(input_ids=ids), "mm": matmul_only(B, L, cfg)},
                               args.repeats)
            row.extra["fd_over_matmuls"] = tm["fd"] / tm["mm"]
            row.checks.append(Check(f"{B}x{L} forward: time / its dense matmuls", "matmuls",
                                    tm["fd"] / tm["mm"], MATMUL_TARGET, False, ""))
        if L == longest:   # not measured (None) where --quick skips transformers here
            row.checks.append(Check(f"{B}x{L} forward: activation memory / transformers'", "mem",
                                    row.memory_ratio(), MEMORY_TARGET, False))
        print(f"  {row.workload}: " + ", ".join(f"{k} {v:.3f} s" for k, v in t.items())
              + " | peak MiB " + ", ".join(f"{k} {v:.0f}" for k, v in mem.items()))
        rows.append(row)

    if not args.quick:
        B, L = settings.long_shape
        ids = torch.randint(5, 5000, (B, L))

        def timed() -> float:
            start = time.perf_counter()
            ours(input_ids=ids)
            return time.perf_counter() - start

        with torch.inference_mode():
            mib, secs = peak_memory(timed)   # one run: no warm-up at this length
        rows.append(Row(f"{B}x{L} forward (fastdeberta alone)", B * L, secs, fd_mib=mib))
        print(f"  {B}x{L}: fastdeberta {secs:.3f} s | peak MiB {mib:.0f}")
    return rows


def corpus_row(texts: list[str], tok, hf, ours, bert) -> Row:
    print(f"\nmixed-length corpus embedding, mean pooling ({len(texts)} sentences)")
    lengths = [len(x) for x in tokenize_texts(tok, texts, tok.model_max_length)]
    ours.tokenizer = tok

    def fd_encode():
        return ours.encode(texts, batch_size=64, max_tokens=8192, show_progress_bar=False, convert_to="torch")

    def hf_usual():
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 32):
                enc = tok(texts[i:i + 32], padding=True, truncation=True, return_tensors="pt")
                h = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                out.append(pool(h, enc["attention_mask"].bool(), "mean"))
        return torch.cat(out)

    def bert_sorted():
        # the plain-attention limit for the same work: fastdeberta's length-sorted batches
        sequences = tokenize_texts(tok, texts, tok.model_max_length)
        out = []
        with torch.inference_mode():
            for b in make_batches(sequences, batch_size=64, max_tokens=8192, pad_id=tok.pad_token_id):
                h = bert(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
                out.append(pool(h, b.attention_mask.bool(), "mean"))
        return torch.cat(out)

    # One timed pass each, memory measured in the same pass: transformers' padded input-order batches
    # take minutes here, and the models are already warm from the forward rows.
    t = {}

    def timed(name, fn):
        def run():
            start = time.perf_counter()
            result = fn()
            t[name] = time.perf_counter() - start
            return result
        return run

    fd_mib, a = peak_memory(timed("fastdeberta", fd_encode))
    hf_mib, b = peak_memory(timed("transformers", hf_usual))
    bert_mib, _ = peak_memory(timed("bert", bert_sorted))
    cos = float(F.cosine_similarity(a, b, dim=-1).min())
    row = Row(f"corpus: {len(texts)} sentences, {sum(lengths)} tokens (mean {statistics.mean(lengths):.0f}, "
              f"max {max(lengths)})", sum(lengths), t["fastdeberta"], t["transformers"], t["bert"],
              fd_mib, hf_mib, bert_mib, extra={"min_cosine_fd_vs_hf": cos})
    row.checks.append(Check("corpus embedding: speedup vs transformers (padding=True, 32 in input order)",
                            "speed", row.speedup(), CORPUS_SPEEDUP_TARGET, True))
    print("  " + ", ".join(f"{k} {v:.3f} s" for k, v in t.items())
          + f" | min cosine fastdeberta vs transformers embeddings {cos:.6f}")
    return row


def training_row(settings: Settings, hf, ours, bert, args) -> Row:
    B, L = settings.train_shape
    print(f"\ntraining step {B}x{L} (forward + backward, dropout on; gradients stay allocated)")
    ids = torch.randint(5, 5000, (B, L))
    models = {"fastdeberta": ours, "transformers": hf, "bert": bert}

    def step(model):
        def run():
            out = model(input_ids=ids).last_hidden_state
            out.float().pow(2).mean().backward()   # accumulates into .grad: no new gradient buffers
        return run

    for model in models.values():
        model.train()
    try:
        t = alternate({k: step(m) for k, m in models.items()}, args.repeats)
        mem = {k: peak_memory(step(m))[0] for k, m in models.items()}
    finally:
        for model in models.values():
            model.zero_grad(set_to_none=True)
            model.eval()
    row = Row(f"train step {B}x{L} fwd+bwd", B * L, t["fastdeberta"], t["transformers"], t["bert"],
              mem["fastdeberta"], mem["transformers"], mem["bert"])
    row.checks.append(Check(f"train {B}x{L}: speedup vs transformers", "speed", row.speedup(),
                            TRAIN_SPEEDUP_TARGET, True))
    row.checks.append(Check(f"train {B}x{L}: activation memory / transformers'", "mem", row.memory_ratio(),
                            TRAIN_MEMORY_TARGET, False))
    print("  " + ", ".join(f"{k} {v:.3f} s" for k, v in t.items())
          + " | peak MiB " + ", ".join(f"{k} {v:.0f}" for k, v in mem.items()))
    return row


def precision_rows(settings: Settings, cfg, ours, texts, tok, args) -> list[AccuracyRow]:
    B, L, _ = settings.shapes[0]
    print(f"\nreduced precision: speed at {B}x{L} vs fp32; accuracy vs fp32 over {len(texts)} corpus sentences")
    ids = torch.randint(5, 5000, (B, L))
    variants = {"fp32": ours, "bf16": copy.deepcopy(ours).to(torch.bfloat16), "int8": quantize_int8(ours)}
    with torch.inference_mode():
        t = alternate({k: (lambda m=m: m(input_ids=ids)) for k, m in variants.items()}, args.repeats)
    del variants

    if args.accuracy_model:
        mlm = fd.from_pretrained(args.accuracy_model, task="masked-lm").eval()
        if mlm.tokenizer is None:
            raise SystemExit(f"{args.accuracy_model} has no tokenizer files")
        tok = mlm.tokenizer
        probe = AccuracyProbe(mlm).eval()
    else:
        probe = random_probe(cfg, ours)
    batches = masked_batches(tok, texts)
    ref_hidden, ref_top1, ref_classes = probe_outputs(probe, batches, tok)

    rows = []
    for name in ("bf16", "int8"):
        variant = copy.deepcopy(probe).to(torch.bfloat16) if name == "bf16" else quantize_int8(probe)
        hidden, top1, classes = probe_outputs(variant, batches, tok)
        del variant
        cos = F.cosine_similarity(hidden, ref_hidden, dim=-1)
        row = AccuracyRow(name, t["fp32"] / t[name], B * L / t[name], float(cos.mean()), float(cos.min()),
                          float((top1 == ref_top1).float().mean()), len(ref_top1),
                          float((classes == ref_classes).float().mean()), len(texts),
                          bool(torch.isnan(hidden).any()))
        if name == "bf16":
            row.checks += [
                Check(f"bf16: speed vs fp32 at {B}x{L}", "speed", row.speed_vs_fp32, BF16_SPEED_TARGET, True),
                Check("bf16: mean hidden-state cosine vs fp32", "cos", row.cosine_mean, BF16_COSINE_TARGET,
                      True, "", ".5f"),
                Check("bf16: fill-mask top-1 agreement vs fp32", "top-1", 100 * row.top1_agreement,
                      100 * BF16_TOP1_TARGET, True, "%", ".2f"),
            ]
        print(f"  {name}: {row.speed_vs_fp32:.2f}x fp32 speed, cosine mean {row.cosine_mean:.5f} "
              f"min {row.cosine_min:.4f}, top-1 {row.top1_agreement:.4f}, classes {row.class_agreement:.4f}")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="skip the long shapes: transformers at 1x2048, fastdeberta alone at 1x8192")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model (2 layers, hidden 64) and tiny shapes: runs in well under a minute")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per short shape (default 3, smoke 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--accuracy-model", default=None,
                        help="a masked-LM checkpoint (path or hub id) for the bf16/int8 accuracy report instead "
                             "of random weights; its own tokenizer is used")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    settings = SMOKE if args.smoke else FULL
    if args.repeats is None:
        args.repeats = 1 if args.smoke else 3
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    cfg = model_config(settings)
    results: dict[str, Any] = {"machine": machine(), "mode": settings.name, "quick": args.quick,
                               "model": {k: getattr(cfg, k) for k in ("hidden_size", "num_hidden_layers",
                                                                      "num_attention_heads", "intermediate_size",
                                                                      "vocab_size", "position_buckets")}}
    print(f"machine: {results['machine']}")
    print(f"mode: {settings.name}{' (quick)' if args.quick else ''}; model: {results['model']}")

    hf, ours, bert = build_models(cfg, bert_max_len=max(L for _, L, _ in settings.shapes))
    err = check_parity(hf, ours)
    print(f"parity check (2x300, padded, v3 buckets): max |fastdeberta - transformers| = {err:.2e}")
    results["parity_max_abs"] = err

    rows = forward_rows(settings, cfg, hf, ours, bert, args)

    texts = gettext_sentences(settings.corpus_size)
    if not args.smoke and len(texts) < MIN_CORPUS:
        print(f"WARNING: only {len(texts)} gettext sentences on this machine (the corpus row wants {MIN_CORPUS})")
    tok = corpus_tokenizer(texts, Path(os.environ.get("TMPDIR", "/tmp")) / "fastdeberta-bench-spm",
                           settings.spm_vocab)
    rows.append(corpus_row(texts, tok, hf, ours, bert))
    rows.append(training_row(settings, hf, ours, bert, args))
    del hf, bert
    _release_free_memory()
    accuracy = precision_rows(settings, cfg, ours, texts[:settings.accuracy_texts], tok, args)

    checks = [c for r in rows for c in r.checks] + [c for r in accuracy for c in r.checks]
    shape = "{}x{}".format(*settings.shapes[0][:2])
    print(f"\n## Results ({settings.name} mode{', quick' if args.quick else ''}; {results['machine']})\n")
    if args.smoke:
        print("SMOKE MODE: tiny model and shapes; the numbers check the script, not the targets.\n")
    print("Speed and memory (fp32; tok/s = tokens per second; time / BERT-SDPA = fastdeberta time over a BERT "
          "encoder of the same width/depth with scaled_dot_product_attention; peak MiB = resident memory "
          "added during one call)\n")
    print(main_table(rows))
    print(f"\nReduced precision (speed: encoder forward at {shape}; accuracy: against fp32 over "
          f"{accuracy[0].texts} corpus sentences, 15% of tokens masked; "
          f"{'checkpoint ' + args.accuracy_model if args.accuracy_model else 'random weights'})\n")
    print(accuracy_table(accuracy, shape))
    print("\nTargets\n")
    print(checklist_table(checks))
    met = sum(c.met is True for c in checks)
    print(f"\n{met} of {len(checks)} targets met; {sum(c.met is None for c in checks)} not measured. "
          f"Total time {time.perf_counter() - started:.0f} s.")

    results.update(rows=[r.to_json() for r in rows], accuracy=[r.to_json() for r in accuracy],
                   targets=[dict(asdict(c), met=c.met) for c in checks],
                   seconds=time.perf_counter() - started)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
