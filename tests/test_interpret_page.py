"""The interactive attention page in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Checks that the page loads from a file with no network request and no script error, that the token
list renders, that the lines drawn are the numbers of the chosen layer/head/term (attention
probabilities; for a term, the softmax of that term alone), and that choosing another head or term
changes what is drawn (DOM and pixels). Skips, saying why, only where Chromium is absent.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import randomize_, variant

from fastdeberta import DebertaConfig, DebertaModel
from fastdeberta.interpret import decompose_attention
from fastdeberta.interpret.page import write_page
from fastdeberta.interpret.summaries import term_attention

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed, so the attention page is not tested in a browser: "
    "apt-get install chromium (`make test` does it when run as root)")
# markup in the text must show as text and must not end the page's data <script> early
TEXT = "The cat sat on the mat, it purred </script><!-- <b>bold?</b>"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TOKENS = ["[CLS]", "\u2581The", "\u2581cat", "\u2581sat", "\u2581on", "\u2581the", "\u2581mat", ",", "\u2581it",
          "\u2581purred", "[SEP]"]


@pytest.fixture(scope="module")
def explanation():
    model = randomize_(DebertaModel(DebertaConfig.from_dict(variant("v3")))).eval()
    ids = torch.tensor([[1, *range(10, 10 + len(TOKENS) - 2), 2]])
    explained = decompose_attention(model, ids)
    explained.tokens = [TOKENS]
    explained.texts = [TEXT]
    return explained


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _lines(page, kind: str) -> dict[tuple[int, int], float]:
    """{(query, key): opacity} of the visible lines in the panel of ``kind``."""
    found = page.eval_on_selector_all(
        f".panel[data-kind='{kind}'] line",
        "lines => lines.filter(l => l.style.display !== 'none')"
        ".map(l => [Number(l.dataset.q), Number(l.dataset.k), Number(l.getAttribute('stroke-opacity'))])")
    return {(q, k): w for q, k, w in found}


def _assert_lines_show(lines: dict[tuple[int, int], float], weights: torch.Tensor, what: str) -> None:
    """Every pair of weight >= 0.011 is drawn with that opacity (float16 + 4 decimals), nothing else."""
    n = weights.shape[0]
    for q in range(n):
        for k in range(n):
            w = float(weights[q, k])
            if w >= 0.011:
                assert (q, k) in lines, f"{what}: no line for query {q} -> key {k} (weight {w:.3f})"
                assert abs(lines[(q, k)] - w) < 2e-3, f"{what}: line {q}->{k} opacity {lines[(q, k)]} != {w:.4f}"
            elif w < 0.009:
                assert (q, k) not in lines, f"{what}: line {q}->{k} drawn for weight {w:.4f}"


def test_page_renders_and_follows_the_controls(explanation, browser, tmp_path):
    path = write_page(explanation, tmp_path / "attention.html", title="tiny v3")
    html = path.read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, requests = [], []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15000)

    assert page.inner_text("#text") == TEXT
    # the token list: one entry per token on each side of every panel
    labels = page.eval_on_selector_all(".panel[data-kind='attention'] text.token[data-side='q']",
                                       "texts => texts.map(t => t.textContent)")
    assert labels == [t.replace("\u2581", "_") for t in TOKENS]
    assert page.eval_on_selector_all(".panel", "panels => panels.map(p => p.dataset.kind)") == \
        ["c2c", "c2p", "p2c", "attention"]

    layer0 = explanation.layers[0]
    _assert_lines_show(_lines(page, "attention"), layer0.probs[0, 0], "layer 0 head 0 attention")
    c2p_alone = term_attention(layer0.c2p, explanation.attention_mask)[0, 0]
    _assert_lines_show(_lines(page, "c2p"), c2p_alone, "layer 0 head 0 c2p alone")
    panels_before = page.locator("#panels").screenshot()
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000

    # another head: the lines are that head's, and the pixels change
    page.select_option("#head", "2")
    _assert_lines_show(_lines(page, "attention"), layer0.probs[0, 2], "layer 0 head 2 attention")
    assert page.locator("#panels").screenshot() != panels_before

    # another layer
    page.select_option("#layer", "1")
    _assert_lines_show(_lines(page, "attention"), explanation.layers[1].probs[0, 2], "layer 1 head 2 attention")

    # another term: the heatmap is redrawn for it and its panel is marked
    heatmap_before = page.eval_on_selector("#heatmap", "canvas => canvas.toDataURL()")
    page.check("#terms input[value='c2p']")
    assert page.eval_on_selector("#heatmap", "canvas => canvas.toDataURL()") != heatmap_before
    assert page.inner_text("#heatmap-title").startswith("c2p")
    assert page.get_attribute(".panel[data-kind='c2p']", "class") == "panel selected"

    # hovering a query keeps only its lines, in every panel
    page.hover(".panel[data-kind='c2c'] text.token[data-side='q'][data-index='3']")
    for kind in ("c2c", "attention"):
        shown = _lines(page, kind)
        assert shown and all(q == 3 for q, _ in shown), f"{kind}: lines of other queries still shown"
    assert "query 3 _sat" in page.inner_text("#focus")

    # a click in the positional-share grid picks that layer and head
    page.click("#grid tr:nth-child(2) td:nth-child(2)")          # layer 0 (first data row), head 0
    assert page.input_value("#layer") == "0" and page.input_value("#head") == "0"

    assert not errors, errors
    assert all(url.startswith(("file:", "data:", "about:")) for url in requests), requests
    page.close()


@pytest.mark.parametrize("name, kinds", [("v2-norel", ["c2c", "attention"]),
                                         ("v1-talking-both", ["c2c", "c2p", "p2c", "attention"]),
                                         ("v2-maxrel-c2p-conv-emb", ["c2c", "c2p", "attention"])])
def test_page_shows_the_terms_each_model_has(name, kinds, browser, tmp_path):
    model = randomize_(DebertaModel(DebertaConfig.from_dict(variant(name)))).eval()
    explained = decompose_attention(model, torch.arange(4, 13)[None])
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(write_page(explained, tmp_path / "attention.html").as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    assert page.eval_on_selector_all(".panel", "panels => panels.map(p => p.dataset.kind)") == kinds
    assert page.eval_on_selector_all("#terms input", "inputs => inputs.map(i => i.value)") == kinds
    _assert_lines_show(_lines(page, "attention"), explained.layers[0].probs[0, 0], f"{name} attention")
    assert not errors, errors
    page.close()
