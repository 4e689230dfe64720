"""Pictures of the attention decomposition, as PNG files (matplotlib, Agg backend).

* ``plot_terms``: for one layer and head, heatmaps of c2c, c2p, p2c, their sum (the pre-softmax
  score) and the attention probabilities, with token labels. The three terms and the sum share one
  colour scale, so their sizes compare directly.
* ``plot_positional_grid``: layer x head grid coloured by the positional share of each head.
* ``plot_distance_profiles``: attention mass against key offset, one panel per layer, one line per head.

The grid and the profiles are drawn from ``summarize``'s dict (so they can be redrawn from the
JSON file the CLI writes). matplotlib is imported on first use: ``pip install 'fastdeberta[plot]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError
from ..io import atomic_path
from .decompose import TERMS, AttentionExplanation
from .summaries import term_shares

__all__ = ["DPI", "plot_distance_profiles", "plot_positional_grid", "plot_terms", "terms_figure_size"]

DPI = 100
TERM_TITLES = {"c2c": "c2c  content → content", "c2p": "c2p  content → position",
               "p2c": "p2c  position → content"}


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("the attention plots need matplotlib: pip install 'fastdeberta[plot]' "
                          "(or pip install matplotlib)") from err
    matplotlib.use("Agg", force=True)        # files only: never open a window
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    _pyplot().close(figure)
    return Path(path)


def _label(token: str) -> str:
    return token.replace("\u2581", "_").replace("\u0120", "_")


def terms_figure_size(tokens: int) -> tuple[float, float]:
    """Inches (width, height) of ``plot_terms`` for ``tokens`` tokens: five panels of 4 inches up to
    16 tokens, growing by 0.25 inch per token beyond; 0.6 inch more in height for the titles."""
    panel = 4.0 + 0.25 * max(0, tokens - 16)
    return 5 * panel, panel + 0.6


def check_head(explanation: AttentionExplanation, layer: int, head: int) -> int:
    """The layer index (negative counts from the end) after checking layer and head exist."""
    index = explanation[layer].layer
    heads = explanation.num_heads
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < heads:
        raise InvalidInputError(f"head {head!r} is out of range: this model has {heads} heads per layer "
                                f"(0 ... {heads - 1})")
    return index


def plot_terms(explanation: AttentionExplanation, layer: int, head: int, path: str | os.PathLike,
               index: int = 0) -> Path:
    """Heatmaps of c2c, c2p, p2c, their sum and the attention of one head for text ``index``."""
    number = check_head(explanation, layer, head)
    explanation.check_index(index)
    plt = _pyplot()
    one = explanation.layers[number].select(index)                   # (1, H, L, L) tensors
    n = explanation.lengths[index]
    tokens = [_label(t) for t in (explanation.tokens[index] if explanation.tokens else
                                  map(str, explanation.input_ids[index, :n].tolist()))]
    shares = term_shares(one, explanation.attention_mask[index:index + 1])
    square = lambda t: t[0, head, :n, :n].float().cpu()               # noqa: E731  (n, n)
    panels = [(TERM_TITLES[name], name, square(one.terms[name]) if name in one.terms else None) for name in TERMS]
    panels.append(("sum: pre-softmax score", "sum", square(sum(one.terms.values()))))
    limit = max(float(values.abs().max()) for _, _, values in panels if values is not None) or 1.0

    figure, axes = plt.subplots(1, 5, figsize=terms_figure_size(n), dpi=DPI, layout="constrained")
    figure.suptitle(f"layer {number}, head {head}: the three terms (shared colour scale) and the attention",
                    fontsize=11)
    for ax, (title, name, values) in zip(axes, panels):
        if values is None:
            ax.text(0.5, 0.5, f"{name}: not used\nby this model", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
            continue
        image = ax.imshow(values.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        share = f"\nshare of score variance {float(shares[name][head]):.0%}" if name in shares else "\n "
        ax.set_title(title + share, fontsize=9)
        _token_axes(ax, tokens)
    figure.colorbar(image, ax=axes[-2], shrink=0.8)                   # the scale the four panels share
    image = axes[-1].imshow(square(one.probs).numpy(), cmap="Blues", vmin=0.0)
    axes[-1].set_title("attention (post-softmax)\n ", fontsize=9)
    _token_axes(axes[-1], tokens)
    figure.colorbar(image, ax=axes[-1], shrink=0.8)
    return _save(figure, path)


def _token_axes(ax: Any, tokens: list[str]) -> None:
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    ax.set_xlabel("key", fontsize=8)
    ax.set_ylabel("query", fontsize=8)


def plot_positional_grid(summary: dict[str, Any], path: str | os.PathLike) -> Path:
    """Layer x head grid coloured by positional share (share of c2p + p2c in the score variance)."""
    plt = _pyplot()
    rows = [[head["positional_share"] or 0.0 for head in layer["heads"]] for layer in summary["layers"]]
    layers = [layer["layer"] for layer in summary["layers"]]
    heads = len(rows[0])
    figure, ax = plt.subplots(figsize=(max(4.0, 0.6 * heads + 2.0), max(3.0, 0.45 * len(rows) + 1.5)), dpi=DPI,
                              layout="constrained")
    image = ax.imshow(torch.tensor(rows).numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for r, row in enumerate(rows):
        for h, value in enumerate(row):
            ax.text(h, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.6 else "white")
    ax.set_xticks(range(heads), [str(h) for h in range(heads)])
    ax.set_yticks(range(len(layers)), [str(n) for n in layers])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("positional share: c2p + p2c share of score variance\n(1 = attends by position, 0 = by content)",
                 fontsize=9)
    figure.colorbar(image, ax=ax)
    return _save(figure, path)


def plot_distance_profiles(summary: dict[str, Any], path: str | os.PathLike) -> Path:
    """Attention mass per key offset (-1 = previous token), one panel per layer, one line per head."""
    plt = _pyplot()
    offsets = summary["distance_offsets"]
    layers = summary["layers"]
    if not layers:
        raise InvalidInputError("the summary has no layers to plot")
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.0 * rows), dpi=DPI, squeeze=False,
                                layout="constrained", sharey=True)
    for ax, layer in zip(axes.flat, layers):
        if summary.get("distance_uniform"):
            ax.plot(offsets, summary["distance_uniform"], color="black", linestyle="--", linewidth=1,
                    label="uniform attention")
        for head in layer["heads"]:
            ax.plot(offsets, head["distance_profile"], marker=".", linewidth=1, label=f"head {head['head']}")
        ax.set_title(f"layer {layer['layer']}", fontsize=9)
        ax.set_xlabel("key offset (bucket)", fontsize=8)
        ax.axvline(0, color="grey", linewidth=0.5)
    for ax in axes.flat[len(layers):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("attention mass")
    heads = len(layers[0]["heads"])
    if heads <= 16:
        axes[0, 0].legend(fontsize=6, ncol=2)
    figure.suptitle("attention mass by key offset from the query (-1 = previous token)", fontsize=10)
    return _save(figure, path)
