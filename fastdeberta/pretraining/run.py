"""Pretraining from raw text (or packed data) to Hugging Face-layout checkpoints, on the shared loop.

``pretrain(...)`` wires together: the tokenizer, the packed data (built from text on first use and
cached in ``output_dir/data``), the objective (``mlm`` or ``rtd``), evaluation on held-out
sequences (generator MLM top-1 accuracy, discriminator RTD accuracy and AUC) and
``fastdeberta.training.Trainer`` (atomic checkpoints, exact resume, JSONL metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import DebertaConfig, preset_config
from ..model import DebertaForMaskedLM
from ..training import Trainer, TrainingArguments, TrainOutput
from .data import PackedDataset, pack_corpus
from .masking import IGNORE_INDEX, word_start_table
from .objectives import OBJECTIVES, MaskingOptions, MLMObjective, RTDModel, masked_lm_logits

__all__ = ["PretrainArguments", "build_model", "evaluate", "load_config", "pretrain", "set_dropout"]

EVAL_SEED = 1234


@dataclass
class PretrainArguments:
    objective: str = "rtd"
    config: str = "deberta-v3-xsmall"         # a preset name or a config.json path
    generator_layers: int | None = None       # rtd: default half the discriminator's depth
    embedding_sharing: str = "gdes"
    rtd_lambda: float = 50.0
    masking: str = "token"                    # token | whole_word | span
    mask_probability: float = 0.15
    max_span: int = 3
    seq_length: int = 128
    valid_fraction: float = 0.01              # held out by document when packing raw text
    eval_sequences: int = 256                 # held-out sequences evaluated at each evaluation
    dropout: float | None = None              # rate of every dropout while pretraining; None: the config's

    def __post_init__(self) -> None:
        if self.dropout is not None:
            _check_dropout(self.dropout)      # refused when the options are built, before any data is packed


def _check_dropout(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {rate}")


def load_config(spec: str, tokenizer: Any) -> DebertaConfig:
    """A preset name or a config.json path; vocabulary and special ids come from the tokenizer."""
    vocab = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    path = Path(spec)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        data = json.loads(path.read_text(encoding="utf-8"))
        data.update(vocab)
        return DebertaConfig.from_dict(data)
    return preset_config(spec, **vocab)


def masking_options(args: PretrainArguments, tokenizer: Any) -> MaskingOptions:
    special = tuple(int(i) for i in tokenizer.all_special_ids)
    starts = None
    if args.masking != "token":
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        starts = word_start_table([p or "" for p in pieces], special)
    # RTD masks every selected token (the original RTD task: no 10% random / 10% kept); MLM uses 80/10/10
    ratios = (1.0, 0.0) if args.objective == "rtd" else (0.8, 0.1)
    return MaskingOptions(mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer), special_ids=special,
                          probability=args.mask_probability, strategy=args.masking, word_starts=starts,
                          max_span=args.max_span, mask_ratio=ratios[0], random_ratio=ratios[1])


def build_model(args: PretrainArguments, config: DebertaConfig, masking: MaskingOptions) -> nn.Module:
    if args.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {args.objective!r}")
    if args.objective == "mlm":
        return DebertaForMaskedLM(config, head_layout="lm_predictions", enhanced_mask_decoder=True)
    return RTDModel(config, generator_layers=args.generator_layers, embedding_sharing=args.embedding_sharing,
                    rtd_lambda=args.rtd_lambda, masking=masking)


def set_dropout(model: nn.Module, rate: float) -> int:
    """Set the rate of every dropout module in ``model`` (hidden, attention, relative positions, heads)
    without touching its config, so that saved checkpoints keep the config's rates, the ones fine-tuning
    starts from. Returns how many modules were changed."""
    _check_dropout(rate)
    modules = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for m in modules:
        m.p = rate
    return len(modules)


def collate(examples: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    input_ids = torch.stack([e["input_ids"] for e in examples])                  # (B, L)
    return {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).long()}


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (rank statistic; ties get the average rank)."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = scores.argsort()
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):                # average ranks over ties
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            if end - start > 1:
                ranks[order[start:end]] = ranks[order[start:end]].mean()
            start = end
    return float((ranks[labels.bool()].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Any, masking: MaskingOptions, *, pad_id: int, batch_size: int = 32,
             limit: int | None = None, seed: int = EVAL_SEED) -> dict[str, float]:
    """Held-out metrics with a fixed masking seed (comparable across evaluations and runs):
    mlm_accuracy / mlm_loss of the (generator) masked LM, and for RTD rtd_accuracy / rtd_auc."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    generator = torch.Generator().manual_seed(seed)
    correct = total = 0
    loss_sum = 0.0
    rtd_correct = rtd_total = 0
    scores, labels = [], []
    for start in range(0, count, batch_size):
        batch = collate([dataset[i] for i in range(start, min(count, start + batch_size))], pad_id)
        if isinstance(model, RTDModel):
            out = model.step(batch, generator)
            real = batch["attention_mask"].bool()
            rtd_logits, replaced = out["rtd_logits"][real], out["replaced"][real]
            rtd_correct += int(((rtd_logits > 0) == replaced).sum())
            rtd_total += int(real.sum())
            scores.append(rtd_logits.float())
            labels.append(replaced)
            n = int(out["masked_tokens"])
            correct += round(float(out["mlm_accuracy"]) * n)
            loss_sum += float(out["mlm_loss"].detach()) * n
            total += n
            continue
        masked, target = masking.apply(batch["input_ids"], batch["attention_mask"], generator)
        selected = target != IGNORE_INDEX
        logits = masked_lm_logits(model, masked, batch["attention_mask"], selected).float()
        targets = target[selected]
        correct += int((logits.argmax(-1) == targets).sum())
        total += len(targets)
        loss_sum += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
    metrics = {"mlm_accuracy": correct / max(1, total), "mlm_loss": loss_sum / max(1, total),
               "masked_tokens": float(total)}
    if rtd_total:
        metrics["rtd_accuracy"] = rtd_correct / rtd_total
        metrics["rtd_auc"] = _auc(torch.cat(scores), torch.cat(labels))
    return metrics


