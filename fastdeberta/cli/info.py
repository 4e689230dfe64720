"""``fastdeberta info``: what a checkpoint is, without running it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any

from .common import add_model_arguments, load_kwargs

HELP = "describe a checkpoint: version, sizes, attention settings, heads, tokenizer, loadable tasks"

# weight-name prefixes that show a trained head is present
_HEAD_KEYS = {
    "masked-lm": ("cls.predictions.", "lm_predictions.lm_head."),
    "sequence-classification": ("classifier.",),
    "multiple-choice": ("classifier.",),
    "token-classification": ("classifier.",),
    "question-answering": ("qa_outputs.",),
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("info", help=HELP, description=HELP.capitalize() + ".")
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.set_defaults(run=run)
    return parser


def deberta_version(config: Any) -> str:
    """"v1" (model_type deberta), "v3" (deberta-v2 with log position buckets and shared attention
    keys, as in DeBERTa-v3 and mDeBERTa) or "v2" (any other deberta-v2 config)."""
    if config.is_v1:
        return "v1"
    if config.position_buckets > 0 and config.share_att_key:
        return "v3"
    return "v2"


def describe(name_or_path: str | os.PathLike, *, revision: str | None = None, cache_dir: Any = None,
             local_files_only: bool = False) -> dict[str, Any]:
    """A JSON-ready description of a checkpoint (weights are read, but no model is run)."""

    from ..checkpoint import (
        ABSOLUTE_POSITIONS,
        check_shapes_against_config,
        find_weight_file,
        infer_task,
        normalise_keys,
        read_state_dict,
    )
    from ..config import DebertaConfig
    from ..export.engine import is_onnx_folder
    from ..hub import resolve_model_dir
    from ..model.deberta import TASKS

    folder = resolve_model_dir(name_or_path, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}; a DeBERTa checkpoint folder needs one")
    config = DebertaConfig.from_json_file(config_path)
    if is_onnx_folder(folder):
        return _describe_onnx(name_or_path, folder, config)
    weights = find_weight_file(folder)
    state = normalise_keys(read_state_dict(weights))
    task = infer_task(config)

    has_head = {t: any(k.startswith(p) for k in state for p in prefixes) for t, prefixes in _HEAD_KEYS.items()}
    ready = ["base"] + [t for t in TASKS if t != "base" and has_head.get(t) and (t == "masked-lm" or t == task)]
    emd = bool(has_head["masked-lm"] and ABSOLUTE_POSITIONS in state and config.relative_attention
               and not config.position_biased_input)

    # a config that does not describe the weights (e.g. vocab_size 1e10 over a 2,001-row table) is an
    # error here, as in from_pretrained, not a parameter count of a model that cannot exist
    check_shapes_against_config(config, task, state, str(weights))
    model = _meta_model(config, task, state)
    info = _describe_config(name_or_path, folder, config, task)
    info.update({"weights": weights.name, "parameters": model.num_parameters(),
                 "checkpoint_tensor_elements": sum(t.numel() for t in state.values()),
                 "enhanced_mask_decoder": emd, "tasks": sorted(TASKS), "tasks_with_trained_heads": ready})
    return info


def _meta_model(config: Any, task: str, state: dict[str, Any] | None = None) -> Any:
    """The model ``config`` describes for ``task``, on the meta device (shapes only: counted, never run)."""
    import torch

    from ..checkpoint import build_model

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(config, task, state)


def _describe_tokenizer(folder: Any) -> dict[str, Any]:
    try:
        from ..tokenizer import Tokenizer

        tok = Tokenizer.from_pretrained(folder)
        return {"type": tok.backend, "class": getattr(tok, "_tokenizer_class", None),
                "vocab_size": tok.vocab_size, "model_max_length": tok.model_max_length,
                "do_lower_case": tok.do_lower_case, "mask_token": tok.mask_token}
    except (FileNotFoundError, ValueError) as err:  # e.g. a bpe_encoder.bin that needs unsafe unpickling
        return {"type": None, "error": str(err).splitlines()[0]}


def _describe_config(name_or_path: Any, folder: Any, config: Any, task: str) -> dict[str, Any]:
    """The fields read from config.json and the tokenizer files (shared by weights and ONNX folders)."""
    return {
        "model": str(name_or_path),
        "folder": str(folder),
        "format": "pytorch",
        "model_type": config.model_type,
        "version": deberta_version(config),
        "architectures": config.extra.get("architectures"),
        "task_head": task,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "embedding_size": config.embed_dim,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "relative_attention": config.relative_attention,
        "pos_att_type": list(config.attention_terms),
        "position_buckets": config.position_buckets,
        "max_relative_positions": config.max_relative_positions,
        "share_att_key": config.share_att_key,
        "position_biased_input": config.position_biased_input,
        "conv_kernel_size": config.conv_kernel_size,
        "num_labels": config.labels_count if task in ("sequence-classification", "token-classification") else None,
        "id2label": {str(k): v for k, v in config.id2label.items()} if config.id2label else None,
        "tokenizer": _describe_tokenizer(folder),
    }


def _describe_onnx(name_or_path: Any, folder: Any, config: Any) -> dict[str, Any]:
    """An exported folder: the graph's task, opset, inputs/outputs and measured parity from its manifest
    (the graph itself is not loaded; the parameter count is that of the PyTorch model it came from)."""
    from ..export.engine import read_manifest

    manifest = read_manifest(folder)
    task = manifest.get("task", "base")
    model = _meta_model(config, task)
    info = _describe_config(name_or_path, folder, config, task)
    quantization = manifest.get("quantization") or None
    info.update({
        "format": "onnx",
        "weights": manifest.get("onnx_file"),
        "parameters": model.num_parameters(),
        "enhanced_mask_decoder": bool(manifest.get("enhanced_mask_decoder")),
        "tasks": [task],
        "tasks_with_trained_heads": sorted({"base", task}),
        "onnx": {"opset": manifest.get("opset"), "inputs": [i.get("name") for i in manifest.get("inputs", [])],
                 "outputs": [o.get("name") for o in manifest.get("outputs", [])],
                 "max_length": manifest.get("max_length"), "parity": manifest.get("parity"),
                 "int8_file": quantization.get("file") if isinstance(quantization, dict) else None,
                 "versions": manifest.get("versions")},
    })
    return info


def run(args: argparse.Namespace) -> int:
    info = describe(args.model, **load_kwargs(args))
    if args.json:
        json.dump(info, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    rel = (f"{'+'.join(info['pos_att_type']) or 'none'}, buckets={info['position_buckets']}, "
           f"max_relative_positions={info['max_relative_positions']}, share_att_key={info['share_att_key']}"
           if info["relative_attention"] else "off")
    tok = info["tokenizer"] or {}
    rows = [
        ("model", info["model"]),
        ("folder", info["folder"]),
        ("format", info["format"] if info["format"] != "onnx" else
         f"onnx (opset {info['onnx']['opset']}, {info['weights']}"
         f"{', int8: ' + info['onnx']['int8_file'] if info['onnx']['int8_file'] else ''})"),
        ("type", f"{info['model_type']} (DeBERTa {info['version']})"),
        ("task head", f"{info['task_head']} ({', '.join(info['architectures'] or ['no architectures'])})"),
        ("size", f"hidden {info['hidden_size']}, layers {info['num_hidden_layers']}, "
                 f"heads {info['num_attention_heads']}, intermediate {info['intermediate_size']}"),
        ("vocabulary", info["vocab_size"]),
        ("parameters", f"{info['parameters']:,}"),
        ("relative attention", rel),
        ("absolute positions", f"{'at the input' if info['position_biased_input'] else 'no'} "
                               f"(max_position_embeddings={info['max_position_embeddings']})"),
        ("enhanced mask decoder", "yes" if info["enhanced_mask_decoder"] else "no"),
        ("tokenizer", f"{tok.get('type')} ({tok.get('class')}, {tok.get('vocab_size')} ids)" if tok.get("type")
                      else f"none ({tok.get('error')})"),
        ("loadable tasks", ", ".join(info["tasks"])),
        ("trained heads for", ", ".join(info["tasks_with_trained_heads"])),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
