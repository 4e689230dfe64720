"""ONNX export of every DeBERTa head, correct at every sequence length.

Why the usual exports go wrong: DeBERTa's relative-position index (bucketed distance ``i - j`` for
every query/key pair) is usually built from Python integers, so a traced graph holds that index as a
constant for the traced length and gives wrong scores at every other length. Here the graph is
traced with

* ``encoder.positions_in_graph``: the index is computed *inside* the graph from the runtime length
  (``model.positions.GraphSlots``: arange, log buckets, clamp), over the whole relative table;
* the ``reference`` attention path (the paper's equations: gather-based c2p / p2c), whose shapes all
  follow the input's, instead of the fast path's Python-int tiling;
* ``torch.onnx.export(dynamo=True)`` with symbolic batch and sequence dimensions.

Every export is checked before it is kept: onnxruntime against the PyTorch model at several lengths
(1, 7, 128, 300, 512 and one past the traced length, capped by ``max_length``) with padded batches.
The folder is written atomically (:func:`fastdeberta.io.atomic_folder`): an export that fails the
check leaves nothing under the output path (and an older export there untouched).

Folder layout (like optimum's): ``model.onnx``, ``config.json``, the tokenizer files,
``manifest.json`` (opset, inputs/outputs with symbolic shapes, the parity measured at export,
int8 accuracy when quantised) and, with ``quantize="int8"``, ``model_quantized.onnx``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import FastDebertaError
from ..io import atomic_folder
from ..model.deberta import TASKS, DebertaPreTrained
from .engine import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    ONNX_FILE,
    QUANTIZED_FILE,
    is_onnx_folder,
    require_onnxruntime,
)
from .verify import check_parity, int8_accuracy

DEFAULT_OPSET = 18
TRACE_LENGTH = 16           # the example length the graph is traced at (checked at others)
TOLERANCE = 1e-4            # fp32 parity: max abs difference, relative to max(1, max |reference|)
QUANTIZE_CHOICES = ("int8",)


class ExportError(FastDebertaError, ValueError):
    """An export that cannot be made as asked (unknown task, wrong option, unsupported model)."""


class ParityError(ExportError):
    """The exported graph disagrees with the PyTorch model; nothing was written."""


@dataclass
class ExportResult:
    folder: Path
    manifest: dict[str, Any]


# ----------------------------------------------------------------------------- graph signature
def input_names(model: DebertaPreTrained) -> list[str]:
    """transformers' names; ``token_type_ids`` only when the model has token types."""
    names = ["input_ids", "attention_mask"]
    if model.config.type_vocab_size > 0:
        names.append("token_type_ids")
    return names


def output_names(task: str) -> list[str]:
    """The head's outputs, plus the encoder's ``last_hidden_state`` (for ``encode`` on any export;
    not for multiple choice, whose encoder runs on the flattened choices)."""
    heads = {
        "base": [],
        "masked-lm": ["logits"],
        "sequence-classification": ["logits"],
        "token-classification": ["logits"],
        "question-answering": ["start_logits", "end_logits"],
        "multiple-choice": ["logits"],
    }[task]
    return heads if task == "multiple-choice" else heads + ["last_hidden_state"]


def symbolic_shapes(task: str, config: Any) -> tuple[list[str], dict[str, list[Any]]]:
    """Input axes and output shapes with symbolic dimensions (for the manifest)."""
    axes = ["batch", "choices", "sequence"] if task == "multiple-choice" else ["batch", "sequence"]
    labels = config.labels_count
    shapes = {
        "last_hidden_state": ["batch", "sequence", config.hidden_size],
        "start_logits": ["batch", "sequence"],
        "end_logits": ["batch", "sequence"],
        "logits": {
            "masked-lm": ["batch", "sequence", config.vocab_size],
            "sequence-classification": ["batch", labels],
            "token-classification": ["batch", "sequence", labels],
            "multiple-choice": ["batch", "choices"],
        }.get(task),
    }
    return axes, {name: shapes[name] for name in output_names(task)}


class GraphModule(nn.Module):
    """The model as the graph sees it: the named inputs in order, a tuple of named outputs out."""

    def __init__(self, model: DebertaPreTrained, inputs: list[str], outputs: list[str]):
        super().__init__()
        self.model, self.inputs, self.outputs = model, inputs, outputs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        wants_hidden = "last_hidden_state" in self.outputs and self.model.task != "base"
        out = self.model(**kwargs, output_hidden_states=wants_hidden)
        values = {name: getattr(out, name, None) for name in self.outputs}
        if wants_hidden:
            values["last_hidden_state"] = out.hidden_states[-1]                 # (B, L, D)
        return tuple(values[name] for name in self.outputs)


