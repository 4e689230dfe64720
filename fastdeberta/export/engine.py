"""The onnxruntime engine: an exported folder loaded as a model that fastdeberta's pipelines and
``encode`` accept.

``fastdeberta.from_pretrained(FOLDER)`` returns an :class:`OrtModel` when the folder holds an ONNX
export and no PyTorch weights (or always with ``engine="onnxruntime"``). It offers the surface the
inference code uses: ``config``, ``task``, ``tokenizer``, ``base_model``, ``eval()``, ``device``,
``parameters()`` and a ``__call__`` that takes transformers' keyword arguments and returns the same
output classes as the PyTorch models (torch tensors on the CPU).

onnxruntime is optional and imported only here, on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import DebertaConfig
from ..errors import FastDebertaError
from ..model.outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

ONNX_FILE = "model.onnx"
QUANTIZED_FILE = "model_quantized.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "fastdeberta-onnx"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

OUTPUT_CLASSES: dict[str, type[ModelOutput]] = {
    "base": BaseModelOutput,
    "masked-lm": MaskedLMOutput,
    "sequence-classification": SequenceClassifierOutput,
    "token-classification": TokenClassifierOutput,
    "question-answering": QuestionAnsweringModelOutput,
    "multiple-choice": MultipleChoiceModelOutput,
}


class OnnxRuntimeMissingError(FastDebertaError, ImportError):
    """onnxruntime (an optional dependency) is needed and not installed."""


def require_onnxruntime():
    """The onnxruntime module, or a clear error saying how to install it."""
    try:
        import onnxruntime
    except ImportError as err:
        raise OnnxRuntimeMissingError(
            "onnxruntime is not installed, and ONNX export and the onnxruntime engine need it (with onnx and "
            "onnxscript for export): pip install 'fastdeberta[onnx]'"
        ) from err
    return onnxruntime


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def make_session(path: str | os.PathLike, num_threads: int | None = None, profile: bool = False,
                 spinning: bool = True):
    """An onnxruntime CPU session: intra-op threads = the cores this process may use, every graph
    optimisation on (constant folding turns the position projections of the weights into constants).
    ``spinning=False``: idle worker threads sleep instead of spinning (for CPUs shared with other work)."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = num_threads or cpu_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = profile
    if profile:   # onnxruntime writes the trace into the working directory unless told otherwise
        import tempfile

        options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="ort-profile-")) / "profile")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def is_onnx_folder(folder: str | os.PathLike) -> bool:
    """True for a folder with an ONNX export and no PyTorch weights (then loaded with onnxruntime)."""
    folder = Path(folder)
    has_graph = (folder / ONNX_FILE).is_file() or (folder / MANIFEST_FILE).is_file()
    return has_graph and not any((folder / name).is_file() for name in WEIGHT_FILES)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); export the model again.") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not a fastdeberta ONNX manifest (format {MANIFEST_FORMAT!r} expected).")
    return manifest


