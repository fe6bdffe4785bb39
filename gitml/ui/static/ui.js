// gitml ui: the runs table, charts (uPlot) and the compare view.
// Every value from the repository reaches the page through textContent, never innerHTML.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  window.gitmlTimings = [];
  window.gitmlCharts = [];

  // control characters and bidirectional overrides shown as escapes, as the CLI and the pages show them
  const HIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function visible(text) {
    return text.replace(HIDDEN, (ch) => {
      const code = ch.charCodeAt(0);
      return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0");
    });
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(visible(String(c))));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function api(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) {
      const error = new Error(body.error || response.statusText);
      error.body = body;
      throw error;
    }
    return body;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "-";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
    return String(v);
  }

  function when(ms) {
    if (!ms) return "-";
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function duration(start, end) {
    if (!start) return "-";
    const s = ((end || Date.now()) - start) / 1000;
    return s < 60 ? s.toFixed(1) + "s" : s < 3600 ? (s / 60).toFixed(1) + "m" : (s / 3600).toFixed(1) + "h";
  }

  function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") u.set(k, v);
    return u.toString();
  }

  // ---- charts -------------------------------------------------------------
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  const controls = { x: "step", log: false, smooth: 0 };

  function num(v, log) {
    if (v === null || v === undefined || typeof v === "string") return null; // NaN and infinities are gaps
    return log && v <= 0 ? null : v;
  }

  class Chart {
    constructor(container) {
      this.container = container;
      this.runs = container.dataset.runs || "";
      this.key = container.dataset.key;
      this.group = container.dataset.group || "";
      this.experiment = container.dataset.experiment || "";
      this.filter = container.dataset.filter || "";
      this.range = [null, null];
      this.plot = null;
      this.live = false;
      window.gitmlCharts.push(this);
    }

    url(lo, hi) {
      const width = Math.max(200, Math.round(this.container.clientWidth || 800));
      const common = { key: this.key, x: controls.x, width, smooth: controls.smooth || "", lo: lo ?? "", hi: hi ?? "" };
      if (this.group) return "/api/groups?" + qs({ ...common, group: this.group, experiment: this.experiment, filter: this.filter });
      return "/api/series?" + qs({ ...common, runs: this.runs });
    }

    async load(lo, hi) {
      this.range = [lo ?? null, hi ?? null];
      const t0 = performance.now();
      let data;
      try {
        data = await api(this.url(lo, hi));
      } catch (e) {
        this.showError(e.message);
        return;
      }
      const t1 = performance.now();
      this.draw(data);
      const t2 = performance.now();
      window.gitmlTimings.push({ kind: "chart", key: this.key, request: t1 - t0, draw: t2 - t1 });
      this.live = !this.group && data.series.some((s) => s.status === "RUNNING");
    }

    showError(message) {
      let box = $(".chart-error", this.container);
      if (!box) box = this.container.appendChild(el("p", { class: "error chart-error" }));
      box.textContent = message;
    }

    draw(data) {
      const log = controls.log;
      let columns, series, bands;
      if (this.group) {
        columns = [data.grid];
        series = [{}];
        bands = [];
        data.groups.forEach((g, i) => {
          const color = COLORS[i % COLORS.length];
          const base = columns.length;
          columns.push(g.mean.map((v) => num(v, log)), g.min.map((v) => num(v, log)), g.max.map((v) => num(v, log)));
          series.push(
            { label: `${this.group}=${g.value} (${g.runs} runs)`, stroke: color, width: 2, spanGaps: true },
            { label: "min", stroke: color, width: 0, show: true, points: { show: false }, spanGaps: true },
            { label: "max", stroke: color, width: 0, points: { show: false }, spanGaps: true },
          );
          bands.push({ series: [base + 2, base + 1], fill: color + "33" });
        });
      } else {
        const tables = [];
        series = [{}];
        data.series.forEach((s, i) => {
          const color = COLORS[i % COLORS.length];
          const ys = s.y.map((v) => num(v, log));
          tables.push(s.smooth ? [s.x, ys, s.smooth.map((v) => num(v, log))] : [s.x, ys]);
          const label = data.series.length > 1 ? s.run_name : this.key;
          series.push({ label, stroke: s.smooth ? color + "55" : color, width: 1 });
          if (s.smooth) series.push({ label: label + " (smoothed)", stroke: color, width: 2, spanGaps: true });
        });
        columns = tables.length === 1 ? tables[0] : uPlot.join(tables);
        bands = [];
      }
      if (columns[0].length === 0) {
        this.showError("no points" + (this.range[0] !== null ? " in this range (double-click to reset)" : ""));
      } else {
        const old = $(".chart-error", this.container);
        if (old) old.remove();
      }
      const width = Math.max(200, this.container.clientWidth || 800);
      const opts = {
        width,
        height: this.container.classList.contains("big") ? 420 : 240,
        scales: { x: { time: controls.x === "time" }, y: { distr: log ? 3 : 1 } },
        series,
        bands,
        legend: { live: true },
        cursor: { drag: { x: true, y: false, setScale: false } },
        hooks: {
          setSelect: [
            (u) => {
              if (u.select.width < 2) return;
              const lo = u.posToVal(u.select.left, "x");
              const hi = u.posToVal(u.select.left + u.select.width, "x");
              u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
              this.load(lo, hi); // the server sends the visible range again, at full detail
            },
          ],
        },
      };
      if (this.plot) this.plot.destroy();
      this.plot = new uPlot(opts, columns, this.container);
      this.plot.over.addEventListener("dblclick", () => this.load(null, null));
    }
  }

  function initControls(charts) {
    const x = $("#x-axis"), log = $("#log-scale"), smooth = $("#smoothing");
    if (!x) return;
    const reload = () => charts.forEach((c) => c.load(null, null));
    x.addEventListener("change", () => { controls.x = x.value; reload(); });
    log.addEventListener("change", () => { controls.log = log.checked; charts.forEach((c) => c.load(...c.range)); });
    smooth.addEventListener("change", () => {
      controls.smooth = Number(smooth.value);
      $("#smoothing-value").textContent = smooth.value;
      charts.forEach((c) => c.load(...c.range));
    });
  }

  function startCharts() {
    const charts = $$(".chart").map((c) => new Chart(c));
    initControls(charts);
    charts.forEach((c) => c.load(null, null));
    return charts;
  }

  // ---- run page -------------------------------------------------------------
  function runPage() {
    const view = $("#run-view");
    const charts = startCharts();
    const runId = view.dataset.run;
    async function poll() {
      if (view.dataset.status !== "RUNNING") return;
      try {
        const s = await api(`/api/run/${runId}`);
        view.dataset.status = s.status;
        const status = $("#run-status");
        status.textContent = s.status;
        status.dataset.status = s.status;
        $("#run-end").textContent = when(s.end_time);
        for (const cell of $$("td[data-metric]")) {
          if (cell.dataset.metric in s.metrics) cell.textContent = fmt(s.metrics[cell.dataset.metric]);
        }
        charts.forEach((c) => c.load(...c.range));
      } catch (e) { /* the next poll tries again */ }
      setTimeout(poll, 3000);
    }
    setTimeout(poll, 3000);
  }

  // ---- chart page -------------------------------------------------------------
  function chartPage() {
    const charts = startCharts();
    const key = $("#chart-key");
    key.addEventListener("change", () => {
      charts.forEach((c) => { c.key = key.value; c.load(null, null); });
    });
    setInterval(() => charts.forEach((c) => { if (c.live) c.load(...c.range); }), 3000);
  }

  // ---- runs table -------------------------------------------------------------
  function runsPage() {
    const view = $("#runs-view");
    const experiment = view.dataset.experiment;
    const storeKey = "gitml.columns." + (experiment || "*");
    const params = new URLSearchParams(location.search);
    const state = {
      filter: params.get("filter") || "",
      sort: params.get("sort") || "",
      desc: params.get("desc") !== "0",
      offset: Number(params.get("offset") || 0),
      limit: 50,
      columns: JSON.parse(localStorage.getItem(storeKey) || "null"),
      keys: null,
      selected: new Set(),
      rows: [],
    };
    $("#filter").value = state.filter;
    let timer = null;

    async function load(initial) {
      const t0 = performance.now();
      const columns = state.columns || [];
      let body;
      try {
        body = await api("/api/runs?" + qs({
          experiment, filter: state.filter, sort: state.sort, desc: state.sort ? (state.desc ? "1" : "0") : "",
          offset: state.offset, limit: state.limit, columns: columns.join(","), keys: state.keys ? "" : "1",
          defaults: state.columns === null ? "1" : "", // a first visit: the server picks the columns, one request
        }));
      } catch (e) {
        showError(e);
        return;
      }
      $("#filter-error").hidden = true;
      $("#filter").classList.remove("bad");
      if (body.keys) {
        state.keys = body.keys;
        if (state.columns === null) state.columns = body.columns;
        buildChooser();
      }
      render(body);
      window.gitmlTimings.push({ kind: "table", ms: performance.now() - t0, initial: !!initial });
      history.replaceState(null, "", "?" + qs({ experiment, filter: state.filter, sort: state.sort, desc: state.sort && !state.desc ? "0" : "", offset: state.offset || "" }));
      clearTimeout(timer);
      if (body.rows.some((r) => r.status === "RUNNING")) timer = setTimeout(() => load(false), 3000); // live
    }

    function showError(e) {
      const box = $("#filter-error");
      box.hidden = false;
      $("#filter").classList.add("bad");
      if (e.body && e.body.position !== undefined) {
        box.textContent = `${e.message}\n${e.body.text}\n${" ".repeat(e.body.position)}^`;
      } else {
        box.textContent = e.message;
      }
    }

    function header(label, field) {
      const th = el("th", { dataset: field ? { sort: field } : {} }, label);
      if (field) {
        th.classList.add("sortable");
        if (state.sort === field) th.append(state.desc ? " ▼" : " ▲");
        th.addEventListener("click", () => {
          state.desc = state.sort === field ? !state.desc : true;
          state.sort = field;
          state.offset = 0;
          load(false);
        });
      }
      return th;
    }

    function render(body) {
      state.rows = body.rows;
      const thead = $("#runs-table thead"), tbody = $("#runs-table tbody");
      const head = el("tr", {}, el("th", {}), header("name", "attributes.run_name"), header("status", "attributes.status"),
        header("started", "attributes.start_time"), el("th", {}, "duration"), el("th", {}, "source"),
        ...body.columns.map((c) => header(c, c)));
      thead.replaceChildren(head);
      const rows = body.rows.map((r) => {
        const box = el("input", { type: "checkbox", checked: state.selected.has(r.run_id) });
        box.addEventListener("change", () => {
          if (box.checked) state.selected.add(r.run_id); else state.selected.delete(r.run_id);
          updateButtons();
        });
        const name = el("td", { class: "name", style: `padding-left: ${0.4 + r.depth * 1.4}em` },
          r.depth ? "↳ " : "", el("a", { href: `/run/${r.run_id}` }, r.run_name || r.run_id.slice(0, 8)));
        const source = el("td", { class: "mono" }, r.source_commit ? r.source_commit.slice(0, 8) : "-", r.branch ? " " : "", r.branch ? el("span", { class: "branch" }, r.branch) : null);
        return el("tr", { dataset: { run: r.run_id, status: r.status }, class: r.depth ? "child" : null },
          el("td", {}, box), name, el("td", {}, el("span", { class: "status", dataset: { status: r.status } }, r.status)),
          el("td", {}, when(r.start_time)), el("td", {}, duration(r.start_time, r.end_time)), source,
          ...r.values.map((v) => el("td", { class: typeof v === "number" ? "num" : null }, fmt(v))));
      });
      tbody.replaceChildren(...rows);
      const last = Math.min(body.offset + body.rows.length, body.total);
      $("#range").textContent = body.total ? `${body.offset + 1}–${last} of ${body.total}` : "no runs";
      $("#prev").disabled = body.offset === 0;
      $("#next").disabled = last >= body.total;
      updateButtons();
    }

    function updateButtons() {
      $("#compare-button").disabled = state.selected.size < 2;
      $("#chart-button").disabled = state.selected.size < 1;
    }

    function buildChooser() {
      const box = $("#column-chooser");
      const groups = ["params", "metrics", "tags"].map((kind) => {
        const items = state.keys[kind].map((key) => {
          const name = `${kind}.${key}`;
          const input = el("input", { type: "checkbox", checked: state.columns.includes(name), dataset: { column: name } });
          input.addEventListener("change", () => {
            state.columns = input.checked ? [...state.columns, name] : state.columns.filter((c) => c !== name);
            localStorage.setItem(storeKey, JSON.stringify(state.columns)); // remembered per experiment
            load(false);
          });
          return el("label", {}, input, " ", key);
        });
        return el("fieldset", {}, el("legend", {}, kind), ...items);
      });
      box.replaceChildren(...groups);
      const fill = (select, keys) => select.replaceChildren(el("option", { value: "" }, "-"), ...keys.map((k) => el("option", { value: k }, k)));
      fill($("#group-param"), state.keys.params);
      fill($("#group-metric"), state.keys.metrics);
    }

    $("#filter-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.filter = $("#filter").value;
      state.offset = 0;
      load(false);
    });
    $("#columns-button").addEventListener("click", () => { $("#column-chooser").hidden = !$("#column-chooser").hidden; });
    $("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(false); });
    $("#next").addEventListener("click", () => { state.offset += state.limit; load(false); });
    $("#compare-button").addEventListener("click", () => { location.href = "/compare?" + qs({ runs: [...state.selected].join(",") }); });
    $("#chart-button").addEventListener("click", () => { location.href = "/chart?" + qs({ runs: [...state.selected].join(",") }); });
    $("#group-button").addEventListener("click", () => {
      const group = $("#group-param").value, key = $("#group-metric").value;
      if (group && key) location.href = "/chart?" + qs({ experiment, filter: state.filter, group, key });
    });
    load(true);
  }

  // ---- compare --------------------------------------------------------------
  async function comparePage() {
    const view = $("#compare-view");
    const data = await api("/api/compare?" + qs({ runs: view.dataset.runs }));
    const numeric = data.columns.map((_, i) => data.runs.every((r) => r.values[i] === null || !isNaN(Number(r.values[i]))));
    let chosen = data.columns.map((_, i) => i).filter((i) => data.runs.some((r) => r.values[i] !== null)).slice(0, 8);

    function scale(i, height) {
      const vals = data.runs.map((r) => r.values[i]).filter((v) => v !== null);
      if (numeric[i]) {
        const nums = vals.map(Number), lo = Math.min(...nums), hi = Math.max(...nums);
        return (v) => (v === null ? null : height - ((Number(v) - lo) / (hi - lo || 1)) * height);
      }
      const cats = [...new Set(vals.map(String))].sort();
      return (v) => (v === null ? null : height - (cats.indexOf(String(v)) / Math.max(1, cats.length - 1)) * height);
    }

    function parallel() {
      const W = Math.max(400, view.clientWidth - 20), H = 260, pad = 30;
      const root = svg("svg", { width: W, height: H + 2 * pad + 20, class: "parallel" });
      const step = chosen.length > 1 ? (W - 2 * pad) / (chosen.length - 1) : 0;
      const scales = chosen.map((i) => scale(i, H));
      chosen.forEach((col, j) => {
        const x = pad + j * step;
        root.append(svg("line", { x1: x, y1: pad, x2: x, y2: pad + H, class: "axis" }));
        root.append(svg("text", { x, y: pad + H + 18, "text-anchor": "middle" }, data.columns[col]));
      });
      data.runs.forEach((r, k) => {
        const points = chosen.map((col, j) => [pad + j * step, scales[j](r.values[col])]).filter((p) => p[1] !== null);
        const line = svg("polyline", { points: points.map((p) => `${p[0]},${p[1] + pad}`).join(" "), stroke: COLORS[k % COLORS.length], fill: "none", "stroke-width": 2 });
        line.append(svg("title", {}, r.run_name));
        root.append(line);
      });
      $("#parallel").replaceChildren(root);
    }

    function scatter() {
      const xi = Number($("#scatter-x").value), yi = Number($("#scatter-y").value);
      const W = 480, H = 320, pad = 40;
      const root = svg("svg", { width: W, height: H, class: "scatter" });
      const sx = scale(xi, W - 2 * pad), sy = scale(yi, H - 2 * pad);
      root.append(svg("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: "axis" }));
      root.append(svg("line", { x1: pad, y1: pad, x2: pad, y2: H - pad, class: "axis" }));
      root.append(svg("text", { x: W / 2, y: H - 8, "text-anchor": "middle" }, data.columns[xi]));
      root.append(svg("text", { x: 12, y: pad - 12 }, data.columns[yi]));
      data.runs.forEach((r, k) => {
        const xv = r.values[xi], yv = r.values[yi];
        if (xv === null || yv === null) return;
        const dot = svg("circle", { cx: pad + (W - 2 * pad) - sx(xv), cy: pad + sy(yv), r: 5, fill: COLORS[k % COLORS.length] });
        dot.append(svg("title", {}, `${r.run_name}: ${xv}, ${yv}`));
        root.append(dot);
      });
      $("#scatter").replaceChildren(root);
    }

    const chooser = $("#parallel-columns");
    chooser.replaceChildren(...data.columns.map((c, i) => {
      const input = el("input", { type: "checkbox", checked: chosen.includes(i) });
      input.addEventListener("change", () => {
        chosen = input.checked ? [...chosen, i].sort((a, b) => a - b) : chosen.filter((x) => x !== i);
        parallel();
      });
      return el("label", {}, input, " ", c);
    }));
    for (const [id, pick] of [["#scatter-x", 0], ["#scatter-y", 1]]) {
      const select = $(id);
      select.replaceChildren(...data.columns.map((c, i) => el("option", { value: i }, c)));
      const numericCols = data.columns.map((_, i) => i).filter((i) => numeric[i]);
      select.value = String(numericCols[pick] ?? pick);
      select.addEventListener("change", scatter);
    }
    parallel();
    scatter();
  }

  const pages = { runs: runsPage, run: runPage, chart: chartPage, compare: comparePage };
  document.addEventListener("DOMContentLoaded", () => {
    const page = pages[document.body.dataset.page];
    if (page) page();
  });
})();
