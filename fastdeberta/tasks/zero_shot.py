"""Zero-shot classification with an NLI model: "does this text entail 'This example is {label}.'?"

Every (text, candidate label) pair is one premise / hypothesis input; all pairs of all texts go
through the model in length-sorted batches (many labels do not mean many sequential passes). Scores
follow transformers' zero-shot pipeline: one label of several -> softmax of the entailment logits
over the candidate labels; ``multi_label`` (or a single candidate) -> for each label on its own, the
softmax of (contradiction, entailment) and its entailment part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InvalidInputError
from .base import model_outputs, pad_id_of

__all__ = ["entailment_ids", "parse_labels", "zero_shot_scores"]


def entailment_ids(config: Any) -> tuple[int, int]:
    """``(entailment, contradiction)`` class ids from the model's label names (as transformers finds them:
    the first label whose name starts with "entail"; contradiction is 0, or the last id when entailment is 0)."""
    entail = next((i for name, i in (config.label2id or {}).items() if name.lower().startswith("entail")), None)
    if entail is None:
        names = list(config.label2id or {})
        raise InvalidInputError(f"zero-shot classification needs an NLI model with an 'entailment' label; this model's "
                         f"labels are {names}. Use an MNLI/XNLI fine-tuned checkpoint")
    contradiction = config.labels_count - 1 if entail == 0 else 0
    return entail, contradiction


def parse_labels(candidate_labels: str | Sequence[str]) -> list[str]:
    """A list of names; a string is split on commas (transformers' convention)."""
    if isinstance(candidate_labels, str):
        labels = [x.strip() for x in candidate_labels.split(",") if x.strip()]
    else:
        labels = [str(x).strip() for x in candidate_labels]
    if not labels or not all(labels):
        raise InvalidInputError(f"candidate_labels must name at least one non-empty label, got {candidate_labels!r}")
    return labels


def zero_shot_scores(model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[str],
                     hypothesis_template: str = "This example is {}.", multi_label: bool = False,
                     max_length: int = 512, batch_size: int = 32) -> torch.Tensor:
    """(N texts, K labels) scores as described above."""
    if "{}" not in hypothesis_template:
        raise InvalidInputError(f"hypothesis_template must contain '{{}}' where the label goes, got {hypothesis_template!r}")
    entail, contradiction = entailment_ids(model.config)
    hypotheses = [hypothesis_template.format(label) for label in labels]
    premises = [text for text in texts for _ in labels]
    enc = tokenizer(premises, hypotheses * len(texts), truncation="only_first", max_length=max_length)
    features = [{"input_ids": ids, "token_type_ids": types}
                for ids, types in zip(enc["input_ids"], enc["token_type_ids"])]
    outputs, _ = model_outputs(model, features, pad_id_of(tokenizer), batch_size)
    logits = torch.stack(outputs["logits"]).view(len(texts), len(labels), -1)      # (N, K, classes)
    if multi_label or len(labels) == 1:
        return logits[..., [contradiction, entail]].softmax(-1)[..., 1]
    return logits[..., entail].softmax(-1)
