"""DeBERTa models: the base encoder and one class per task head.

State-dict keys equal transformers' (``deberta.embeddings...``, ``deberta.encoder.layer.N...``,
``cls.predictions...`` / ``lm_predictions.lm_head...``, ``pooler``, ``classifier``, ``qa_outputs``),
so checkpoints move between the two without conversion.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..compat import SentenceTransformersMixin
from ..config import DebertaConfig
from ..errors import InvalidInputError
from .embeddings import DebertaEmbeddings
from .encoder import DebertaEncoder, EncoderOutput
from .heads import ContextPooler, LegacyMLMHead, LMHead, sequence_classification_loss
from .inputs import as_tensor, check_class_labels, check_inputs
from .layers import Dropout, init_weights
from .outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

# The legacy MLM head's decoder is the word embedding matrix and the head bias under a second name, as in
# transformers: present in state_dict() (so load_state_dict(strict=True) works both ways), left out of files.
TIED_KEYS = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


class DebertaPreTrained(SentenceTransformersMixin, nn.Module):
    """Shared behaviour: initialisation, saving, attention implementation switch, embeddings API;
    sentence-transformers' API (``encode``, ``similarity``, prompts, ...) from the mixin."""

    task: str = "base"
    hf_suffix: str = "Model"
    main_input_name = "input_ids"

    def __init__(self, config: DebertaConfig):
        super().__init__()
        self.config = config
        self.tokenizer: Any = None          # set by fastdeberta.from_pretrained when vocab files exist
        self.name_or_path: str | None = None

    def init_weights(self) -> None:
        std = self.config.initializer_range
        self.apply(lambda m: init_weights(m, std))
        for module in self.modules():
            for name in ("q_bias", "v_bias", "bias"):
                p = getattr(module, name, None)
                if isinstance(p, nn.Parameter) and not isinstance(module, (nn.Linear, nn.LayerNorm, nn.Conv1d)):
                    nn.init.zeros_(p)

    @property
    def base_model(self) -> DebertaModel:
        return self if isinstance(self, DebertaModel) else self.deberta

    @property
    def hf_architecture(self) -> str:
        return ("Deberta" if self.config.is_v1 else "DebertaV2") + self.hf_suffix

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, trainable_only: bool = False) -> int:
        params = {id(p): p for p in self.parameters() if p.requires_grad or not trainable_only}
        return sum(p.numel() for p in params.values())

    def set_attention_implementation(self, name: str) -> None:
        """"fast" (default: fused bias + scaled_dot_product_attention) or "reference" (the equations)."""
        from .attention import IMPLEMENTATIONS

        if name not in IMPLEMENTATIONS:
            raise InvalidInputError(f"unknown attention implementation {name!r}; choose one of {IMPLEMENTATIONS}")
        for layer in self.base_model.encoder.layer:
            layer.attention.self.implementation = name

    # ------------------------------------------------------------------ transformers' embeddings API
    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        self.base_model.embeddings.word_embeddings = embeddings
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Module | None:
        """The output projection onto the vocabulary (masked-LM only; None for other models)."""
        return None

    def tie_weights(self) -> None:
        """Re-tie output projections to the word embeddings (after replacing either)."""

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Grow or shrink the vocabulary to ``new_num_tokens`` rows (rounded up to a multiple of
        ``pad_to_multiple_of``); kept rows keep their values. New rows (and masked-LM bias entries) are
        the mean of the old ones, as transformers' ``mean_resizing`` does (it adds noise of ~1e-5 of
        their spread; here they are exactly the mean), or initialised as in training with
        ``mean_resizing=False``. Updates ``config.vocab_size``; returns the new embedding module."""
        old = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return old
        size = old.num_embeddings if new_num_tokens is None else new_num_tokens
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidInputError(f"new_num_tokens must be a positive int, got {new_num_tokens!r}")
        if pad_to_multiple_of is not None:
            if isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                raise InvalidInputError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
            size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
        new = nn.Embedding(size, old.embedding_dim, padding_idx=old.padding_idx,
                           device=old.weight.device, dtype=old.weight.dtype)
        init_weights(new, self.config.initializer_range)
        kept = min(size, old.num_embeddings)
        with torch.no_grad():
            new.weight[:kept] = old.weight[:kept]
            if mean_resizing and size > kept:
                new.weight[kept:] = old.weight.float().mean(dim=0).to(old.weight.dtype)
        new.weight.requires_grad_(old.weight.requires_grad)
        self.base_model.embeddings.word_embeddings = new
        self._resize_output_bias(size, mean_resizing)
        self.config.vocab_size = size
        self.tie_weights()
        return new

    def _resize_output_bias(self, size: int, mean_resizing: bool) -> None:
        """Models with a vocabulary-sized output bias resize it here (masked-LM)."""

    def gradient_checkpointing_enable(self) -> None:
        self.base_model.encoder.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.encoder.gradient_checkpointing = False

    def export_config(self) -> DebertaConfig:
        """The config to write next to the weights: architectures and the weights' ``dtype`` filled in
        (as transformers 5 writes it; its older ``torch_dtype`` key and the load path are dropped)."""
        changes: dict[str, Any] = {"architectures": [self.hf_architecture],
                                   "dtype": str(self.dtype).removeprefix("torch.")}
        config = self.config.replace(**changes)
        for stale in ("torch_dtype", "_name_or_path"):
            config.extra.pop(stale, None)
        return config

    def save_pretrained(self, folder: str | os.PathLike, *, save_tokenizer: bool = True) -> Path:
        """Write config.json + model.safetensors (loadable by transformers unchanged)."""
        from ..checkpoint import save_checkpoint

        tokenizer = self.tokenizer if save_tokenizer and hasattr(self.tokenizer, "save_pretrained") else None
        folder = save_checkpoint(self, folder, tokenizer=tokenizer)   # all files or none replaced
        if tokenizer is not None:   # sentence-transformers loads a folder with a tokenizer: SentenceTransformer(folder)
            self.save_sentence_transformers_files(folder)
        return folder

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        from ..checkpoint import load_model

        return load_model(name_or_path, task=cls.task, **kwargs)


class DebertaModel(DebertaPreTrained):
    """The DeBERTa encoder without a head: ``last_hidden_state`` (B, L, D)."""

    def __init__(self, config: DebertaConfig, keep_absolute_positions: bool = False):
        super().__init__(config)
        self.embeddings = DebertaEmbeddings(config, keep_absolute_positions)
        self.encoder = DebertaEncoder(config)
        self.init_weights()

    def features(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> tuple[EncoderOutput, torch.Tensor]:
        """Run embeddings + encoder; returns the encoder output and the position ids used.
        ``output_hidden_states`` / ``output_attentions`` None: the config's value (a load-time option)."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        words = self.embeddings.word_embeddings.weight
        checked = check_inputs(self.config, words.device, words.dtype, input_ids, attention_mask, token_type_ids,
                               position_ids, inputs_embeds)
        hidden = self.embeddings(checked.input_ids, checked.token_type_ids, checked.position_ids,
                                 checked.attention_mask, checked.inputs_embeds)
        out = self.encoder(hidden, checked.attention_mask, output_hidden_states=output_hidden_states,
                           output_attentions=output_attentions)
        return out, checked.position_ids

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool = True, **unused: Any) -> BaseModelOutput:
        out, _ = self.features(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                               output_hidden_states, output_attentions)
        result = BaseModelOutput(out.last_hidden_state, out.hidden_states, out.attentions)
        return result if return_dict else result.to_tuple()


