"""Fine-tuning tasks: one module per task with its data, features, metrics and post-processing.

``TASKS[name](**columns)`` gives the task object the ``train`` / ``evaluate`` / ``predict`` commands use.
"""

from __future__ import annotations

from .base import IGNORE_INDEX, Task, model_outputs, pad_features
from .choice import MultipleChoiceTask
from .classification import SequenceClassificationTask
from .entities import entity_scores, extract_entities
from .ner import TokenClassificationTask, align_words
from .qa import QuestionAnsweringTask, decode_answers, qa_features
from .squad_metrics import normalize_answer, squad_scores
from .zero_shot import zero_shot_scores

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (SequenceClassificationTask, TokenClassificationTask, QuestionAnsweringTask,
                              MultipleChoiceTask)
}

__all__ = ["IGNORE_INDEX", "TASKS", "MultipleChoiceTask", "QuestionAnsweringTask", "SequenceClassificationTask",
           "Task", "TokenClassificationTask", "align_words", "decode_answers", "entity_scores", "extract_entities",
           "model_outputs", "normalize_answer", "pad_features", "qa_features", "squad_scores", "zero_shot_scores"]

# the file-level API (uses TASKS above): fine-tune, evaluate and predict from data files
from .run import evaluate_file, finetune, predict_file  # noqa: E402

__all__ += ["evaluate_file", "finetune", "predict_file"]
