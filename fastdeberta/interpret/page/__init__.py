"""One self-contained HTML page to explore an ``AttentionExplanation`` (no network, no CDN).

The page (template.html + page.css + page.js, inlined) shows, for a chosen layer and head, a
bertviz-style head view of each term beside the model's attention: queries on the left, keys on the
right, a line per (query, key) pair whose opacity is the attention the term alone would give
(softmax of its scaled values over the row), or the model's attention in the last panel. Hovering a
token keeps only its lines; a heatmap shows the raw values of the chosen term; a layer x head grid,
coloured by positional share, picks a head with one click.

The numbers travel as float16 (base64) in one JSON block: about 8 bytes * layers * heads * n^2 for
n tokens (a 12 x 12 model and 40 tokens: ~1.8 MB).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from importlib import resources
from pathlib import Path

import numpy as np

from ...io import atomic_write_text
from ..decompose import AttentionExplanation
from ..summaries import positional_share, term_shares

__all__ = ["render_page", "write_page"]


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def page_data(explanation: AttentionExplanation, index: int = 0) -> dict:
    """The JSON the page script reads (see page.js for the layout of ``matrices``)."""
    explanation.check_index(index)
    n = explanation.lengths[index]
    kinds = [*explanation.term_names, "attention"]
    mask = explanation.attention_mask[index:index + 1]
    blocks, shares = [], []
    for layer in explanation.layers.values():
        one = layer.select(index)
        matrices = [*(one.terms[name] for name in explanation.term_names), one.probs]
        stacked = [m[0, :, :n, :n].float().cpu() for m in matrices]                      # kinds x (H, n, n)
        blocks.append(np.stack([t.numpy() for t in stacked], axis=1))                      # (H, kinds, n, n)
        by_term = term_shares(one, mask)
        positional = positional_share(by_term)
        shares.append([{**{name: round(float(s[h]), 4) for name, s in by_term.items()},
                        "positional": round(float(positional[h]), 4)} for h in range(explanation.num_heads)])
    values = np.clip(np.stack(blocks), -65000, 65000).astype("<f2")                       # (layers, H, kinds, n, n)
    tokens = (explanation.tokens[index] if explanation.tokens is not None
              else [str(t) for t in explanation.input_ids[index, :n].tolist()])
    return {"text": explanation.texts[index] if explanation.texts else " ".join(tokens), "tokens": list(tokens),
            "layers": list(explanation.layers), "heads": explanation.num_heads, "kinds": kinds,
            "matrices": base64.b64encode(values.tobytes()).decode("ascii"), "shares": shares}


def render_page(explanation: AttentionExplanation, index: int = 0, title: str | None = None) -> str:
    """The page for text ``index`` as one HTML string."""
    data = page_data(explanation, index)
    source = title or "fastdeberta"
    subtitle = (f"{source}: {len(data['tokens'])} tokens, {len(data['layers'])} of {explanation.num_layers} layers, "
                f"{explanation.num_heads} heads, terms {', '.join(explanation.term_names)}"
                + (" (v1 talking heads: terms shown after the head mixing)" if explanation.talking_head else ""))
    # no "<" inside the <script> element: "</script>" or "<!--" in a token would end or confuse it
    payload = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    values = {"TITLE": html.escape(f"Attention: {source}"), "SUBTITLE": html.escape(subtitle),
              "STYLE": _asset("page.css"), "SCRIPT": _asset("page.js"), "DATA": payload}
    # one pass, so nothing inserted (a title, a token) is ever read as a placeholder
    page = re.sub(r"\{\{(TITLE|SUBTITLE|STYLE|SCRIPT|DATA)\}\}", lambda m: values[m.group(1)], _asset("template.html"))
    return page


def write_page(explanation: AttentionExplanation, path: str | os.PathLike, index: int = 0,
               title: str | None = None) -> Path:
    """Write the page for text ``index`` to ``path`` (atomically) and return the path."""
    return atomic_write_text(path, render_page(explanation, index, title))