class DebertaForMaskedLM(DebertaPreTrained):
    """Masked-token prediction. With ``enhanced_mask_decoder`` (the original DeBERTa MLM), absolute
    positions enter only here: the last layer is applied twice more with queries = its input +
    absolute position embeddings, keys/values = its input, before the MLM head.

    head_layout: "legacy" (``cls.predictions.*``) or "lm_predictions" (``lm_predictions.lm_head.*``,
    the original layout); default from ``config.legacy``.
    """

    task = "masked-lm"
    hf_suffix = "ForMaskedLM"
    emd_steps = 2

    def __init__(self, config: DebertaConfig, *, head_layout: str | None = None,
                 enhanced_mask_decoder: bool | None = None):
        super().__init__(config)
        if enhanced_mask_decoder is None:
            enhanced_mask_decoder = not config.position_biased_input and config.relative_attention
        self.enhanced_mask_decoder = bool(enhanced_mask_decoder)
        self.deberta = DebertaModel(config, keep_absolute_positions=self.enhanced_mask_decoder)
        if head_layout is None:
            head_layout = "legacy" if config.legacy else "lm_predictions"
        if head_layout not in ("legacy", "lm_predictions"):
            raise InvalidInputError(f"head_layout must be 'legacy' or 'lm_predictions', got {head_layout!r}")
        self.head_layout = head_layout
        if head_layout == "legacy":
            self.cls = LegacyMLMHead(config)
        else:
            self.lm_predictions = LMHead(config)
        self.init_weights()
        self.tie_weights()   # after init: initialising the tied decoder would overwrite the embeddings

    def tie_weights(self) -> None:
        """Legacy layout: ``cls.predictions.decoder`` = word embeddings + head bias (the same tensors)."""
        if self.head_layout != "legacy":
            return
        words = self.deberta.embeddings.word_embeddings.weight
        decoder = nn.Linear(words.shape[1], words.shape[0], device="meta")
        decoder.weight, decoder.bias = words, self.cls.predictions.bias
        self.cls.predictions.decoder = decoder

    def get_output_embeddings(self) -> nn.Linear:
        """The vocabulary projection: a Linear sharing the word embeddings and the head bias."""
        if self.head_layout == "legacy":
            return self.cls.predictions.decoder
        words = self.deberta.embeddings.word_embeddings.weight
        decoder = nn.Linear(words.shape[1], words.shape[0], device="meta")   # not registered: no extra keys
        decoder.weight, decoder.bias = words, self.lm_predictions.lm_head.bias
        return decoder

    def _resize_output_bias(self, size: int, mean_resizing: bool) -> None:
        head = self.cls.predictions if self.head_layout == "legacy" else self.lm_predictions.lm_head
        old = head.bias
        new = torch.zeros(size, device=old.device, dtype=old.dtype)
        kept = min(size, old.shape[0])
        with torch.no_grad():
            new[:kept] = old[:kept]
            if mean_resizing and size > kept:
                new[kept:] = old.float().mean().to(old.dtype)
        head.bias = nn.Parameter(new, requires_grad=old.requires_grad)

    def export_config(self) -> DebertaConfig:
        return super().export_config().replace(legacy=self.head_layout == "legacy")

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        words = self.deberta.embeddings.word_embeddings.weight
        return (self.cls if self.head_layout == "legacy" else self.lm_predictions)(hidden, words)

    def decoder_states(self, out: EncoderOutput, position_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states the MLM head reads: the EMD output, or the last layer's output."""
        if not self.enhanced_mask_decoder:
            return out.last_hidden_state
        emb = self.deberta.embeddings
        absolute = emb.absolute_positions(position_ids)                          # (1|B, L, E)
        if emb.embed_proj is not None:
            absolute = emb.embed_proj(absolute)                                   # (1|B, L, D)
        keys = out.penultimate                                                    # (B, L, D)
        query = keys + absolute
        last_layer = self.deberta.encoder.layer[-1]
        state = out.state
        for _ in range(self.emd_steps):
            query, _ = last_layer(keys, state.key_mask, state.rel_embeddings, state.slots, query_states=query)
        return query

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool = True, **unused: Any) -> MaskedLMOutput:
        out, position_ids = self.deberta.features(input_ids, attention_mask, token_type_ids, position_ids,
                                                  inputs_embeds, output_hidden_states, output_attentions)
        logits = self.head(self.decoder_states(out, position_ids))               # (B, L, V)
        loss = None
        if labels is not None:
            labels = check_class_labels("labels", labels, self.config.vocab_size, logits.shape[0] * logits.shape[1])
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), labels.view(-1).long(),
                                   ignore_index=-100)
        result = MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)
        return result if return_dict else result.to_tuple()


