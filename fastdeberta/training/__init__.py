"""Training: the shared loop (``Trainer``), its optimizer/schedule helpers, checkpoints, and the MLM
building blocks the demo uses."""

from .loop import Trainer, TrainingArguments, TrainOutput, resolve_precision
from .mlm import mask_tokens, special_ids_of, train_mlm
from .optim import lr_schedule, param_groups

__all__ = ["TrainOutput", "Trainer", "TrainingArguments", "lr_schedule", "mask_tokens", "param_groups",
           "resolve_precision", "special_ids_of", "train_mlm"]

# fine-tuning: LoRA adapters (the tasks themselves live in fastdeberta.tasks)
from .lora import LoraConfig, add_lora, load_lora, merge_lora, save_lora, trainable_parameters  # noqa: E402

__all__ += ["LoraConfig", "add_lora", "load_lora", "merge_lora", "save_lora", "trainable_parameters"]