class OrtModel:
    """An exported DeBERTa graph run by onnxruntime, shaped like a fastdeberta model.

    Inputs are int64 (converted as needed); outputs are float32 torch tensors. Only what the graph
    computes is available: no ``labels`` (loss), ``output_hidden_states`` or ``output_attentions``.
    """

    training = False

    def __init__(self, session: Any, config: DebertaConfig, task: str, *, tokenizer: Any = None,
                 manifest: dict[str, Any] | None = None, name_or_path: str | None = None):
        self.session, self.config, self.task = session, config, task
        self.tokenizer, self.manifest, self.name_or_path = tokenizer, manifest or {}, name_or_path
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.enhanced_mask_decoder = bool(self.manifest.get("enhanced_mask_decoder", False))
        self.max_length = self.manifest.get("max_length") if self._has_hard_limit() else None

    def _has_hard_limit(self) -> bool:
        return bool(self.config.position_biased_input or self.enhanced_mask_decoder)

    def __repr__(self) -> str:
        return f"OrtModel(task={self.task!r}, path={self.name_or_path!r}, outputs={self.output_names})"

    # -- the surface the inference code uses ------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def parameters(self) -> Iterator[torch.Tensor]:
        """No trainable parameters; one empty CPU tensor so that ``next(model.parameters()).device`` works."""
        return iter((torch.empty(0),))

    def eval(self) -> OrtModel:
        return self

    def train(self, mode: bool = True) -> OrtModel:
        if mode:
            raise NotImplementedError("an onnxruntime model cannot be trained; load the PyTorch checkpoint to train")
        return self

    def to(self, target: Any) -> OrtModel:
        if isinstance(target, torch.dtype):
            if target != torch.float32:
                raise ValueError(f"the onnxruntime engine runs the exported float32 graph; dtype {target} is not "
                                 "available (export with quantize='int8' for a smaller, faster graph)")
            return self
        if torch.device(target).type != "cpu":
            raise ValueError(f"the onnxruntime engine runs on the CPU; device {str(target)!r} is not supported")
        return self

    @property
    def base_model(self) -> OrtModel:
        """The encoder alone (``last_hidden_state``): every export but multiple choice outputs it."""
        if self.task == "base":
            return self
        if "last_hidden_state" not in self.output_names:
            raise NotImplementedError(
                f"this {self.task!r} export has no last_hidden_state output, so it cannot give embeddings; "
                "export the model with task='base' for that.")
        view = OrtModel(self.session, self.config, "base", tokenizer=self.tokenizer, manifest=self.manifest,
                        name_or_path=self.name_or_path)
        view.enhanced_mask_decoder = self.enhanced_mask_decoder
        return view

    def encode(self, texts, **kwargs: Any):
        from ..inference.embed import encode

        return encode(self, texts, **kwargs)

    # -- running ------------------------------------------------------------------------------------
    def _feed(self, input_ids, attention_mask, token_type_ids) -> dict[str, np.ndarray]:
        if input_ids is None:
            raise ValueError("the onnxruntime engine needs input_ids (inputs_embeds is not part of the graph)")
        ids = torch.as_tensor(input_ids)
        expected = 3 if self.task == "multiple-choice" else 2
        if ids.dim() != expected:
            layout = "(batch, choices, sequence)" if expected == 3 else "(batch, sequence)"
            raise ValueError(f"input_ids must have shape {layout}, got {tuple(ids.shape)}")
        if ids.shape[-1] == 0:
            raise ValueError("empty input: sequence length is 0; every input needs at least one token")
        if self.max_length is not None and ids.shape[-1] > self.max_length:
            raise ValueError(f"input has {ids.shape[-1]} tokens but this model reads absolute positions and supports "
                             f"at most {self.max_length}; truncate the input (tokenizer(..., truncation=True)).")
        if ids.numel() and (int(ids.max()) >= self.config.vocab_size or int(ids.min()) < 0):
            bad = int(ids.max()) if int(ids.max()) >= self.config.vocab_size else int(ids.min())
            raise ValueError(f"token id {bad} is outside the vocabulary (vocab_size={self.config.vocab_size}); "
                             "the tokenizer does not match this model.")
        values = {"input_ids": ids,
                  "attention_mask": torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask),
                  "token_type_ids": torch.zeros_like(ids) if token_type_ids is None else torch.as_tensor(token_type_ids)}
        for name in ("attention_mask", "token_type_ids"):
            if tuple(values[name].shape) != tuple(ids.shape):
                raise ValueError(f"{name} has shape {tuple(values[name].shape)}, expected {tuple(ids.shape)}")
        return {name: values[name].detach().cpu().numpy().astype(np.int64, copy=False) for name in self.input_names}

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                 inputs_embeds=None, labels=None, output_hidden_states: bool = False,
                 output_attentions: bool = False, return_dict: bool = True, **unused: Any) -> Any:
        if inputs_embeds is not None or position_ids is not None:
            raise ValueError("the onnxruntime engine takes input_ids, attention_mask and token_type_ids only "
                             "(position_ids and inputs_embeds are not inputs of the exported graph)")
        if labels is not None or unused.get("start_positions") is not None:
            raise ValueError("the onnxruntime engine computes no loss; load the PyTorch checkpoint to train")
        if output_hidden_states or output_attentions:
            raise NotImplementedError(
                "the onnxruntime engine returns the exported outputs only; hidden states of every layer and "
                "attention probabilities need the PyTorch engine (e.g. encode(layer=-1) works, other layers do not).")
        wanted = ["last_hidden_state"] if self.task == "base" else [n for n in self.output_names
                                                                    if n != "last_hidden_state"]
        values = self.session.run(wanted, self._feed(input_ids, attention_mask, token_type_ids))
        out = OUTPUT_CLASSES[self.task](**{n: torch.from_numpy(v) for n, v in zip(wanted, values)})
        return out if return_dict else out.to_tuple()

    forward = __call__


def load_onnx_model(folder: str | os.PathLike, task: str | None = None, *, file_name: str | None = None,
                    device: Any = None, dtype: Any = None, load_tokenizer: bool = True,
                    num_threads: int | None = None, name_or_path: str | None = None,
                    **config_overrides: Any) -> OrtModel:
    """Load an exported folder into an :class:`OrtModel` (``fastdeberta.from_pretrained`` calls this).

    ``file_name``: the graph to run (default ``model.onnx``; ``model_quantized.onnx`` for the int8
    graph); ``num_threads``: intra-op threads (default: every core this process may use).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    graph = folder / (file_name or manifest.get("onnx_file", ONNX_FILE))
    if not graph.is_file():
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise FileNotFoundError(f"no ONNX graph {graph.name} in {folder} (it holds {present}); export one with "
                                "`fastdeberta export onnx --model CHECKPOINT --output FOLDER`.")
    exported_task = manifest.get("task", "base")
    encoder_only = task == "base" and exported_task != "base"   # like loading a head checkpoint as the encoder
    if task is not None and task != exported_task and not encoder_only:
        raise ValueError(f"{folder} holds a {exported_task!r} export, not {task!r}; export the checkpoint for "
                         f"task {task!r}.")
    if config_overrides:
        raise ValueError(f"an exported graph cannot be changed by config overrides ({sorted(config_overrides)}); "
                         "pass them when exporting from the PyTorch checkpoint.")
    if device is not None:
        from ..checkpoint import check_device

        if check_device(device).type != "cpu":
            raise ValueError(f"the onnxruntime engine runs on the CPU; device {str(device)!r} is not supported")
    if dtype not in (None, "auto", "float32", "fp32", "float", torch.float32):
        raise ValueError(f"the onnxruntime engine runs the exported float32 graph; dtype {dtype!r} is not available")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {folder}; an ONNX export folder needs one (export again).")
    config = DebertaConfig.from_json_file(folder / "config.json")
    tokenizer = None
    if load_tokenizer:
        from ..checkpoint import _try_tokenizer

        tokenizer = _try_tokenizer(folder)
    model = OrtModel(make_session(graph, num_threads), config, exported_task, tokenizer=tokenizer, manifest=manifest,
                     name_or_path=str(name_or_path or folder))
    return model.base_model if encoder_only else model
