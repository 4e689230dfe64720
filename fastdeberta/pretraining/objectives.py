"""Pretraining objectives: masked LM through the Enhanced Mask Decoder, and DeBERTa-v3's replaced-token
detection (RTD) with gradient-disentangled embedding sharing (GDES).

mlm
    ``DebertaForMaskedLM`` with the EMD (absolute positions enter only in the decoder: the last layer
    re-applied twice with queries = hidden states + absolute position embeddings). The loss is the
    cross-entropy at the selected positions only; the vocabulary projection runs only there too.

rtd (ELECTRA with DeBERTa, He et al. 2021, "DeBERTaV3")
    A generator (an MLM with the EMD, by default half the discriminator's depth) fills the selected
    positions with tokens sampled from its own output distribution; the discriminator labels every
    non-padding token original (0) or replaced (1). A sampled token equal to the original counts as
    original, as in the paper. loss = MLM + lambda * RTD (binary cross-entropy averaged over the
    non-padding tokens); lambda is 50 in the paper, 10 in the original code's example recipes.

Embedding sharing between generator and discriminator (``embedding_sharing``):
    "none"  each has its own token embeddings;
    "es"    ELECTRA's sharing: the discriminator reads the generator's embedding matrix, and both losses
            update it (the "tug-of-war" the v3 paper describes);
    "gdes"  gradient-disentangled: the discriminator's embeddings are stop_gradient(E_generator) +
            delta, delta initialised to zero; the MLM loss alone updates E_generator and the RTD loss
            only delta. When saved, the discriminator's embedding matrix is E_generator + delta.

Where this departs from the original code: the original trains generator and discriminator with two
optimizers stepping one after the other; here one AdamW steps both on ``MLM + lambda * RTD``. With the
stop-gradient no parameter receives gradients from both losses under GDES (and Adam's update is per
parameter), so the two are the same update. Gradient clipping follows the original's two trainers: the
generator's gradients and the discriminator's (with the delta and the RTD head) are clipped each by its
own norm (``gradient_clip_groups``; with plain sharing, where one table takes both losses, by their
joint norm). One joint norm would let the discriminator's 50 x RTD gradient (norm ~5.7 on the shipped
model, against ~2.1 for the generator's) scale the generator's gradients down 3x, pushing half of its
embedding gradients under Adam's epsilon (1e-6) and slowing the generator. The original also shares the absolute position table
under GDES; here the discriminator has no absolute positions (v3: ``position_biased_input=False``,
and only a masked-LM's EMD uses them), so there is nothing to share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DebertaConfig
from ..io import atomic_folder
from ..model import DebertaForMaskedLM, DebertaModel
from ..model.layers import LayerNorm, activation
from .masking import IGNORE_INDEX, mask_tokens

__all__ = ["EMBEDDING_SHARING", "OBJECTIVES", "MaskingOptions", "MLMObjective", "RTDHead", "RTDModel",
           "generator_config", "masked_lm_logits", "sample_categorical"]

OBJECTIVES = ("mlm", "rtd")
EMBEDDING_SHARING = ("none", "es", "gdes")


@dataclass
class MaskingOptions:
    """What the pretraining collate step needs to mask a batch (see masking.mask_tokens)."""

    mask_token_id: int
    vocab_size: int
    special_ids: tuple[int, ...]
    probability: float = 0.15
    strategy: str = "token"
    word_starts: torch.Tensor | None = None
    max_span: int = 3
    mask_ratio: float = 0.8            # [MASK] share of the selected tokens (RTD: 1.0, as the original)
    random_ratio: float = 0.1

    def apply(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_tokens(input_ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                           special_ids=self.special_ids, attention_mask=attention_mask,
                           probability=self.probability, generator=generator, strategy=self.strategy,
                           word_starts=self.word_starts, max_span=self.max_span, mask_ratio=self.mask_ratio,
                           random_ratio=self.random_ratio)


def masked_lm_logits(model: DebertaForMaskedLM, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     selected: torch.Tensor) -> torch.Tensor:
    """(N, V) logits at the N selected positions only (the EMD runs over the whole sequence; the
    vocabulary projection, the most expensive part at small widths, only where a label exists)."""
    out, position_ids = model.deberta.features(input_ids, attention_mask)
    states = model.decoder_states(out, position_ids)                       # (B, L, D)
    return model.head(states[selected])                                    # (N, V)


class MLMObjective:
    """compute_loss for the training loop: mask, predict, cross-entropy at the selected positions."""

    def __init__(self, masking: MaskingOptions):
        self.masking = masking

    def __call__(self, model: DebertaForMaskedLM, batch: dict[str, torch.Tensor],
                 generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        masked, labels = self.masking.apply(ids, attention_mask, generator)
        selected = labels != IGNORE_INDEX
        logits = masked_lm_logits(model, masked, attention_mask, selected)   # (N, V)
        targets = labels[selected]
        logits = logits.float()            # fp32 for the loss; argmax over it is also ~4x faster than over bf16
        loss = F.cross_entropy(logits, targets)
        accuracy = float((logits.detach().argmax(-1) == targets).float().mean()) if len(targets) else 0.0
        return loss, {"mlm_loss": float(loss.detach()), "mlm_accuracy": accuracy}


def generator_config(discriminator: DebertaConfig, layers: int | None = None) -> DebertaConfig:
    """The generator: the discriminator's config at ``layers`` depth (default half, at least 1)."""
    depth = layers if layers is not None else max(1, discriminator.num_hidden_layers // 2)
    if depth < 1:
        raise ValueError(f"the generator needs at least one layer, got {depth}")
    return discriminator.replace(num_hidden_layers=depth, architectures=None)


def sample_categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One id per row of ``logits`` (N, V), drawn from softmax(logits): inverse-CDF sampling (one uniform
    per row and a binary search in the cumulative distribution, in float64 so that tiny probabilities
    keep their share). Same distribution as ``torch.multinomial``, whose CPU kernel draws a random
    number per vocabulary entry and cost ~8% of an RTD pretraining step."""
    probs = torch.softmax(logits.double().cpu(), dim=-1)                       # (N, V)
    cumulative = probs.cumsum(dim=-1)                                          # (N, V)
    uniform = torch.rand(len(probs), 1, generator=generator, dtype=torch.float64) * cumulative[:, -1:]
    return torch.searchsorted(cumulative, uniform, right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)


class RTDHead(nn.Module):
    """Per-token replaced/original logit: LayerNorm([CLS] state + token state) -> dense -> act -> linear.

    The [CLS] state is added to every token's state before the classifier, as in the original
    DeBERTa RTD head (it lets the decision use a sentence-level signal)."""

    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        states = self.LayerNorm(hidden[:, :1] + hidden)                    # (B, L, D)
        return self.classifier(self.act(self.dense(states))).squeeze(-1)   # (B, L)


class RTDModel(nn.Module):
    """Generator (masked LM with EMD) + discriminator (encoder + RTD head) trained together."""

    def __init__(self, config: DebertaConfig, *, generator_layers: int | None = None,
                 embedding_sharing: str = "gdes", rtd_lambda: float = 50.0, masking: MaskingOptions | None = None):
        super().__init__()
        if embedding_sharing not in EMBEDDING_SHARING:
            raise ValueError(f"embedding_sharing must be one of {EMBEDDING_SHARING}, got {embedding_sharing!r}")
        if rtd_lambda < 0:
            raise ValueError(f"rtd_lambda must be >= 0, got {rtd_lambda}")
        self.config = config
        self.embedding_sharing = embedding_sharing
        self.rtd_lambda = float(rtd_lambda)
        self.masking = masking
        self.generator = DebertaForMaskedLM(generator_config(config, generator_layers), head_layout="lm_predictions",
                                            enhanced_mask_decoder=True)
        self.discriminator = DebertaModel(config)
        self.rtd_head = RTDHead(config)
        self.rtd_head.apply(lambda m: _init_linear(m, config.initializer_range))
        if embedding_sharing != "none":
            # the discriminator's own table is not read while training; save() writes the shared one
            self.discriminator.embeddings.word_embeddings.weight.requires_grad_(False)
        if embedding_sharing == "gdes":
            self.embedding_delta = nn.Parameter(torch.zeros_like(self.generator_embeddings))
        else:
            self.register_parameter("embedding_delta", None)

    def gradient_clip_groups(self) -> list[list[nn.Parameter]] | None:
        """Parameter groups whose gradients the training loop clips separately: [generator, the rest]
        (None under plain sharing "es": the shared table takes both losses, so one joint norm)."""
        if self.embedding_sharing == "es":
            return None
        generator = [p for p in self.generator.parameters() if p.requires_grad]
        ids = {id(p) for p in generator}
        return [generator, [p for p in self.parameters() if p.requires_grad and id(p) not in ids]]

    @property
    def generator_embeddings(self) -> torch.Tensor:
        return self.generator.deberta.embeddings.word_embeddings.weight      # (V, E)

    def discriminator_embedding_matrix(self) -> torch.Tensor:
        """(V, E): the token embeddings the discriminator reads under the sharing mode."""
        if self.embedding_sharing == "gdes":
            return self.generator_embeddings.detach() + self.embedding_delta   # stop-gradient + delta
        if self.embedding_sharing == "es":
            return self.generator_embeddings
        return self.discriminator.embeddings.word_embeddings.weight

    def discriminate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) replaced-token logits."""
        if self.embedding_sharing == "none":
            hidden = self.discriminator(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            pad = self.discriminator.embeddings.word_embeddings.padding_idx
            embeds = F.embedding(input_ids, self.discriminator_embedding_matrix(), padding_idx=pad)  # (B, L, E)
            hidden = self.discriminator(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return self.rtd_head(hidden)

    @torch.no_grad()
    def replace_tokens(self, original: torch.Tensor, selected: torch.Tensor, logits: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
        """The discriminator's input: at selected positions a token sampled from the generator's
        distribution (logits (N, V) for the N selected positions), elsewhere the original."""
        sampled = sample_categorical(logits, generator).to(original.device)    # (N,)
        replaced = original.clone()
        replaced[selected] = sampled
        return replaced

    def compute_loss(self, model: RTDModel, batch: dict[str, torch.Tensor],
                     generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loop's compute_loss (``model`` is this module)."""
        out = self.step(batch, generator)
        skip = ("loss", "rtd_logits", "replaced", "masked_tokens")
        return out["loss"], {k: float(v.detach()) for k, v in out.items() if k not in skip}

    def step(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, Any]:
        if self.masking is None:
            raise ValueError("RTDModel needs masking options (MaskingOptions) to build its training batches")
        original, attention_mask = batch["input_ids"], batch["attention_mask"]
        masked, labels = self.masking.apply(original, attention_mask, generator)
        selected = labels != IGNORE_INDEX                                       # (B, L)
        gen_logits = masked_lm_logits(self.generator, masked, attention_mask, selected)   # (N, V)
        targets = labels[selected]
        gen_logits32 = gen_logits.float()  # fp32 for the loss; argmax over it is also ~4x faster than over bf16
        mlm_loss = F.cross_entropy(gen_logits32, targets)

        disc_input = self.replace_tokens(original, selected, gen_logits.detach(), generator)
        replaced = disc_input != original                                      # (B, L) bool
        rtd_logits = self.discriminate(disc_input, attention_mask)            # (B, L)
        real = attention_mask.bool()
        rtd_loss = F.binary_cross_entropy_with_logits(rtd_logits[real].float(), replaced[real].float())
        loss = mlm_loss + self.rtd_lambda * rtd_loss
        with torch.no_grad():
            mlm_accuracy = (gen_logits32.argmax(-1) == targets).float().mean() if len(targets) else torch.tensor(0.0)
            rtd_accuracy = ((rtd_logits[real] > 0) == replaced[real]).float().mean()
        # the two losses keep their graphs (tests take their gradients separately); callers float() them
        return {"loss": loss, "mlm_loss": mlm_loss, "rtd_loss": rtd_loss,
                "mlm_accuracy": mlm_accuracy, "rtd_accuracy": rtd_accuracy,
                "replaced_share": replaced[real].float().mean(), "masked_tokens": float(len(targets)),
                "rtd_logits": rtd_logits.detach(), "replaced": replaced & real}

    # ------------------------------------------------------------------ saving and loading
    def load_pretrained(self, folder: str | Path) -> None:
        """Start from a saved pair (``folder/generator``, ``folder/discriminator`` as ``save`` writes them,
        e.g. the shipped model on a machine without the full training state). Under GDES the delta is
        set to discriminator - generator embeddings, so that saving again reproduces both tables."""
        from safetensors.torch import load_file

        from ..checkpoint import load_model

        folder = Path(folder)
        generator = load_model(folder / "generator", task="masked-lm", load_tokenizer=False)
        discriminator = load_model(folder / "discriminator", task="base", load_tokenizer=False)
        self.generator.load_state_dict(generator.state_dict())
        self.discriminator.load_state_dict(discriminator.state_dict())
        self.rtd_head.load_state_dict(load_file(str(folder / "discriminator" / "rtd_head.safetensors")))
        with torch.no_grad():
            disc_table = self.discriminator.embeddings.word_embeddings.weight
            if self.embedding_sharing == "gdes":
                self.embedding_delta.copy_(disc_table.float() - self.generator_embeddings.float())

    def export_discriminator(self) -> DebertaModel:
        """The discriminator as a stand-alone encoder (its embedding matrix = the shared one)."""
        with torch.no_grad():
            if self.embedding_sharing != "none":
                table = self.discriminator.embeddings.word_embeddings.weight
                table.copy_(self.discriminator_embedding_matrix().detach())
        return self.discriminator

    def save(self, folder: str | Path, tokenizer: Any = None) -> Path:
        """``folder/discriminator`` (loads as DebertaV2Model; its RTD head in rtd_head.safetensors) and
        ``folder/generator`` (loads as DebertaV2ForMaskedLM; fastdeberta reads it with its EMD)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, model in (("discriminator", self.export_discriminator()), ("generator", self.generator)):
            previous = model.tokenizer
            model.tokenizer = tokenizer if tokenizer is not None else previous
            try:
                with atomic_folder(folder / name) as tmp:
                    model.save_pretrained(tmp)
                    if name == "discriminator":
                        head = {k: v.detach().contiguous() for k, v in self.rtd_head.state_dict().items()}
                        save_file(head, str(tmp / "rtd_head.safetensors"))
            finally:
                model.tokenizer = previous
        return folder


def _init_linear(module: nn.Module, std: float) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        nn.init.zeros_(module.bias)