class DebertaForSequenceClassification(DebertaPreTrained):
    task = "sequence-classification"
    hf_suffix = "ForSequenceClassification"

    def __init__(self, config: DebertaConfig):
        super().__init__(config)
        self.num_labels = config.labels_count
        self.deberta = DebertaModel(config)
        self.pooler = ContextPooler(config)
        self.classifier = nn.Linear(config.pooler_size, self.num_labels)
        drop = config.cls_dropout if config.cls_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(drop)
        self.init_weights()

    def _class_id_labels(self, labels: torch.Tensor) -> bool:
        """Whether ``labels`` are integer class ids (not regression targets or label distributions; float
        class ids are truncated by the loss, as in transformers, so they are not range-checked here)."""
        problem = self.config.problem_type
        if problem in ("regression", "multi_label_classification") or self.num_labels == 1:
            return False
        if labels.is_floating_point():
            return False
        return problem == "single_label_classification" or labels.dim() == 1 or labels.shape[-1] == 1

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool = True, **unused: Any):
        out, _ = self.deberta.features(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                       output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(self.pooler(out.last_hidden_state)))   # (B, num_labels)
        loss = None
        if labels is not None:
            labels = as_tensor("labels", labels)
            if self._class_id_labels(labels):
                check_class_labels("labels", labels, self.num_labels, logits.shape[0], ignore_negative=True)
            loss = sequence_classification_loss(logits, labels, self.config.problem_type, self.num_labels)
        result = SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)
        return result if return_dict else result.to_tuple()