def graph_copy(model: DebertaPreTrained) -> DebertaPreTrained:
    """A copy of ``model`` set up for tracing with a dynamic length (the original is not touched)."""
    traced = copy.deepcopy(model).float().eval()
    traced.set_attention_implementation("reference")
    traced.base_model.encoder.positions_in_graph = True
    return traced


def example_inputs(model: DebertaPreTrained, names: list[str], length: int) -> tuple[torch.Tensor, ...]:
    """Batch of 2 (one row padded) at ``length``: symbolic dimensions must not be traced at 0 or 1."""
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    shape = (2, 2, length) if model.task == "multiple-choice" else (2, length)
    ids = torch.randint(min(5, vocab - 1), vocab, shape, generator=gen)
    mask = torch.ones(shape, dtype=torch.long)
    mask[1, ..., length - length // 4:] = 0                                     # row 1 padded
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros(shape, dtype=torch.long)}
    return tuple(tensors[n] for n in names)


def hard_length_limit(model: DebertaPreTrained) -> int | None:
    """The longest input the model accepts: the absolute position table when the model reads it
    (``position_biased_input`` or the Enhanced Mask Decoder); None for purely relative models."""
    if model.config.position_biased_input or getattr(model, "enhanced_mask_decoder", False):
        return int(model.config.max_position_embeddings)
    return None


def trace_to_onnx(model: DebertaPreTrained, path: Path, *, opset: int, max_length: int | None) -> dict[str, Any]:
    """Write ``model`` as an ONNX graph with symbolic batch (and choice) and sequence axes."""
    names, outputs = input_names(model), output_names(model.task)
    axes, _ = symbolic_shapes(model.task, model.config)
    length = max(2, min(TRACE_LENGTH, max_length or TRACE_LENGTH))
    limit = hard_length_limit(model)        # a shorter max_length only limits the checks, not the graph
    dims = {"batch": torch.export.Dim("batch"), "choices": torch.export.Dim("choices"),
            "sequence": torch.export.Dim("sequence", max=limit) if limit else torch.export.Dim("sequence")}
    dynamic = {name: {i: dims[axis] for i, axis in enumerate(axes)} for name in names}
    too_large = sum(p.numel() for p in model.parameters()) * 4 > 1.8 * 2**30     # ONNX protobuf limit: 2 GiB
    with _quiet():
        torch.onnx.export(GraphModule(graph_copy(model), names, outputs), example_inputs(model, names, length),
                          str(path), input_names=names, output_names=outputs, opset_version=opset, dynamo=True,
                          dynamic_shapes=dynamic, external_data=too_large, verbose=False)
    return {"traced_length": length, "external_data": too_large}


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress lines and warnings meant for its developers; keep them out of the way."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.getLogger("torch").level
        logging.getLogger("torch").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch").setLevel(previous)


# ----------------------------------------------------------------------------- the export
def _load(model: Any, task: str | None, load_kwargs: dict[str, Any]) -> DebertaPreTrained:
    if task is not None and task not in TASKS:
        raise ExportError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if isinstance(model, DebertaPreTrained):
        if task is not None and task != model.task:
            raise ExportError(f"the model passed is a {model.task!r} model but task={task!r} was asked; "
                              f"load it for that task (fastdeberta.from_pretrained(path, task={task!r})).")
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a folder, a Hub repo id or a fastdeberta model, got {type(model).__name__}")
    if Path(model).is_dir() and is_onnx_folder(Path(model)):
        raise ExportError(f"{model} is already an ONNX export (it holds {ONNX_FILE} and no PyTorch weights); "
                          "export from the PyTorch checkpoint it was made from.")
    from ..checkpoint import load_model

    return load_model(model, task=task, engine="torch", **load_kwargs)


def _check_options(model: DebertaPreTrained, opset: int, quantize: str | None, max_length: int | None) -> int | None:
    if not isinstance(opset, int) or isinstance(opset, bool) or not 17 <= opset <= 23:
        raise ExportError(f"opset must be an int from 17 to 23 (LayerNormalization needs 17), got {opset!r}")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ExportError(f"quantize must be one of {QUANTIZE_CHOICES} or None, got {quantize!r}")
    limit = hard_length_limit(model)
    if max_length is not None:
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
            raise ExportError(f"max_length must be an int >= 2, got {max_length!r}")
        if limit is not None and max_length > limit:
            raise ExportError(
                f"max_length={max_length} is past this model's limit of {limit} tokens (its absolute position "
                f"table, max_position_embeddings={limit}); use --max-length {limit} or less.")
        return max_length
    return limit