def prepare_data(corpus: list[str], tokenizer: Any, output_dir: Path, args: PretrainArguments,
                 valid: list[str] | None = None, progress: bool = True) -> tuple[PackedDataset, PackedDataset | None]:
    """Packed train (and held-out) data: given .npy files are used as they are; text is packed once
    into ``output_dir/data`` and reused on later runs (and on --resume)."""
    if all(str(c).endswith(".npy") for c in corpus):
        if len(corpus) != 1:
            raise ValueError(f"pass one packed .npy file as the corpus, got {len(corpus)}")
        train = PackedDataset(corpus[0])
        held = PackedDataset(valid[0]) if valid else None
        for data in (train, held):
            if data is not None:
                data.check_tokenizer(tokenizer)      # packed with another vocabulary: refuse, don't train on it
        return train, held
    data_dir = output_dir / "data"
    train_file = data_dir / "train.npy"
    if not train_file.is_file():
        if valid:
            pack_corpus(corpus, tokenizer, data_dir, seq_length=args.seq_length, progress=progress)
            pack_corpus(valid, tokenizer, data_dir, seq_length=args.seq_length, split_names=("valid", ""),
                        progress=progress)
        else:
            pack_corpus(corpus, tokenizer, data_dir, seq_length=args.seq_length, progress=progress,
                        valid_fraction=args.valid_fraction)
    held_file = data_dir / "valid.npy"
    return PackedDataset(train_file), (PackedDataset(held_file) if held_file.is_file() else None)


def pretrain(args: PretrainArguments, training: TrainingArguments, *, tokenizer_dir: str, corpus: list[str],
             valid: list[str] | None = None, resume: bool = False, log: Any = None,
             device: str = "cpu", init_from: str | None = None) -> TrainOutput:
    from ..tokenizer import Tokenizer
    from ..training.distributed import context, main_first

    tokenizer = Tokenizer.from_pretrained(tokenizer_dir)
    config = load_config(args.config, tokenizer)
    masking = masking_options(args, tokenizer)
    training.output_dir = Path(training.output_dir)
    # under torchrun rank 0 packs the text first; the others then find its files (a shared folder) or,
    # on another machine, pack the same text themselves
    train_data, held = main_first(context(), lambda: prepare_data(corpus, tokenizer, training.output_dir, args, valid,
                                                                        progress=training.progress))
    if train_data.seq_length > config.max_position_embeddings:
        raise ValueError(f"sequences of {train_data.seq_length} tokens exceed max_position_embeddings="
                         f"{config.max_position_embeddings} of config {args.config}")
    torch.manual_seed(training.seed)
    model = build_model(args, config, masking)
    if init_from is not None:
        if not isinstance(model, RTDModel):
            from ..checkpoint import load_model

            model.load_state_dict(load_model(init_from, task="masked-lm", load_tokenizer=False).state_dict())
        else:
            model.load_pretrained(init_from)
    if args.dropout is not None:
        set_dropout(model, args.dropout)
    model = model.to(device)
    pad_id = tokenizer.pad_token_id

    def save(m: nn.Module, folder: Path) -> None:
        if isinstance(m, RTDModel):
            m.save(folder, tokenizer)
        else:
            m.tokenizer = tokenizer
            m.save_pretrained(folder)

    eval_fn = None
    if held is not None and len(held):
        def eval_fn(m: nn.Module) -> dict[str, float]:
            return evaluate(m, held, masking, pad_id=pad_id, limit=args.eval_sequences)

    compute_loss = model.compute_loss if isinstance(model, RTDModel) else MLMObjective(masking)
    trainer = Trainer(model, training, train_data, collate_fn=lambda ex: collate(ex, pad_id),
                      compute_loss=compute_loss, eval_fn=eval_fn, save_model=save, log=log)
    return trainer.train(resume=resume)