class DebertaForTokenClassification(DebertaPreTrained):
    task = "token-classification"
    hf_suffix = "ForTokenClassification"

    def __init__(self, config: DebertaConfig):
        super().__init__(config)
        self.num_labels = config.labels_count
        self.deberta = DebertaModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.init_weights()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool = True, **unused: Any):
        out, _ = self.deberta.features(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                       output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(out.last_hidden_state))            # (B, L, num_labels)
        loss = None
        if labels is not None:
            labels = check_class_labels("labels", labels, self.num_labels, logits.shape[0] * logits.shape[1])
            loss = F.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1).long())
        result = TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions)
        return result if return_dict else result.to_tuple()


class DebertaForQuestionAnswering(DebertaPreTrained):
    task = "question-answering"
    hf_suffix = "ForQuestionAnswering"

    def __init__(self, config: DebertaConfig):
        super().__init__(config)
        self.num_labels = config.labels_count
        self.deberta = DebertaModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, self.num_labels)
        self.init_weights()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool = True, **unused: Any):
        out, _ = self.deberta.features(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                       output_hidden_states, output_attentions)
        logits = self.qa_outputs(out.last_hidden_state)                          # (B, L, 2)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            start_positions = check_class_labels("start_positions", start_positions, 2**62, start_logits.size(0),
                                                 ignore_negative=True)
            end_positions = check_class_labels("end_positions", end_positions, 2**62, end_logits.size(0),
                                               ignore_negative=True)
            ignored = start_logits.size(1)   # positions outside the sequence are ignored
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (F.cross_entropy(start_logits.float(), start, ignore_index=ignored)
                    + F.cross_entropy(end_logits.float(), end, ignore_index=ignored)) / 2
        result = QuestionAnsweringModelOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions)
        return result if return_dict else result.to_tuple()


class DebertaForMultipleChoice(DebertaPreTrained):
    """Inputs of shape (B, num_choices, L); one score per choice."""

    task = "multiple-choice"
    hf_suffix = "ForMultipleChoice"

    def __init__(self, config: DebertaConfig):
        super().__init__(config)
        self.deberta = DebertaModel(config)
        self.pooler = ContextPooler(config)
        self.classifier = nn.Linear(config.pooler_size, 1)
        drop = config.cls_dropout if config.cls_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(drop)
        self.init_weights()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool = True, **unused: Any):
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None or as_tensor("input_ids" if input_ids is not None else "inputs_embeds", ref).dim() < 3:
            raise InvalidInputError("multiple choice expects inputs of shape (batch, num_choices, sequence)")
        num_choices = ref.shape[1]

        def flat(name, t):     # (B, C, ...) -> (B * C, ...)
            return None if t is None else as_tensor(name, t).reshape(-1, *t.shape[2:])

        out, _ = self.deberta.features(flat("input_ids", input_ids), flat("attention_mask", attention_mask),
                                       flat("token_type_ids", token_type_ids), flat("position_ids", position_ids),
                                       flat("inputs_embeds", inputs_embeds), output_hidden_states,
                                       output_attentions)
        logits = self.classifier(self.dropout(self.pooler(out.last_hidden_state))).view(-1, num_choices)
        loss = None
        if labels is not None:
            labels = check_class_labels("labels", labels, num_choices, logits.shape[0])
            loss = F.cross_entropy(logits.float(), labels.view(-1).long())
        result = MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions)
        return result if return_dict else result.to_tuple()


TASKS: dict[str, type[DebertaPreTrained]] = {
    cls.task: cls for cls in (DebertaModel, DebertaForMaskedLM, DebertaForSequenceClassification,
                              DebertaForTokenClassification, DebertaForQuestionAnswering,
                              DebertaForMultipleChoice)
}
TASK_BY_SUFFIX = {cls.hf_suffix: task for task, cls in TASKS.items()}
