"""Fine-tune, evaluate and predict from files: what the ``train`` / ``evaluate`` / ``predict`` commands run.

``finetune`` reads and checks every input (data, labels, columns) before it writes anything, builds
the model with a new head sized for the labels, and hands the features to the shared training loop
(``fastdeberta.training.Trainer``). Beside the model it writes ``finetune.json`` (the task, its
column names and options, the maximum length), which ``evaluate_file`` and ``predict_file`` read so
that a trained folder is all they need.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError
from ..io import atomic_path, atomic_write_text
from . import TASKS
from .base import Task, pad_features, pad_id_of

__all__ = ["DEFAULT_MAX_LENGTH", "SETTINGS_FILE", "evaluate_file", "finetune", "load_for_task", "make_task",
           "predict_file", "read_settings"]

SETTINGS_FILE = "finetune.json"
DEFAULT_MAX_LENGTH = {"sequence-classification": 256, "token-classification": 256, "question-answering": 384,
                      "multiple-choice": 256}


def make_task(name: str, options: dict[str, Any] | None = None) -> Task:
    if name not in TASKS:
        raise InvalidInputError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name](**(options or {}))


def read_settings(model_dir: str | os.PathLike) -> dict[str, Any]:
    """``finetune.json`` of a trained folder ({} when absent, e.g. a checkpoint from the Hub)."""
    path = Path(model_dir) / SETTINGS_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _limit(model: Any, tokenizer: Any, wanted: int | None, task: str) -> int:
    from ..inference.embed import default_max_length

    limit = default_max_length(model, tokenizer)
    return min(wanted or DEFAULT_MAX_LENGTH.get(task, 256), limit)


def load_for_task(model_ref: str | os.PathLike, task: Task, overrides: dict[str, Any] | None = None,
                  new_head: bool = False, **load_options: Any) -> Any:
    """A model with ``task``'s head and its tokenizer.

    ``new_head=True`` (fine-tuning): a checkpoint without this head gets a fresh one, silently.
    Otherwise (evaluation, prediction) a missing head is an error: a random head gives random answers.
    """
    import warnings

    from ..checkpoint import infer_task, load_model

    overrides = dict(overrides or {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(model_ref, task=task.model_task, ignore_mismatched_sizes=bool(overrides),
                           **load_options, **overrides)
    fresh = [w for w in caught if "newly initialised weights" in str(w.message)]
    for w in caught:
        if w not in fresh:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    trained_for = infer_task(model.config)
    if not new_head and trained_for not in ("base", task.model_task):
        raise InvalidInputError(f"{model_ref} holds a {trained_for} model, not a {task.model_task} one; give the "
                                f"--task it was trained for ({trained_for})")
    if fresh and not new_head:
        raise InvalidInputError(f"{model_ref} has no trained {task.model_task} head ({fresh[0].message}); "
                                f"train one with 'fastdeberta train --task {task.name}', or give the --task "
                                "the model was trained for")
    if model.tokenizer is None:
        raise InvalidInputError(f"{model_ref} has no tokenizer files (spm.model, vocab.json + merges.txt, "
                                "tokenizer.json); the model's tokenizer must sit beside its weights")
    return model


def _check_output(output_dir: Path, resume: bool) -> None:
    from ..training.state import latest_checkpoint

    if output_dir.exists() and not output_dir.is_dir():
        raise InvalidInputError(f"--output {output_dir} is a file; give a folder")
    if resume or not output_dir.is_dir():
        return
    if latest_checkpoint(output_dir) is not None or (output_dir / "metrics.jsonl").exists():
        raise InvalidInputError(f"{output_dir} already holds a training run; pass --resume to continue it, or "
                                "choose another --output folder")


def finetune(task_name: str, model: str | os.PathLike, train_file: str | os.PathLike,
             output_dir: str | os.PathLike, *, eval_file: str | os.PathLike | None = None,
             task_options: dict[str, Any] | None = None, max_length: int | None = None,
             lora: Any = None, resume: bool = False, log: Callable[[str], None] | None = None,
             load_options: dict[str, Any] | None = None, **training: Any) -> Any:
    """Fine-tune ``model`` on ``train_file``; ``training`` holds ``TrainingArguments`` fields
    (``learning_rate``, ``num_train_epochs``, ``batch_size``, ``seed``, ``eval_steps``, ...).

    ``lora``: a :class:`~fastdeberta.training.lora.LoraConfig` to train adapters only. Returns the
    loop's ``TrainOutput``; the final model (best by the task's metric when ``eval_file`` is given)
    is saved at the top of ``output_dir``.
    """
    from ..training import Trainer, TrainingArguments
    from ..training.distributed import context

    output_dir = Path(output_dir)
    main = context().main                               # under torchrun only rank 0 writes output_dir
    say = (log or print) if main else (lambda message: None)
    task = make_task(task_name, task_options)
    if main:
        _check_output(output_dir, resume)
    train_examples = task.read(train_file)
    eval_examples = task.read(eval_file) if eval_file is not None else None
    head = task.label_config(train_examples)
    torch.manual_seed(training.get("seed", 42))        # the new head's initial weights follow the seed too
    net = load_for_task(model, task, head, new_head=True, **(load_options or {}))
    tokenizer = net.tokenizer
    length = _limit(net, tokenizer, max_length, task.name)
    features = task.features(train_examples, tokenizer, length)
    if eval_examples is not None:
        task.features(eval_examples, tokenizer, length)        # unknown labels fail now, before any file is written
    metric = task.metric if eval_examples is not None else None
    args = TrainingArguments(output_dir=output_dir, metric_for_best_model=metric, **training)
    save_model = None
    if lora is not None:
        from ..training.lora import add_lora, save_lora, save_merged, trainable_parameters

        add_lora(net, lora)
        trainable, total = trainable_parameters(net)
        say(f"LoRA r={lora.r} on {lora.target_modules}: {trainable:,} trainable parameters of {total:,} "
            f"({100 * trainable / total:.2f}%)")

        def save_model(m: Any, folder: Path) -> None:
            save_merged(m, folder)
            save_lora(m, folder / "adapter")

    settings = {"task": task.name, "options": _task_options(task), "max_length": length,
                "lora": None if lora is None else vars(lora)}
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")
    pad_id = pad_id_of(tokenizer)
    eval_fn = None
    if eval_examples is not None:
        def eval_fn(m: Any) -> dict[str, float]:
            return task.evaluate(m, tokenizer, eval_examples, length, args.batch_size)

    trainer = Trainer(net, args, features, collate_fn=lambda rows: pad_features(rows, pad_id), eval_fn=eval_fn,
                      save_model=save_model, log=log)
    return trainer.train(resume=resume)


def _task_options(task: Task) -> dict[str, Any]:
    """The constructor options of ``task`` (column names, problem type, ...), for finetune.json."""
    keys = ("text_column", "pair_column", "label_column", "problem_type", "tokens_column", "tags_column",
            "label_all_tokens", "doc_stride", "max_answer_len", "max_question_len", "question_column",
            "choices_column", "choice_columns")
    renamed = {"pair_column": "text_pair_column"}
    return {renamed.get(k, k): getattr(task, k) for k in keys if hasattr(task, k)}


def _task_for(model_dir: str | os.PathLike, task_name: str | None, options: dict[str, Any] | None) -> tuple[Task, dict]:
    settings = read_settings(model_dir) if Path(model_dir).is_dir() else {}
    name = task_name or settings.get("task")
    if name is None:
        from ..checkpoint import infer_task
        from ..config import DebertaConfig

        name = infer_task(DebertaConfig.from_pretrained(model_dir))
        if name not in TASKS:
            raise InvalidInputError(f"cannot tell the task of {model_dir}: it has no {SETTINGS_FILE} and its config names "
                             f"no task head; pass --task ({', '.join(TASKS)})")
    merged = dict(settings.get("options", {})) if settings.get("task") == name else {}
    merged.update({k: v for k, v in (options or {}).items() if v is not None})
    return make_task(name, merged), settings


def evaluate_file(model_dir: str | os.PathLike, data_file: str | os.PathLike, *, task_name: str | None = None,
                  task_options: dict[str, Any] | None = None, max_length: int | None = None, batch_size: int = 32,
                  output: str | os.PathLike | None = None, load_options: dict[str, Any] | None = None,
                  ) -> dict[str, float]:
    """The task's metrics of a trained model on a labelled file (also written to ``output`` as JSON)."""
    task, settings = _task_for(model_dir, task_name, task_options)
    examples = task.read(data_file)
    net = load_for_task(model_dir, task, **(load_options or {}))
    task.use_config(net.config)
    length = _limit(net, net.tokenizer, max_length or settings.get("max_length"), task.name)
    metrics = task.evaluate(net, net.tokenizer, examples, length, batch_size)
    metrics = {k: float(v) for k, v in metrics.items()}
    if output is not None:
        atomic_write_text(output, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def predict_file(model_dir: str | os.PathLike, input_file: str | os.PathLike, output_file: str | os.PathLike, *,
                 task_name: str | None = None, task_options: dict[str, Any] | None = None,
                 max_length: int | None = None, batch_size: int = 32, pipeline_options: dict[str, Any] | None = None,
                 load_options: dict[str, Any] | None = None) -> int:
    """One JSON line per input record, in input order, in the task pipeline's format; returns the count."""
    task, settings = _task_for(model_dir, task_name, task_options)
    examples = task.read(input_file, with_labels=False)
    net = load_for_task(model_dir, task, **(load_options or {}))
    task.use_config(net.config)
    length = _limit(net, net.tokenizer, max_length or settings.get("max_length"), task.name)
    results = _predict(task, net, examples, length, batch_size, pipeline_options or {})
    with atomic_path(output_file) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for result in results:
                handle.write(json.dumps(result, ensure_ascii=False) + "\n")
    return len(results)


def _predict(task: Task, net: Any, examples: list[Any], length: int, batch_size: int,
             options: dict[str, Any]) -> list[Any]:
    from ..inference import task_pipelines as tp

    if task.name == "sequence-classification":
        pipe = tp.TextClassificationPipeline(net, batch_size=batch_size, max_length=length)
        inputs = [{"text": ex.text, "text_pair": ex.text_pair} if ex.text_pair else ex.text for ex in examples]
        top_k = options.get("top_k", "legacy")
        return pipe(inputs, top_k=top_k, function_to_apply=options.get("function_to_apply"))
    if task.name == "token-classification":
        pipe = tp.TokenClassificationPipeline(net, batch_size=batch_size, max_length=length,
                                              aggregation_strategy=options.get("aggregation_strategy") or "first",
                                              stride=options.get("stride"))
        return pipe([ex.text if ex.text is not None else " ".join(ex.tokens) for ex in examples])
    if task.name == "question-answering":
        pipe = tp.QuestionAnsweringPipeline(net, batch_size=batch_size, max_length=length,
                                            doc_stride=task.doc_stride, max_answer_len=task.max_answer_len,
                                            top_k=1 if options.get("top_k") in (None, "legacy") else options["top_k"],
                                            handle_impossible_answer=bool(options.get("handle_impossible_answer")))
        answers = pipe([{"question": ex.question, "context": ex.context} for ex in examples])
        return [({"id": ex.id, **a} if isinstance(a, dict) else {"id": ex.id, "answers": a})
                for ex, a in zip(examples, answers)]
    return task.predict(net, net.tokenizer, examples, length, batch_size)
