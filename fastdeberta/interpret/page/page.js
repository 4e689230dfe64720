// Interactive head view of DeBERTa's disentangled attention. Reads the JSON in #attention-data:
//   tokens (n strings), layers (layer numbers), heads (count), kinds (["c2c", "c2p", "p2c", "attention"],
//   the terms the model uses then the attention), matrices (base64 of little-endian float16 values, one
//   n x n block per (layer, head, kind) in that order), shares (per layer, per head: {term: share, positional}).
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("attention-data").textContent);
  const n = data.tokens.length;
  const kinds = data.kinds;
  const COLORS = { c2c: "#1f77b4", c2p: "#e6550d", p2c: "#31a354", attention: "#6a51a3" };
  const NAMES = { c2c: "c2c: content \u2192 content", c2p: "c2p: content \u2192 position",
                  p2c: "p2c: position \u2192 content", attention: "attention (the model's)" };
  const ROW = 20;          // pixels per token row in the head views
  const MIN_WEIGHT = 0.01; // lines lighter than this are not drawn
  const SVG = "http://www.w3.org/2000/svg";

  const state = { layer: 0, head: 0, kind: kinds[kinds.length - 1], focus: null };

  // ------------------------------------------------------------------ data
  const bytes = Uint8Array.from(atob(data.matrices), (c) => c.charCodeAt(0));
  const halves = new Uint16Array(bytes.buffer);

  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    if (exponent === 0) return sign * Math.pow(2, -14) * (fraction / 1024);
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * Math.pow(2, exponent - 15) * (1 + fraction / 1024);
  }

  const valueCache = new Map();
  // Raw values of one (layer position, head, kind) block: Float32Array of n * n, row = query.
  function values(layer, head, kind) {
    const key = layer + "/" + head + "/" + kind;
    if (!valueCache.has(key)) {
      const start = ((layer * data.heads + head) * kinds.length + kinds.indexOf(kind)) * n * n;
      const out = new Float32Array(n * n);
      for (let i = 0; i < n * n; i++) out[i] = halfToFloat(halves[start + i]);
      valueCache.set(key, out);
    }
    return valueCache.get(key);
  }

  // Line weights: the attention itself, or the softmax of a term alone over each query row.
  function weights(layer, head, kind) {
    const raw = values(layer, head, kind);
    if (kind === "attention") return raw;
    const out = new Float32Array(n * n);
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let j = 0; j < n; j++) max = Math.max(max, raw[i * n + j]);
      let sum = 0;
      for (let j = 0; j < n; j++) { out[i * n + j] = Math.exp(raw[i * n + j] - max); sum += out[i * n + j]; }
      for (let j = 0; j < n; j++) out[i * n + j] /= sum;
    }
    return out;
  }

  // ------------------------------------------------------------------ controls
  function fillSelect(select, labels) {
    labels.forEach((label, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = label;
      select.appendChild(option);
    });
  }

  const layerSelect = document.getElementById("layer");
  const headSelect = document.getElementById("head");
  fillSelect(layerSelect, data.layers.map(String));
  fillSelect(headSelect, Array.from({ length: data.heads }, (_, h) => String(h)));
  layerSelect.addEventListener("change", () => { state.layer = Number(layerSelect.value); redraw(); });
  headSelect.addEventListener("change", () => { state.head = Number(headSelect.value); redraw(); });

  const termBox = document.getElementById("terms");
  kinds.forEach((kind) => {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "term";
    input.value = kind;
    input.checked = kind === state.kind;
    input.addEventListener("change", () => { state.kind = kind; redraw(); });
    label.appendChild(input);
    label.appendChild(document.createTextNode(" " + kind));
    termBox.appendChild(label);
  });

  document.getElementById("text").textContent = data.text;

  // ------------------------------------------------------------------ head views
  function svg(tag, attributes) {
    const element = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    return element;
  }

  function tokenLabel(token) { return token.replace(/\u2581|\u0120/g, "_"); }

  const panelBox = document.getElementById("panels");
  const labelWidth = Math.min(160, 14 + 7.5 * Math.max(...data.tokens.map((t) => t.length)));
  const gap = 110;

  function drawPanel(kind) {
    const panel = document.createElement("div");
    panel.className = "panel" + (kind === state.kind ? " selected" : "");
    panel.dataset.kind = kind;
    const title = document.createElement("h3");
    title.textContent = NAMES[kind];
    title.style.color = COLORS[kind];
    panel.appendChild(title);
    const share = document.createElement("p");
    share.className = "share";
    const shares = data.shares ? data.shares[state.layer][state.head] : null;
    share.textContent = kind === "attention"
      ? (shares ? "positional share " + Math.round(100 * shares.positional) + "%" : "\u00a0")
      : (shares && kind in shares ? "share of score variance " + Math.round(100 * shares[kind]) + "%" : "\u00a0");
    panel.appendChild(share);

    const width = 2 * labelWidth + gap;
    const image = svg("svg", { width: width, height: n * ROW + 6, role: "img",
                               "aria-label": NAMES[kind] + ", layer " + data.layers[state.layer] + ", head " + state.head });
    const lines = svg("g", { class: "lines" });
    const w = weights(state.layer, state.head, kind);
    const x1 = labelWidth, x2 = labelWidth + gap;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const weight = w[i * n + j];
        if (weight < MIN_WEIGHT) continue;
        lines.appendChild(svg("line", { x1: x1, y1: i * ROW + ROW / 2 + 3, x2: x2, y2: j * ROW + ROW / 2 + 3,
                                        stroke: COLORS[kind], "stroke-width": 2,
                                        "stroke-opacity": weight.toFixed(4), "data-q": i, "data-k": j }));
      }
    }
    image.appendChild(lines);
    for (const side of ["q", "k"]) {
      data.tokens.forEach((token, index) => {
        const y = index * ROW + 3;
        const text = svg("text", { x: side === "q" ? labelWidth - 6 : labelWidth + gap + 6, y: y + ROW / 2 + 4,
                                   "text-anchor": side === "q" ? "end" : "start",
                                   class: "token", "data-side": side, "data-index": index });
        text.textContent = tokenLabel(token);
        const hit = svg("rect", { x: side === "q" ? 0 : labelWidth + gap, y: y, width: labelWidth, height: ROW,
                                  class: "hit" });
        for (const element of [hit, text]) {
          element.addEventListener("mouseenter", () => { state.focus = { side: side, index: index }; applyFocus(); });
          element.addEventListener("mouseleave", () => { state.focus = null; applyFocus(); });
        }
        image.appendChild(hit);
        image.appendChild(text);
      });
    }
    panel.appendChild(image);
    panel.addEventListener("click", () => {
      state.kind = kind;
      termBox.querySelector('input[value="' + kind + '"]').checked = true;
      redraw();
    });
    return panel;
  }

  // ------------------------------------------------------------------ heatmap of the chosen term
  const canvas = document.getElementById("heatmap");
  const readout = document.getElementById("readout");
  const cell = Math.max(4, Math.min(22, Math.floor(520 / n)));
  const margin = Math.min(120, labelWidth);

  function colour(value, limit, kind) {
    if (kind === "attention") {                         // white -> purple
      const t = Math.max(0, Math.min(1, value / limit));
      return "rgb(" + Math.round(255 - 149 * t) + "," + Math.round(255 - 174 * t) + "," + Math.round(255 - 92 * t) + ")";
    }
    const t = Math.max(-1, Math.min(1, value / limit));  // blue (negative) -> white -> red (positive)
    return t < 0
      ? "rgb(" + Math.round(255 + 222 * t) + "," + Math.round(255 + 150 * t) + "," + 255 + ")"
      : "rgb(" + 255 + "," + Math.round(255 - 200 * t) + "," + Math.round(255 - 222 * t) + ")";
  }

  function drawHeatmap() {
    const kind = state.kind;
    const raw = values(state.layer, state.head, kind);
    let limit = 0;
    for (const v of raw) limit = Math.max(limit, Math.abs(v));
    limit = limit || 1;
    canvas.width = margin + n * cell + 2;
    canvas.height = margin + n * cell + 2;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        ctx.fillStyle = colour(raw[i * n + j], limit, kind);
        ctx.fillRect(margin + j * cell, margin + i * cell, cell, cell);
      }
    }
    ctx.fillStyle = "#222";
    ctx.font = Math.min(12, cell) + "px sans-serif";
    if (cell >= 8) {
      data.tokens.forEach((token, i) => {
        ctx.textAlign = "right";
        ctx.fillText(tokenLabel(token).slice(0, 14), margin - 4, margin + i * cell + cell * 0.75);
        ctx.save();
        ctx.translate(margin + i * cell + cell * 0.75, margin - 4);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(tokenLabel(token).slice(0, 14), 0, 0);
        ctx.restore();
      });
    }
    document.getElementById("heatmap-title").textContent =
      NAMES[kind] + ", layer " + data.layers[state.layer] + ", head " + state.head +
      (kind === "attention" ? " (probabilities)" : " (scaled pre-softmax values, \u00b1" + limit.toFixed(2) + ")");
  }

  canvas.addEventListener("mousemove", (event) => {
    const box = canvas.getBoundingClientRect();
    const j = Math.floor((event.clientX - box.left - margin) / cell);
    const i = Math.floor((event.clientY - box.top - margin) / cell);
    if (i < 0 || j < 0 || i >= n || j >= n) { readout.textContent = "\u00a0"; return; }
    const parts = kinds.map((kind) => kind + " " + values(state.layer, state.head, kind)[i * n + j].toFixed(3));
    readout.textContent = "query " + i + " " + tokenLabel(data.tokens[i]) + " \u2192 key " + j + " " +
      tokenLabel(data.tokens[j]) + ": " + parts.join(", ");
  });

  // ------------------------------------------------------------------ focus table and grid
  function drawFocus() {
    const box = document.getElementById("focus");
    box.innerHTML = "";
    if (!state.focus) { box.textContent = "Hover a token in any panel."; return; }
    const { side, index } = state.focus;
    const caption = document.createElement("p");
    caption.textContent = (side === "q" ? "query " : "key ") + index + " " + tokenLabel(data.tokens[index]) +
      (side === "q" ? ": where it looks" : ": who looks at it");
    box.appendChild(caption);
    const table = document.createElement("table");
    const header = table.insertRow();
    kinds.forEach((kind) => { const th = document.createElement("th"); th.textContent = kind; header.appendChild(th); });
    const tops = kinds.map((kind) => {
      const w = weights(state.layer, state.head, kind);
      const pairs = Array.from({ length: n }, (_, m) => [m, side === "q" ? w[index * n + m] : w[m * n + index]]);
      return pairs.sort((a, b) => b[1] - a[1]).slice(0, 5);
    });
    for (let r = 0; r < Math.min(5, n); r++) {
      const row = table.insertRow();
      tops.forEach((top) => { row.insertCell().textContent = tokenLabel(data.tokens[top[r][0]]) + " " + top[r][1].toFixed(2); });
    }
    box.appendChild(table);
  }

  // viridis, as in the PNG grid: dark purple (content) -> teal -> yellow (position)
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function gridColour(value) {
    const t = Math.max(0, Math.min(1, value)) * (VIRIDIS.length - 1);
    const low = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - low;
    const rgb = VIRIDIS[low].map((c, i) => Math.round(c + (VIRIDIS[low + 1][i] - c) * f));
    return "rgb(" + rgb.join(",") + ")";
  }

  function drawGrid() {
    const grid = document.getElementById("grid");
    grid.innerHTML = "";
    if (!data.shares) return;
    const header = grid.insertRow();
    header.appendChild(document.createElement("th"));
    for (let h = 0; h < data.heads; h++) { const th = document.createElement("th"); th.textContent = h; header.appendChild(th); }
    data.layers.forEach((layerNumber, l) => {
      const row = grid.insertRow();
      const th = document.createElement("th");
      th.textContent = "layer " + layerNumber;
      row.appendChild(th);
      for (let h = 0; h < data.heads; h++) {
        const value = data.shares[l][h].positional;
        const td = row.insertCell();
        td.textContent = value.toFixed(2);
        td.style.background = gridColour(value);
        td.style.color = value > 0.6 ? "#000" : "#fff";
        td.title = "layer " + layerNumber + ", head " + h;
        if (l === state.layer && h === state.head) td.className = "current";
        td.addEventListener("click", () => {
          state.layer = l; state.head = h;
          layerSelect.value = String(l); headSelect.value = String(h);
          redraw();
        });
      }
    });
  }

  // Hovering only shows / hides what is drawn (rebuilding the panels under the pointer would re-fire the events).
  function applyFocus() {
    const focus = state.focus;
    panelBox.querySelectorAll("line").forEach((line) => {
      const shown = !focus || Number(line.dataset[focus.side]) === focus.index;
      line.style.display = shown ? "" : "none";
    });
    panelBox.querySelectorAll("text.token").forEach((text) => {
      const active = focus && text.dataset.side === focus.side && Number(text.dataset.index) === focus.index;
      text.classList.toggle("active", Boolean(active));
    });
    drawFocus();
  }

  function redraw() {
    panelBox.innerHTML = "";
    kinds.forEach((kind) => panelBox.appendChild(drawPanel(kind)));
    drawHeatmap();
    drawGrid();
    applyFocus();
  }

  redraw();
  document.body.dataset.ready = "1";
})();
