"""Side-by-side speed and memory benchmark: fastdeberta vs transformers (same weights), with a BERT
encoder of the same width/depth using scaled_dot_product_attention as the plain-attention limit.

Every comparison runs in this one process, alternating between implementations, and reports
ratios measured together. Random DeBERTa-v3-base weights (speed does not depend on the values).

    python benchmarks/run.py            # everything (~10-15 minutes on 2 cores)
    python benchmarks/run.py --quick    # skip 1x2048 for transformers and 1x8192
    python benchmarks/run.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import fastdeberta as fd
from fastdeberta.config import preset_config
from fastdeberta.quantize import quantize_int8


# ----------------------------------------------------------------------------- measurement helpers
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_memory_mib(fn) -> float:
    """Peak resident memory added while ``fn`` runs (Linux: reset VmHWM, run, read it back)."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return float("nan")
    base = _status_kib("VmRSS")
    fn()
    return max(0, _status_kib("VmHWM") - base) / 1024


def alternate(fns: dict[str, callable], repeats: int) -> dict[str, float]:
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


# ----------------------------------------------------------------------------- models
def build_models(max_len: int):
    import transformers

    torch.manual_seed(0)
    cfg = preset_config("deberta-v3-base", max_position_embeddings=512)
    hf_cfg = transformers.DebertaV2Config(**{k: v for k, v in cfg.to_dict().items() if k != "model_type"})
    hf = transformers.DebertaV2Model(hf_cfg).eval()
    ours = fd.DebertaModel(cfg).eval()
    missing, unexpected = ours.load_state_dict(hf.state_dict(), strict=False)
    assert not missing, missing
    bert_cfg = transformers.BertConfig(vocab_size=cfg.vocab_size, hidden_size=768, num_hidden_layers=12,
                                       num_attention_heads=12, intermediate_size=3072,
                                       max_position_embeddings=max_len, attn_implementation="sdpa")
    bert = transformers.BertModel(bert_cfg, add_pooling_layer=False).eval()
    return cfg, hf, ours, bert


def check_parity(hf, ours) -> float:
    ids = torch.randint(5, 5000, (2, 300))
    mask = torch.ones_like(ids)
    mask[1, 200:] = 0
    with torch.inference_mode():
        a = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        b = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    return float((a - b)[mask.bool()].abs().max())


def matmul_only(batch: int, length: int, hidden=768, inter=3072, layers=12):
    """The encoder's dense matmuls alone: per layer q, k, v, output, FFN up, FFN down."""
    tokens = batch * length
    x = torch.randn(tokens, hidden)
    h = torch.randn(tokens, inter)
    w_sq = [torch.randn(hidden, hidden) for _ in range(4)]
    w_up, w_down = torch.randn(inter, hidden), torch.randn(hidden, inter)
    b_h, b_i = torch.randn(hidden), torch.randn(inter)

    def run():
        for _ in range(layers):
            for w in w_sq:
                F.linear(x, w, b_h)
            F.linear(x, w_up, b_i)
            F.linear(h, w_down, b_h)
    return run


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