def export_onnx(
    model: str | os.PathLike | DebertaPreTrained,
    output: str | os.PathLike,
    *,
    task: str | None = None,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    max_length: int | None = None,
    tolerance: float = TOLERANCE,
    check_lengths: tuple[int, ...] | None = None,
    show_progress: bool = False,
    **load_kwargs: Any,
) -> ExportResult:
    """Export ``model`` (a folder, Hub id or loaded fastdeberta model) to the folder ``output``.

    ``task``: which head to export (default: the checkpoint's, from config.json); ``max_length``:
    the longest input the graph must serve (default: the model's limit; purely relative models have
    none, and are checked up to 512 tokens). ``show_progress``: a tqdm bar over the stages.
    ``quantize="int8"`` adds ``model_quantized.onnx``
    (onnxruntime dynamic quantisation) and its measured accuracy. Raises :class:`ParityError`
    (and writes nothing) when onnxruntime disagrees with PyTorch by more than ``tolerance``.
    """
    require_onnxruntime()
    model = _load(model, task, load_kwargs)
    max_length = _check_options(model, opset, quantize, max_length)
    if model.dtype != torch.float32:      # the graph is fp32, and so is the model it is checked against
        model = copy.deepcopy(model).float()
    model.eval()
    output = Path(output)
    from tqdm.auto import tqdm

    stages = tqdm(total=3 if quantize else 2, desc="tracing", unit="stage", disable=not show_progress)
    with stages, atomic_folder(output) as tmp:
        graph = trace_to_onnx(model, tmp / ONNX_FILE, opset=opset, max_length=max_length)
        stages.update()
        stages.set_description("checking onnxruntime against PyTorch")
        parity = check_parity(model, tmp / ONNX_FILE, input_names(model), output_names(model.task),
                              lengths=check_lengths, traced_length=graph["traced_length"],
                              max_length=max_length, tolerance=tolerance)
        if not parity["passed"]:
            worst = max(parity["checks"], key=lambda c: c["max_abs_diff"] / c["allowed"])
            raise ParityError(
                f"the ONNX graph disagrees with the PyTorch model: max abs difference {worst['max_abs_diff']:.3g} in "
                f"{worst['output']!r} at batch {worst['batch']} x length {worst['length']} (allowed "
                f"{worst['allowed']:.3g}); nothing was written to {output}. Please report this with the model's "
                "config.json.")
        stages.update()
        manifest = _manifest(model, opset, max_length, graph, parity)
        if quantize == "int8":
            stages.set_description("int8 quantisation")
            manifest["quantization"] = _quantize(model, tmp, external_data=graph["external_data"])
            stages.update()
        model.export_config().save_pretrained(tmp)
        if model.tokenizer is not None and hasattr(model.tokenizer, "save_pretrained"):
            model.tokenizer.save_pretrained(tmp)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _usual_permissions(tmp)
    return ExportResult(output, manifest)


def _usual_permissions(folder: Path) -> None:
    """The temporary folder (and files made by atomic writes) are owner-only; a deployed export is
    usually read by another user (a server), so give it the permissions the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _manifest(model: DebertaPreTrained, opset: int, max_length: int | None, graph: dict[str, Any],
              parity: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime

    from .. import __version__

    axes, outputs = symbolic_shapes(model.task, model.config)
    return {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "task": model.task,
        "architecture": model.hf_architecture,
        "onnx_file": ONNX_FILE,
        "opset": opset,
        "inputs": [{"name": n, "dtype": "int64", "shape": axes} for n in input_names(model)],
        "outputs": [{"name": n, "dtype": "float32", "shape": s} for n, s in outputs.items()],
        "max_length": max_length,
        "enhanced_mask_decoder": bool(getattr(model, "enhanced_mask_decoder", False)),
        "traced_length": graph["traced_length"],
        "parity": parity,
        "versions": {"fastdeberta": __version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "source": getattr(model, "name_or_path", None),
    }


def _quantize(model: DebertaPreTrained, folder: Path, external_data: bool) -> dict[str, Any]:
    """int8 weights for every MatMul/Gemm (onnxruntime dynamic quantisation) and their measured accuracy."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(folder / ONNX_FILE), str(folder / QUANTIZED_FILE), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=external_data)
    accuracy = int8_accuracy(model, folder / QUANTIZED_FILE, input_names(model), output_names(model.task))
    return {"file": QUANTIZED_FILE, "method": "onnxruntime quantize_dynamic, int8 weights (per tensor), "
            "activations quantised at run time", "accuracy": accuracy}