def corpus_tokenizer(texts: list[str], folder: Path):
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(folder / "spm"),
                                   vocab_size=8000, model_type="unigram", pad_id=0, bos_id=1, eos_id=2,
                                   unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
                                   unk_piece="[UNK]", minloglevel=2)
    from fastdeberta.tokenizer import Tokenizer

    return Tokenizer.from_spm(folder / "spm.model")


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the long shapes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results: dict = {"machine": machine(), "rows": []}
    print(f"machine: {results['machine']}")

    cfg, hf, ours, bert = build_models(2048)
    err = check_parity(hf, ours)
    print(f"parity check (2x300, padded, v3 buckets): max |fastdeberta - transformers| = {err:.2e}")
    results["parity_max_abs"] = err

    def row(**kw):
        results["rows"].append(kw)
        print("  " + "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in kw.items()))

    print("\nforward, fp32, inference_mode (median seconds; tokens/s; ratios measured in the same run)")
    shapes = [(8, 128), (2, 512), (1, 2048)]
    for B, L in shapes:
        ids = torch.randint(5, 5000, (B, L))
        fns = {"fastdeberta": lambda ids=ids: ours(input_ids=ids),
               "bert_sdpa": lambda ids=ids: bert(input_ids=ids)}
        if not (args.quick and L > 512):
            fns["transformers"] = lambda ids=ids: hf(input_ids=ids)
        with torch.inference_mode():
            t = alternate(fns, 1 if L > 512 else args.repeats)
            mem = {k: peak_memory_mib(fn) for k, fn in fns.items()}
        entry = dict(shape=f"{B}x{L}", fd_s=t["fastdeberta"], fd_tok_s=B * L / t["fastdeberta"],
                     bert_s=t["bert_sdpa"], fd_over_bert=t["fastdeberta"] / t["bert_sdpa"],
                     fd_mem_mib=mem["fastdeberta"], bert_mem_mib=mem["bert_sdpa"])
        if "transformers" in t:
            entry.update(hf_s=t["transformers"], speedup_vs_hf=t["transformers"] / t["fastdeberta"],
                         hf_mem_mib=mem["transformers"], mem_ratio=mem["fastdeberta"] / max(mem["transformers"], 1e-9))
        if (B, L) == (8, 128):
            with torch.inference_mode():
                tm = alternate({"fd": lambda ids=ids: ours(input_ids=ids), "mm": matmul_only(B, L)}, args.repeats)
            entry["fd_over_matmuls"] = tm["fd"] / tm["mm"]
        row(**entry)

    if not args.quick:
        ids = torch.randint(5, 5000, (1, 8192))
        with torch.inference_mode():
            start = time.perf_counter()
            mem = peak_memory_mib(lambda: ours(input_ids=ids))
            secs = time.perf_counter() - start
        row(shape="1x8192", fd_s=secs, fd_tok_s=8192 / secs, fd_mem_mib=mem)

    print("\nmixed-length corpus embedding (mean pooling)")
    texts = gettext_sentences(4000)
    tok = corpus_tokenizer(texts, Path(os.environ.get("TMPDIR", "/tmp")) / "fastdeberta-bench-spm")
    ours.tokenizer = tok
    lengths = [len(x) for x in tok(texts)["input_ids"]]

    def hf_usual():
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 32):
                enc = tok(texts[i:i + 32], padding=True, truncation=True, return_tensors="pt")
                h = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                out.append((h * m).sum(1) / m.sum(1))
        return torch.cat(out)

    def ours_encode():
        return ours.encode(texts, batch_size=64, max_tokens=8192, show_progress_bar=False, convert_to="torch")

    t = alternate({"fastdeberta": ours_encode, "transformers": hf_usual}, 1)
    a, b = ours_encode(), hf_usual()
    cos = float(F.cosine_similarity(a, b, dim=-1).min())
    row(shape=f"corpus {len(texts)} texts, {sum(lengths)} tokens (mean {statistics.mean(lengths):.0f})",
        fd_s=t["fastdeberta"], hf_s=t["transformers"], speedup_vs_hf=t["transformers"] / t["fastdeberta"],
        min_cosine=cos)

    print("\ntraining step 8x128 (forward + backward, dropout on)")
    ids = torch.randint(5, 5000, (8, 128))
    ours.train()
    hf.train()

    def step(model):
        def run():
            out = model(input_ids=ids).last_hidden_state
            out.float().pow(2).mean().backward()
            model.zero_grad(set_to_none=True)
        return run

    t = alternate({"fastdeberta": step(ours), "transformers": step(hf)}, args.repeats)
    mem = {"fastdeberta": peak_memory_mib(step(ours)), "transformers": peak_memory_mib(step(hf))}
    row(shape="train 8x128", fd_s=t["fastdeberta"], hf_s=t["transformers"],
        speedup_vs_hf=t["transformers"] / t["fastdeberta"], fd_mem_mib=mem["fastdeberta"],
        hf_mem_mib=mem["transformers"], mem_ratio=mem["fastdeberta"] / max(mem["transformers"], 1e-9))
    ours.eval()
    hf.eval()

    print("\nreduced precision, 8x128 forward (speed relative to fastdeberta fp32; cosine to fp32 hidden states)")
    ids = torch.randint(5, 5000, (8, 128))
    int8 = quantize_int8(ours)
    bf16 = fd.DebertaModel(cfg).eval()
    bf16.load_state_dict(ours.state_dict())
    bf16.to(torch.bfloat16)
    with torch.inference_mode():
        ref = ours(input_ids=ids).last_hidden_state
        t = alternate({"fp32": lambda: ours(input_ids=ids), "int8": lambda: int8(input_ids=ids),
                       "bf16": lambda: bf16(input_ids=ids)}, 2)
        for name, model in (("int8", int8), ("bf16", bf16)):
            h = model(input_ids=ids).last_hidden_state.float()
            cos = F.cosine_similarity(h.flatten(0, 1), ref.flatten(0, 1), dim=-1)
            row(shape=f"{name} 8x128", speedup_vs_fp32=t["fp32"] / t[name], min_cosine=float(cos.min()),
                mean_cosine=float(cos.mean()), nan=bool(torch.isnan(h).any()))

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
