/* rfmseg explorer and report.
 *
 * One script draws a run's "view" (see rfmseg/report/data.py): segment cards, insights, the customer scatter
 * (2-D and 3-D), the customers of a segment (a sortable, paged table and its whole-segment CSV), customer search,
 * the K choice, the Pareto curve, transitions, the early warnings (drawn by warnings.js) and data quality.
 * Numbers are rounded as the CLI rounds them (Python's format(): the exact binary value, ties to even), chart
 * titles are HTML headings above each plot and Plotly's mode bar sits in the plot's top margin, so the two never
 * meet.
 * In a report the view is embedded in the page (<script id="rfmseg-data">) and everything works from disk;
 * served at / by `rfmseg serve`, the view and the searches come from the HTTP API.
 */
(function () {
  "use strict";

  const embedded = document.getElementById("rfmseg-data");
  const MODE = embedded ? "report" : "server";
  const KEY = "rfmseg-api-key";
  const KNOWN_COLORS = {
    "Champions": "#1b9e77",
    "Loyal Buyers": "#3366cc",
    "Potential Loyalists": "#66a61e",
    "New Customers": "#17becf",
    "At-Risk": "#e6550d",
    "Can't Lose Them": "#c62828",
    "Hibernating": "#9467bd",
    "Occasional": "#8a8f98",
    "Lost": "#8c564b",
  };
  const PALETTE = ["#e7298a", "#a6761d", "#1f77b4", "#bcbd22", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
  const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: true };
  const TOP = 34; // the plots' top margin: the mode bar lives there, above the plot area and below the title
  const LOG_RULE = 10; // spend is heavy-tailed (log axis by default) when its 99th percentile / median exceeds this
  const MIN_FLOW_SHARE = 0.04; // "(new)"/"(gone)" drawn at least this share of the customers tall
  const TABLE_PAGE = 25;
  const state = { view: null, colors: {}, segments: [], servedRun: null, autoLog: null, campaigns: null,
    table: { segment: null, page: 1, sort: "monetary", order: "desc" } };

  // ------------------------------------------------------------------------------------------- helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "style") node.setAttribute("style", v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const cur = () => (state.view && state.view.summary.currency) || "$";
  /* The run's words (rfmseg.features.Units, in its summary): users/sessions/features used for a SaaS run,
   * leads/touchpoints/deal size for a CRM one. No total: a sum of monetary means nothing (no revenue, no shares
   * of it, no Pareto); no ratio: no AOV; not money: no currency. Runs without units speak e-commerce. */
  const DEFAULT_UNITS = { entity: "customers", recency: "days since last order", frequency: "orders",
    event: "order", monetary: "spend", total: "revenue", ratio: "AOV", money: true, suffix: "" };
  const W = () => Object.assign({}, DEFAULT_UNITS, state.view && state.view.summary.units);
  const cap = (w) => w.charAt(0).toUpperCase() + w.slice(1);
  const one = (w) => w.replace(/s$/, ""); // "users" -> "user"

  /* Python's format(x, f",.{d}f"): the double's exact decimal expansion (toFixed(100) is exact for |x| >= 2^-48;
   * anything smaller rounds to zero anyway), rounded half to even, with thousands separators. So 8.25 is "8.2"
   * here as in the CLI's segment table, where toFixed and toLocaleString say "8.3". */
  function pyFixed(x, d) {
    x = Number(x);
    if (!Number.isFinite(x)) return String(x);
    const neg = x < 0 || Object.is(x, -0);
    const [whole, frac] = Math.abs(x).toFixed(100).split(".");
    let digits = whole + frac.slice(0, d);
    const rest = frac.slice(d);
    const last = Number(digits[digits.length - 1]);
    const up = rest[0] > "5" || (rest[0] === "5" && (/[1-9]/.test(rest.slice(1)) || last % 2 === 1));
    if (up) {
      const a = digits.split("");
      let i = a.length - 1;
      while (i >= 0 && a[i] === "9") a[i--] = "0";
      if (i < 0) a.unshift("1");
      else a[i] = String(Number(a[i]) + 1);
      digits = a.join("");
    }
    const intPart = digits.slice(0, digits.length - d).replace(/^0+(?=\d)/, "");
    const grouped = intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return (neg ? "-" : "") + grouped + (d > 0 ? "." + digits.slice(digits.length - d) : "");
  }
  const int = (x) => pyFixed(x, 0);
  const num = (x, d) => pyFixed(x, d);
  const money = (x) => (x < 0 ? "-" : "") + cur() + int(Math.abs(x));
  function value(x) { // a monetary figure as Units.value words it: "$1,234", "2", "4.5", "80%"
    const u = W();
    if (u.money) return money(x);
    return (Math.abs(x) >= 10 || Number.isInteger(Number(x)) ? int(x) : num(x, 1)) + u.suffix;
  }
  // a frequency, "8 orders" / "94.1 sessions" (d: always that many decimals, for a mean)
  const count = (f, d) => `${d === undefined ? (Number.isInteger(Number(f)) ? int(f) : num(f, 1)) : num(f, d)} ` +
    W().frequency;
  // a monetary value in a sentence: "$3,800 spent", "features used 2", "deal size $5,000"
  const amount = (m) => (W().money && W().monetary === "spend" ? `${value(m)} spent` : `${W().monetary} ${value(m)}`);
  // a mean monetary value after other figures: "$1,290" for spend, else "features used 15"
  const mean = (m) => (W().monetary === "spend" ? value(m) : amount(m));
  const pct = (x) => pyFixed(Number(x) * 100, 0) + "%";
  const chart = (id, title, cls) => el("figure", { class: "chart" },
    el("h3", { class: "chart-title", id: id + "-title" }, title), el("div", { class: cls || "plot", id }));
  const colorOf = (name) => state.colors[name] || "#888";
  const segStyle = (name) => "--seg:" + colorOf(name);

  function assignColors(names) {
    let i = 0;
    state.colors = {};
    for (const n of names) state.colors[n] = KNOWN_COLORS[n] || PALETTE[i++ % PALETTE.length];
  }

  function formatValue(key, v) {
    if (typeof v !== "number") return String(v);
    if (/share|lift|ratio/.test(key)) return /share/.test(key) ? pct(v) : num(v, 1) + "×";
    if (/revenue|monetary|aov/.test(key)) return value(v);
    return Number.isInteger(v) ? int(v) : num(v, 1);
  }

  function keyWords(key) { // an insight's value name in the run's words: "share_customers" -> "share users"
    const u = W();
    const say = { customers: u.entity, orders: u.frequency, revenue: u.total || "total",
      aov: u.ratio === "AOV" ? "aov" : u.ratio || "ratio" };
    return key.split("_").map((w) => say[w] || w).join(" ");
  }

  // ------------------------------------------------------------------------------------------- the API
  async function api(path, options) {
    const headers = Object.assign({ Accept: "application/json" }, (options && options.headers) || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = "Bearer " + key;
    const res = await fetch(path, Object.assign({}, options, { headers }));
    const body = await res.json().catch(() => ({}));
    if (res.status === 401) {
      askForKey(body.detail);
      throw Object.assign(new Error(body.detail || "an API key is needed"), { status: 401 });
    }
    if (!res.ok) throw Object.assign(new Error(body.detail || res.statusText), { status: res.status });
    return body;
  }

  function askForKey(detail) {
    const app = document.getElementById("app");
    const input = el("input", { type: "password", id: "api-key", placeholder: "API key", autocomplete: "off" });
    app.replaceChildren(
      el("form", {
        class: "panel keyform",
        onsubmit: (e) => {
          e.preventDefault();
          sessionStorage.setItem(KEY, input.value.trim());
          start();
        },
      },
      el("h2", {}, "This server needs an API key"),
      el("p", { class: "note" }, detail || "Enter the key set in RFMSEG_API_KEY on the server."),
      input,
      el("button", { type: "submit" }, "Open the explorer")),
    );
  }

  // ------------------------------------------------------------------------------------------- page
  function render(view, runs) {
    state.view = view;
    state.segments = view.summary.segments.map((s) => s.name);
    assignColors(state.segments);
    const s = view.summary;
    const r = view.run;
    const u = W();
    const app = document.getElementById("app");
    const header = el("header", { class: "top" },
      el("h1", {}, MODE === "report" ? "rfmseg report" : "rfmseg explorer"),
      el("div", { class: "sub", id: "run-line" },
        `Run ${r.run_id}` + (s.as_of ? ` · as of ${s.as_of}` : "") + ` · ${int(s.n_customers)} ${u.entity}` +
        (u.total ? ` · ${u.total} ${value(s.total_revenue)}` : "") + ` · K=${s.k} (${s.transform || "minmax"})` +
        (r.input ? ` · ${r.input}` : "")),
      runs && runs.length > 1 ? runPicker(runs, r.run_id) : null);
    const notices = (s.warnings || []).map((w) => el("p", { class: "notice" }, typeof w === "string" ? w : w.text));
    app.replaceChildren(...[ // without the panels a run has nothing for (replaceChildren would write "null")
      header,
      ...notices,
      el("section", { class: "cards", id: "cards" }, s.segments.map(card)),
      insightsPanel(s),
      warningsPanel(view),
      tablePanel(s),
      scatterPanel(view),
      searchPanel(view),
      kPanel(view.choose_k),
      paretoPanel(view),
      transitionsPanel(view.transitions),
      campaignsPanel(state.campaigns),
      qualityPanel(view.quality),
      rhythmPanel(s.rhythm),
      el("footer", {},
        MODE === "report"
          ? `Self-contained report generated ${view.generated} by rfmseg; it works offline.`
          : el("span", {}, "Data from the rfmseg API — ", el("a", { href: "docs" }, "API docs"), ".")),
    ].filter(Boolean));
    drawScatter();
    openTable(state.table.segment && state.segments.includes(state.table.segment) ? state.table.segment
      : state.segments[0], false);
    drawK(view.choose_k);
    drawPareto(view);
    drawSankey(view.transitions);
    document.body.dataset.ready = "1";
  }

  function runPicker(runs, current) {
    const select = el("select", {
      id: "run-select",
      onchange: (e) => loadRun(e.target.value),
    }, runs.slice().reverse().map((x) =>
      el("option", { value: x.run_id, selected: x.run_id === current }, x.as_of ? `${x.run_id} (as of ${x.as_of})`
        : x.run_id)));
    return el("label", { class: "run-pick" }, "Run ", select);
  }

  function card(seg) {
    const u = W();
    return el("article", { class: "card", "data-segment": seg.name, style: segStyle(seg.name) },
      el("header", {}, el("h3", {}, seg.name), el("span", { class: "prio" }, `priority ${seg.priority}`)),
      el("dl", {},
        el("div", {}, el("dt", {}, cap(u.entity)), el("dd", { class: "v-customers" }, int(seg.customers)),
          el("dd", { class: "sub" }, `${pct(seg.share_customers)} of ${u.entity}`)),
        u.total ? el("div", {}, el("dt", {}, cap(u.total)), el("dd", { class: "v-revenue" }, value(seg.revenue)),
          el("dd", { class: "sub" }, `${pct(seg.share_revenue)} of ${u.total}`)) : null,
        u.ratio ? el("div", {}, el("dt", {}, u.ratio === "AOV" ? "Average order value" : u.ratio),
          el("dd", { class: "v-aov" }, value(seg.aov))) : null,
        el("div", {}, el("dt", {}, "Profile (means)"), el("dd", { class: "profile" },
          `${int(seg.mean_recency_days)} days · ${count(seg.mean_frequency, 1)} · ${mean(seg.mean_monetary)}`))),
      el("p", { class: "action" }, el("strong", {}, "Action: "), seg.action || "—"),
      seg.reason ? el("p", { class: "reason" }, seg.reason) : null,
      el("button", { type: "button", class: "show-customers", "data-segment": seg.name,
        onclick: () => openTable(seg.name, true) }, `${cap(u.entity)} ▸`));
  }

  function insightsPanel(s) {
    const items = (s.insights || []).map((i) =>
      el("li", { "data-insight": i.id }, i.text,
        el("div", { class: "values" }, Object.entries(i.values || {}).filter(([, v]) => typeof v !== "object")
          .map(([k, v]) => el("span", {}, `${keyWords(k)}: ${formatValue(k, v)}`)))));
    return el("section", { class: "panel", id: "insights-panel" }, el("h2", {}, "Insights"),
      items.length ? el("ul", { class: "insights" }, items) : el("p", { class: "note" }, "No insight rule fired."));
  }

  /* the early warnings (warnings.js): embedded in a report's view; in the explorer a placeholder, replaced once
   * GET /warnings answers (it lists every customer of every warning: the rest of the page does not wait) */
  function warningsPanel(view) {
    if (!window.rfmsegWarnings) return null;
    if (MODE === "server") {
      return el("section", { class: "panel", id: "warnings-panel" }, el("h2", {}, "Early warnings"),
        el("p", { class: "note" }, "Loading the early warnings…"));
    }
    return warningsFrom(view.warnings);
  }

  function warningsFrom(data) {
    return data ? window.rfmsegWarnings.panel(data, { el, int, num, value, W, cap, one, find: (id) => {
      document.getElementById("search-id").value = id;
      document.getElementById("search-panel").scrollIntoView();
      search(id);
    } }) : null;
  }

  async function loadWarnings(runId) {
    const data = await api(`warnings?run=${encodeURIComponent(runId)}`).catch(() => null);
    const here = document.getElementById("warnings-panel");
    if (!here || !state.view || state.view.run.run_id !== runId) return; // another run is shown by now
    const panel = warningsFrom(data);
    if (panel) here.replaceWith(panel);
    else here.remove(); // no warnings for this run: the panel is left out
  }

  // ------------------------------------------------------------------------------------------- scatter
  /* The log rule: spend (monetary) is heavy-tailed when the 99th percentile of the positive values drawn is more
   * than LOG_RULE times their median; then the y axis starts on a log scale (the "log spend" button still toggles
   * it). */
  function heavyTail(values) {
    const v = values.filter((x) => x > 0).sort((a, b) => a - b);
    if (v.length < 2) return { heavy: false, ratio: 1, nonPositive: values.length - v.length };
    const q = (p) => v[Math.min(v.length - 1, Math.floor(p * (v.length - 1)))];
    const ratio = q(0.99) / ((v[Math.floor((v.length - 1) / 2)] + v[Math.ceil((v.length - 1) / 2)]) / 2);
    return { heavy: ratio > LOG_RULE, ratio, nonPositive: values.length - v.length };
  }

  function scatterPanel(view) {
    const tail = heavyTail(view.scatter.points.monetary);
    state.autoLog = tail;
    const u = W();
    const m = u.monetary;
    const logNote = tail.heavy
      ? `${cap(m)} is heavy-tailed (the 99th percentile is ${num(tail.ratio, 1)}× the median, over ${LOG_RULE}×), ` +
        `so the ${m} axis starts on a log scale` + (tail.nonPositive ? `; the ${int(tail.nonPositive)} ${u.entity} ` +
        `with ${m} of zero or less are not drawn on it` : "") + "."
      : `${cap(m)} is not heavy-tailed (the 99th percentile is ${num(tail.ratio, 1)}× the median, at most ` +
        `${LOG_RULE}×), so the ${m} axis starts linear.`;
    const toggles = state.segments.map((name, i) =>
      el("label", { style: segStyle(name) },
        el("input", { type: "checkbox", checked: true, "data-segment": name, "data-trace": i, onchange: onToggle }),
        el("span", { class: "chip" }), name));
    return el("section", { class: "panel", id: "scatter-panel" },
      el("h2", {}, `${cap(u.entity)}: recency against ${m}`),
      el("div", { class: "toolbar", id: "segment-toggles" }, toggles,
        el("button", { type: "button", id: "log-toggle", "aria-pressed": String(tail.heavy), "data-auto": String(tail.heavy),
          onclick: onLog }, `log ${m}`),
        el("button", { type: "button", id: "view3d", "aria-pressed": "false", onclick: on3d }, "3-D RFM view"),
        el("span", { class: "count", id: "points-drawn" })),
      el("p", { class: "note", id: "scatter-note" },
        view.scatter.note + `. Marker size: ${u.frequency}. Hover a point for the ${one(u.entity)}; click a segment ` +
        "to hide it."),
      el("p", { class: "note", id: "log-note" }, logNote),
      chart("scatter", `Recency against ${m}: ${view.scatter.note}`),
      el("figure", { class: "chart", id: "scatter3d-figure", hidden: true },
        el("h3", { class: "chart-title", id: "scatter3d-title" }, `Recency, ${u.frequency} and ${m}: ${view.scatter.note}`),
        el("div", { class: "plot", id: "scatter3d" })));
  }

  function pointsBySegment() {
    const p = state.view.scatter.points;
    const groups = {};
    for (const name of state.segments) groups[name] = { id: [], r: [], f: [], m: [] };
    for (let i = 0; i < p.customer_id.length; i++) {
      const g = groups[p.segment[i]] || (groups[p.segment[i]] = { id: [], r: [], f: [], m: [] });
      g.id.push(p.customer_id[i]);
      g.r.push(p.recency_days[i]);
      g.f.push(p.frequency[i]);
      g.m.push(p.monetary[i]);
    }
    return groups;
  }

  function visibility() {
    const boxes = document.querySelectorAll("#segment-toggles input[type=checkbox]");
    return Array.from(boxes, (b) => (b.checked ? true : "legendonly"));
  }

  function drawScatter() {
    const groups = pointsBySegment();
    const fmax = Math.max(1, ...state.view.scatter.points.frequency);
    const vis = visibility();
    const u = W();
    const traces = state.segments.map((name, i) => {
      const g = groups[name];
      return {
        type: "scatter", mode: "markers", name, visible: vis[i],
        x: g.r, y: g.m,
        customdata: g.id.map((id, j) => [id, g.f[j]]),
        marker: { color: colorOf(name), opacity: 0.75, line: { width: 0.5, color: "#fff" },
          size: g.f.map((f) => 5 + 16 * Math.sqrt(f / fmax)) },
        hovertemplate: `<b>%{customdata[0]}</b><br>${name}<br>recency %{x} days<br>%{customdata[1]} ${u.frequency}` +
          `<br>${hoverValue("y")}<extra></extra>`,
      };
    });
    const layout = {
      margin: { t: TOP, r: 10, b: 50, l: 70 },
      xaxis: { title: { text: `Recency (${u.recency})` }, zeroline: false },
      yaxis: { title: { text: `Monetary (${monetaryUnit()})` }, type: logOn() ? "log" : "linear" },
      legend: { orientation: "h", y: -0.18 },
      hovermode: "closest",
    };
    const gd = document.getElementById("scatter");
    Plotly.newPlot(gd, traces, layout, PLOT_CONFIG).then(() => {
      gd.on("plotly_restyle", syncToggles);
      countPoints();
    });
  }

  // a hover's monetary line, "spend $%{y:,.2f}" / "features used %{y:,.2~f}", and the monetary axis' unit
  function hoverValue(axis) {
    const u = W();
    return u.money ? `${u.monetary} ${cur()}%{${axis}:,.2f}` : `${u.monetary} %{${axis}:,.2~f}${u.suffix}`;
  }
  const monetaryUnit = () => (W().money ? cur() : W().monetary + (W().suffix ? ", " + W().suffix : ""));

  function logOn() {
    const b = document.getElementById("log-toggle");
    return b && b.getAttribute("aria-pressed") === "true";
  }

  function onLog(e) {
    const on = !logOn();
    e.target.setAttribute("aria-pressed", String(on));
    Plotly.relayout("scatter", { "yaxis.type": on ? "log" : "linear" });
    const gd3 = document.getElementById("scatter3d");
    if (gd3.data) Plotly.relayout(gd3, { "scene.zaxis.type": on ? "log" : "linear" });
  }

  function onToggle(e) {
    const i = Number(e.target.dataset.trace);
    const v = e.target.checked ? true : "legendonly";
    Plotly.restyle("scatter", { visible: v }, [i]).then(countPoints);
    const gd3 = document.getElementById("scatter3d");
    if (gd3.data) Plotly.restyle(gd3, { visible: v === true ? true : false }, [i]);
  }

  function syncToggles() {
    // a click on the legend hides a trace too: keep the check boxes in step
    const gd = document.getElementById("scatter");
    document.querySelectorAll("#segment-toggles input[type=checkbox]").forEach((b) => {
      const t = gd.data[Number(b.dataset.trace)];
      b.checked = t.visible === undefined || t.visible === true;
    });
    countPoints();
  }

  function countPoints() {
    const gd = document.getElementById("scatter");
    const n = gd.data.filter((t) => t.visible === undefined || t.visible === true)
      .reduce((acc, t) => acc + t.x.length, 0);
    const out = document.getElementById("points-drawn");
    out.dataset.count = String(n);
    out.textContent = `${int(n)} points drawn`;
  }

  function on3d(e) {
    const on = e.target.getAttribute("aria-pressed") !== "true";
    e.target.setAttribute("aria-pressed", String(on));
    const gd2 = document.getElementById("scatter");
    const gd3 = document.getElementById("scatter3d");
    gd2.parentNode.hidden = on;
    gd3.parentNode.hidden = !on;
    if (on && !gd3.data) draw3d(gd3);
  }

  function draw3d(gd3) {
    const groups = pointsBySegment();
    const vis = visibility();
    const traces = state.segments.map((name, i) => ({
      type: "scatter3d", mode: "markers", name, visible: vis[i] === true,
      x: groups[name].r, y: groups[name].f, z: groups[name].m, text: groups[name].id,
      marker: { color: colorOf(name), size: 3, opacity: 0.8 },
      hovertemplate: `<b>%{text}</b><br>${name}<br>recency %{x} days<br>%{y} ${W().frequency}<br>${hoverValue("z")}` +
        "<extra></extra>",
    }));
    const layout = {
      margin: { t: TOP, r: 0, b: 0, l: 0 },
      height: 620,
      scene: {
        xaxis: { title: { text: "recency (days)" } },
        yaxis: { title: { text: `frequency (${W().frequency})` } },
        zaxis: { title: { text: `monetary (${monetaryUnit()})` }, type: logOn() ? "log" : "linear" },
      },
    };
    Plotly.newPlot(gd3, traces, layout, PLOT_CONFIG).catch((err) => {
      gd3.replaceChildren(el("p", { class: "error" }, "The 3-D view needs WebGL, which this browser lacks: " + err));
    });
  }

  // ------------------------------------------------------------------------------------------- customer table
  const tableColumns = (u) => [
    ["customer_id", one(u.entity), null],
    ["recency_days", "recency (days)", (v) => int(v)],
    ["frequency", u.frequency, (v) => int(v)],
    ["monetary", u.monetary, (v) => value(v)],
    u.ratio ? ["aov", u.ratio, (v) => value(v)] : null,
    ["distance", "distance to centroid", (v) => num(v, 3)],
  ].filter(Boolean);
  const SORTABLE = new Set(["recency_days", "frequency", "monetary", "aov", "distance"]);

  function tablePanel(s) {
    const u = W();
    if (!u.ratio && state.table.sort === "aov") state.table.sort = "monetary";
    const select = el("select", { id: "table-segment", onchange: (e) => openTable(e.target.value, false) },
      s.segments.map((x) => el("option", { value: x.name }, x.name)));
    return el("section", { class: "panel", id: "customers-panel" }, el("h2", {}, `${cap(u.entity)} of a segment`),
      el("div", { class: "toolbar" }, el("label", {}, "Segment ", select),
        el("span", { class: "count", id: "table-count" }),
        MODE === "server" ? el("a", { id: "csv-link", class: "button", href: "#", download: "",
          onclick: onCsv }, "Download CSV") : null),
      MODE === "server"
        ? el("p", { class: "note" }, "Click a column heading to sort by it (again to reverse); Download CSV gives " +
          `every ${one(u.entity)} of the segment, sorted as shown.`)
        : el("p", { class: "note" }, `The ${one(u.entity)} table needs the explorer (rfmseg serve): it pages through ` +
          "the API."),
      el("div", { id: "segment-table-box" }));
  }

  function tableQuery(extra) {
    const t = state.table;
    const q = new URLSearchParams({ run: state.view.run.run_id, sort: t.sort, order: t.order });
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    return `segments/${encodeURIComponent(t.segment)}/customers?${q}`;
  }

  async function openTable(name, scroll) {
    if (!name) return;
    const t = state.table;
    if (t.segment !== name) t.page = 1;
    t.segment = name;
    const select = document.getElementById("table-segment");
    select.value = name;
    select.parentNode.setAttribute("style", segStyle(name));
    if (scroll) document.getElementById("customers-panel").scrollIntoView({ block: "start" });
    if (MODE !== "server") return;
    document.getElementById("csv-link").href = tableQuery({ format: "csv" });
    const box = document.getElementById("segment-table-box");
    try {
      const body = await api(tableQuery({ page: t.page, page_size: TABLE_PAGE }));
      if (body.segment !== t.segment || body.page !== t.page) return; // a newer request took over
      box.replaceChildren(customerTable(body));
      document.getElementById("table-count").textContent = `${int(body.total)} ${W().entity}`;
    } catch (err) {
      if (err.status !== 401) box.replaceChildren(el("p", { class: "error", id: "table-error" }, err.message));
    }
  }

  function sortBy(key) {
    const t = state.table;
    if (t.sort === key) t.order = t.order === "desc" ? "asc" : "desc";
    else [t.sort, t.order] = [key, key === "recency_days" ? "asc" : "desc"];
    t.page = 1;
    openTable(t.segment, false);
  }

  function customerTable(body) {
    const t = state.table;
    const columns = tableColumns(W());
    const head = columns.map(([key, label]) => {
      const sorted = t.sort === key;
      const aria = sorted ? (t.order === "asc" ? "ascending" : "descending") : "none";
      return el("th", { "data-key": key, "aria-sort": SORTABLE.has(key) ? aria : null },
        SORTABLE.has(key) ? el("button", { type: "button", class: "sort", onclick: () => sortBy(key) },
          label, sorted ? (t.order === "asc" ? " ▲" : " ▼") : "") : label);
    });
    const rows = body.customers.map((c) => el("tr", { "data-customer": c.customer_id },
      columns.map(([key, , fmt]) => el("td", { "data-key": key }, fmt ? fmt(c[key]) : c[key]))));
    const go = (page) => () => {
      t.page = page;
      openTable(t.segment, false);
    };
    const pages = Math.max(1, body.pages);
    return el("div", { id: "segment-table", "data-segment": body.segment, "data-page": body.page,
      "data-sort": body.sort, "data-order": body.order },
      el("table", { class: "data customers" }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows)),
      el("div", { class: "toolbar pager" },
        el("button", { type: "button", id: "page-prev", disabled: body.page <= 1, onclick: go(body.page - 1) }, "◂ Previous"),
        el("span", { id: "page-info" }, `page ${int(body.page)} of ${int(pages)}`),
        el("button", { type: "button", id: "page-next", disabled: body.page >= pages, onclick: go(body.page + 1) },
          "Next ▸")));
  }

  async function onCsv(e) {
    // the link works as it is; with an API key the key has to go in a header, so fetch it and hand over a blob
    const key = sessionStorage.getItem(KEY);
    if (!key) return;
    e.preventDefault();
    const res = await fetch(e.currentTarget.href, { headers: { Authorization: "Bearer " + key } });
    const name = (/filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "") || [])[1] || "segment.csv";
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  // ------------------------------------------------------------------------------------------- search
  function searchPanel(view) {
    const u = W();
    const input = el("input", { id: "search-id", type: "search", placeholder: `${one(u.entity)} id, e.g. ` +
      (view.scatter.points.customer_id[0] || "C001"), autocomplete: "off", spellcheck: "false" });
    const form = el("form", { class: "search", id: "search-form", onsubmit: (e) => {
      e.preventDefault();
      search(input.value.trim());
    } }, input, el("button", { type: "submit" }, "Find"));
    let note = null;
    if (MODE === "report" && view.search && !view.search.complete) {
      note = el("p", { class: "note" }, `This report holds the ${int(view.search.customers)} ${u.entity} shown ` +
        `in the scatter, of ${int(view.summary.n_customers)}; the explorer (rfmseg serve) finds them all.`);
    }
    return el("section", { class: "panel", id: "search-panel" }, el("h2", {}, `Find a ${one(u.entity)}`), form, note,
      el("div", { id: "search-result", class: "result" }));
  }

  async function search(id) {
    const out = document.getElementById("search-result");
    if (!id) return;
    out.replaceChildren(el("p", { class: "note" }, "Searching…"));
    try {
      if (MODE === "report") {
        out.replaceChildren(searchEmbedded(id));
      } else {
        const runId = state.view.run.run_id;
        const found = await api(`customers/${encodeURIComponent(id)}/history`);
        let served = null;
        if (state.servedRun) {
          served = await api(`customers/${encodeURIComponent(id)}`).catch(() => null);
        }
        out.replaceChildren(customerResult(id, found.history, runId, served));
      }
    } catch (err) {
      out.replaceChildren(el("p", { class: "error", id: "search-error" }, err.message));
    }
  }

  function searchEmbedded(id) {
    const s = state.view.search;
    const rows = s && s.history.customers[id];
    if (!rows) {
      const who = W().entity;
      const why = s && s.complete ? `no ${one(who)} '${id}' in run ${state.view.run.run_id}`
        : `${one(who)} '${id}' is not among the ${who} this report holds`;
      return el("p", { class: "error", id: "search-error" }, why);
    }
    const runs = s.history.runs;
    const extra = s.forecast || []; // the forecast columns the report's run carries, after its own row's values
    const entries = rows.map(([i, segment, r, f, m, ...more]) => Object.assign({
      run_id: runs[i].run_id, as_of: runs[i].as_of, segment, recency_days: r, frequency: f, monetary: m,
    }, Object.fromEntries(extra.map((k, j) => [k, more[j]]))));
    return customerResult(id, entries, state.view.run.run_id, null);
  }

  /* P(alive) and the expected events and value in the next 90 days, when the run's assignments carry them
   * (p_alive, expected_orders_90d, expected_value_90d): each from the first of `rows` (the customer's row of
   * the run shown, its profile-store record of the same run) that has it; nothing when absent or null. */
  function forecastLine(rows) {
    const row = {};
    for (const k of ["p_alive", "expected_orders_90d", "expected_value_90d"]) {
      row[k] = rows.map((r) => r && r[k]).find((v) => v !== null && v !== undefined && v !== "");
    }
    const has = (k) => row[k] !== undefined && Number.isFinite(Number(row[k]));
    if (!has("p_alive") && !has("expected_orders_90d") && !has("expected_value_90d")) return null;
    const u = W();
    const what = [has("expected_orders_90d") ? `${num(row.expected_orders_90d, 1)} ${u.frequency}` : null,
      has("expected_value_90d") ? mean(row.expected_value_90d) : null].filter(Boolean);
    const parts = [has("p_alive") ? `P(alive) ${num(row.p_alive, 2)}` : null,
      what.length ? `expected ${what.join(" and ")} in the next 90 days` : null].filter(Boolean);
    return el("p", { class: "forecast" }, parts.join(" · "));
  }

  function customerResult(id, entries, runId, served) {
    const here = entries.find((e) => e.run_id === runId) || null;
    const latest = here || entries[entries.length - 1];
    const seg = state.view.summary.segments.find((x) => x.name === (latest && latest.segment));
    const u = W();
    const box = el("div", { "data-customer": id, "data-segment": latest ? latest.segment : "" },
      el("h3", {}, id, " ", latest ? el("span", { class: "badge", style: segStyle(latest.segment) }, latest.segment)
        : null),
      here ? null : el("p", { class: "note" }, `Not in run ${runId}; its last run is ${latest.run_id}.`),
      latest ? el("p", { class: "values-line" },
        `${int(latest.recency_days)} days since the last ${u.event} · ${count(latest.frequency)} · ` +
        amount(latest.monetary) + (u.ratio ? ` · ${u.ratio} ` +
        value(latest.frequency ? latest.monetary / latest.frequency : 0) : "")) : null,
      forecastLine([here, served && served.run_id === runId ? served : null]),
      seg ? el("p", {}, el("strong", {}, "Action: "), seg.action) : null,
      served ? el("p", { class: "note" }, `Served by the profile store (run ${served.run_id}): ${served.segment} ` +
        `since ${served.segment_since}` + (served.previous_segment ? `, before that ${served.previous_segment}` : "") +
        ".") : null);
    if (entries.length) {
      box.append(el("table", { class: "data history" },
        el("thead", {}, el("tr", {}, ["run", "as of", "segment", "recency", u.frequency, u.monetary].map((h) =>
          el("th", {}, h)))),
        el("tbody", {}, entries.map((e) => el("tr", {},
          el("td", {}, e.run_id), el("td", {}, e.as_of || ""), el("td", {}, e.segment),
          el("td", {}, `${int(e.recency_days)} d`), el("td", {}, int(e.frequency)), el("td", {}, value(e.monetary)))))));
    }
    return box;
  }

  // ------------------------------------------------------------------------------------------- K choice
  function kPanel(ck) {
    if (!ck || ck.error || ck.pending) {
      return el("section", { class: "panel", id: "k-panel" }, el("h2", {}, "Choosing K"),
        el("p", { class: "note" }, ck ? ck.pending || ck.error : `Too few ${W().entity} to compare values of K.`));
    }
    return el("section", { class: "panel", id: "k-panel" }, el("h2", {}, "Choosing K"),
      el("p", {}, `Recommended: ${ck.reason}. This run uses K=${ck.chosen_k}.`),
      el("p", { class: "note" }, `Metrics ${ck.note}; transform ${ck.transform}.`),
      el("div", { class: "grid2" },
        chart("elbow", "Elbow: inertia by K" + (ck.votes["elbow (inertia knee)"]
          ? ` (knee at K=${ck.votes["elbow (inertia knee)"]})` : ""), "plot small"),
        chart("silhouette", `Silhouette by K (recommended K=${ck.recommended_k})`, "plot small")));
  }

  function drawK(ck) {
    if (!ck || ck.error || ck.pending) return;
    const ks = ck.metrics.map((m) => m.k);
    const knee = ck.votes["elbow (inertia knee)"];
    const best = ck.recommended_k;
    const kneeRow = ck.metrics.find((m) => m.k === knee);
    const elbow = [{ type: "scatter", mode: "lines+markers", x: ks, y: ck.metrics.map((m) => m.inertia),
      name: "inertia", line: { color: "#2f5bd3" }, hovertemplate: "K=%{x}<br>inertia %{y:.3f}<extra></extra>" }];
    if (kneeRow) {
      elbow.push({ type: "scatter", mode: "markers", x: [knee], y: [kneeRow.inertia], name: `knee K=${knee}`,
        marker: { size: 16, symbol: "star", color: "#e6550d" }, hovertemplate: "knee K=%{x}<extra></extra>" });
    }
    Plotly.newPlot("elbow", elbow, {
      margin: { t: TOP, r: 10, b: 45, l: 60 }, showlegend: false,
      xaxis: { title: { text: "K" }, dtick: 1 }, yaxis: { title: { text: "inertia (within-cluster SS)" } },
      annotations: kneeRow ? [{ x: knee, y: kneeRow.inertia, text: `knee: K=${knee}`, ax: 40, ay: -40 }] : [],
    }, PLOT_CONFIG);
    Plotly.newPlot("silhouette", [{ type: "bar", x: ks, y: ck.metrics.map((m) => m.silhouette),
      marker: { color: ks.map((k) => (k === best ? "#1b9e77" : "#b8c2d6")) },
      hovertemplate: "K=%{x}<br>silhouette %{y:.3f}<extra></extra>" }], {
      margin: { t: TOP, r: 10, b: 45, l: 60 }, xaxis: { title: { text: "K" }, dtick: 1 },
      yaxis: { title: { text: "silhouette (higher is better)" } },
    }, PLOT_CONFIG);
  }

  // ------------------------------------------------------------------------------------------- Pareto
  // the concentration of the units' total (revenue, pipeline value); none where a sum of monetary means nothing
  function paretoPanel(view) {
    const p = view.pareto;
    const u = W();
    if (!u.total || !p) return null;
    const at = (x) => p.share_revenue[Math.round(x * (p.share_customers.length - 1))];
    return el("section", { class: "panel", id: "pareto-panel" }, el("h2", {}, `${cap(u.total)} concentration`),
      el("p", { class: "note", id: "pareto-note" }, `The top 20% of ${u.entity} by ${u.monetary} bring ` +
        `${pct(at(0.2))} of ${u.total}; the top 50% bring ${pct(at(0.5))}.`),
      chart("pareto", `Cumulative share of ${u.total} against share of ${u.entity}`, "plot small"));
  }

  function drawPareto(view) {
    const p = view.pareto;
    const u = W();
    if (!u.total || !p) return;
    const x = p.share_customers.map((v) => v * 100);
    const y = p.share_revenue.map((v) => v * 100);
    const first = u.monetary === "spend" ? "biggest spenders first" : `largest ${u.monetary} first`;
    Plotly.newPlot("pareto", [
      { type: "scatter", mode: "lines", x, y, name: `${u.entity} by ${u.monetary}`,
        line: { color: "#2f5bd3", width: 3 },
        hovertemplate: `top %{x:.0f}% of ${u.entity}<br>%{y:.1f}% of ${u.total}<extra></extra>` },
      { type: "scatter", mode: "lines", x: [0, 100], y: [0, 100], name: `equal ${u.monetary}`,
        line: { color: "#aaa", dash: "dot" }, hoverinfo: "skip" },
    ], {
      margin: { t: TOP, r: 10, b: 45, l: 60 }, legend: { x: 0.6, y: 0.1 },
      xaxis: { title: { text: `share of ${u.entity}, ${first} (%)` }, range: [0, 100] },
      yaxis: { title: { text: `share of ${u.total} (%)` }, range: [0, 100] },
    }, PLOT_CONFIG);
  }

  // ------------------------------------------------------------------------------------------- transitions
  function transitionsPanel(t) {
    const who = W().entity;
    if (!t) {
      return el("section", { class: "panel", id: "transitions-panel" }, el("h2", {}, "Transitions"),
        el("p", { class: "note" }, `A Sankey of how ${who} moved between segments appears once there are two runs.`));
    }
    return el("section", { class: "panel", id: "transitions-panel" }, el("h2", {}, "Transitions"),
      el("p", { class: "note", id: "transitions-note" }, `From run ${t.from_run} (as of ${t.from_as_of}) to run ` +
        `${t.to_run} (as of ${t.to_as_of}): ${int(t.moved)} of the ${int(t.customers)} ${who} in both runs changed ` +
        `segment; ${int(t.new)} are new and ${int(t.gone)} are gone. Link width: ${who}; "(new)" and "(gone)" ` +
        `are drawn at least ${pct(MIN_FLOW_SHARE)} of the ${who} tall so they stay readable (their labels and ` +
        "hover give the true counts)."),
      chart("sankey", `${cap(who)} from run ${t.from_run} (left) to run ${t.to_run} (right)`));
  }

  function drawSankey(t) {
    if (!t) return;
    const left = [...new Set(t.links.map((l) => l.source))];
    const right = [...new Set(t.links.map((l) => l.target))];
    const side = (n, when) => (n.startsWith("(") ? n : `${n} (${when})`);
    const total = t.links.reduce((acc, l) => acc + l.customers, 0);
    const sum = (pick) => t.links.reduce((acc, l) => {
      acc[pick(l)] = (acc[pick(l)] || 0) + l.customers;
      return acc;
    }, {});
    const out = sum((l) => l.source);
    const into = sum((l) => l.target);
    // a small "(new)" or "(gone)" is scaled up to MIN_FLOW_SHARE of the customers: otherwise a hairline
    const floor = MIN_FLOW_SHARE * total;
    const scale = (l) => {
      const n = l.source === "(new)" ? out["(new)"] : l.target === "(gone)" ? into["(gone)"] : 0;
      return n && n < floor ? floor / n : 1;
    };
    const u = W();
    const label = (n, when, totals) => (n.startsWith("(") ? `${n}: ${int(totals[n])} ${u.entity}` : side(n, when));
    const labels = left.map((n) => label(n, t.from_as_of, out)).concat(right.map((n) => label(n, t.to_as_of, into)));
    const colors = left.concat(right).map((n) => (n.startsWith("(") ? "#6b7385" : colorOf(n)));
    Plotly.newPlot("sankey", [{
      type: "sankey", arrangement: "snap",
      node: { label: labels, color: colors, pad: 18, thickness: 16,
        customdata: left.map((n) => int(out[n])).concat(right.map((n) => int(into[n]))),
        hovertemplate: `%{label}<br>%{customdata} ${u.entity}<extra></extra>` },
      link: {
        source: t.links.map((l) => left.indexOf(l.source)),
        target: t.links.map((l) => left.length + right.indexOf(l.target)),
        value: t.links.map((l) => l.customers * scale(l)),
        customdata: t.links.map((l) => [int(l.customers), value(l.revenue)]),
        color: t.links.map((l) => (l.source === l.target ? "rgba(160,170,190,0.35)" : "rgba(230,85,13,0.45)")),
        hovertemplate: `%{source.label} → %{target.label}<br>%{customdata[0]} ${u.entity}` +
          (u.total ? `, %{customdata[1]} ${u.total}` : "") + "<extra></extra>",
      },
    }], { margin: { t: TOP, r: 10, b: 10, l: 10 }, font: { size: 12 } }, PLOT_CONFIG);
  }

  // ------------------------------------------------------------------------------------------- quality
  function campaignsPanel(list) {
    // the campaigns planned with a randomised holdout (rfmseg campaign plan), with their measured uplift
    if (!list || !list.length) return null;
    const pts = (x) => `${x >= 0 ? "+" : "-"}${Math.abs(100 * x).toFixed(1)} pts`;
    const rows = list.map((c) => {
      const m = c.measured && c.measured.all;
      return el("tr", { "data-campaign": c.name },
        el("td", {}, c.name), el("td", {}, c.action), el("td", {}, c.segments.join(", ")),
        el("td", {}, int(c.treated)), el("td", {}, int(c.control)), el("td", {}, c.send_date),
        el("td", { class: "uplift" }, m ? `${pts(m.uplift)} [${pts(m.ci[0])}, ${pts(m.ci[1])}]` : "not measured"),
        el("td", { class: "verdict" }, m ? m.verdict : "rfmseg campaign measure " + c.name + " TRANSACTIONS"));
    });
    return el("section", { class: "panel", id: "campaigns-panel" }, el("h2", {}, "Campaigns with a holdout"),
      el("p", { class: "note" }, "Measured against a randomised control group: what each campaign caused " +
        "(conversion uplift, treated minus control, with its 95 % interval; no effect is claimed when the " +
        "interval holds zero)."),
      el("table", { class: "data" },
        el("thead", {}, el("tr", {}, ["campaign", "action", "segments", "treated", "control", "sent", "uplift",
          "verdict"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)));
  }

  function qualityPanel(q) {
    if (!q) return null;
    const rows = [["rows read", q.read], ["rows used", q.used]];
    for (const [reason, n] of Object.entries(q.quarantined)) rows.push([`quarantined: ${reason}`, n]);
    return el("section", { class: "panel", id: "quality-panel" }, el("h2", {}, "Data quality"),
      el("p", { class: "note" }, q.quarantined_total
        ? `${int(q.quarantined_total)} rows were set aside with their reason (quarantine.parquet in the run folder).`
        : "Every row read was used."),
      el("table", { class: "data" }, el("tbody", {}, rows.map(([k, v]) =>
        el("tr", { "data-row": k }, el("td", {}, k), el("td", {}, int(v)))))));
  }

  // ------------------------------------------------------------------------------------------- rhythm
  function rhythmPanel(r) {
    // each customer's rhythm (docs/rhythm.md): the distribution per segment, median (25th–75th percentile)
    if (!r || r.status === "off") return null;
    const title = el("h2", {}, "Rhythm: P(alive) and expected value per segment");
    if (!r.segments) {
      return el("section", { class: "panel", id: "rhythm-panel" }, title,
        el("p", { class: "note" }, `Not fitted: ${r.reason || r.status}.`));
    }
    const spread = (d, f) => (d && d.median !== null)
      ? `${f(d.median)} (${f(d.p25)}–${f(d.p75)})` : "—";
    const rows = [...r.segments, Object.assign({ segment: "all customers" }, r.all || {})].map((x) =>
      el("tr", { "data-row": x.segment },
        el("td", {}, x.segment), el("td", {}, int(x.customers || 0)),
        el("td", {}, spread(x.p_alive, pct)),
        el("td", {}, spread(x.expected_orders_90d, (v) => num(v, 2))),
        el("td", {}, spread(x.expected_value_90d, money)),
        el("td", {}, x.expected_value_90d && x.expected_value_90d.mean !== null ? money(x.expected_value_90d.mean) : "—")));
    return el("section", { class: "panel", id: "rhythm-panel" }, title,
      el("p", { class: "note" }, `Model: ${r.model === "mbg" ? "modified BG/NBD" : r.model} with Gamma-Gamma spend; ` +
        "median (25th–75th percentile) per segment. Expected figures are at the past pace: a season the data " +
        "has not seen is not in them."),
      el("table", { class: "data" },
        el("thead", {}, el("tr", {}, ["segment", "customers", "P(alive)", "orders, next 90 days",
          "value, next 90 days", "mean value"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)));
  }

  // ------------------------------------------------------------------------------------------- start
  async function loadRun(runId) {
    const app = document.getElementById("app");
    try {
      const [runs, view, health, campaigns] = await Promise.all([
        api("runs"),
        api(`runs/${encodeURIComponent(runId)}/view`),
        api("health").catch(() => null),
        api("campaigns").catch(() => null),
      ]);
      state.servedRun = health && health.store && health.store.run_id;
      state.campaigns = campaigns && campaigns.campaigns;
      render(view, runs.runs);
      if (window.rfmsegWarnings) loadWarnings(view.run.run_id);
    } catch (err) {
      if (err.status !== 401) app.replaceChildren(el("p", { class: "error", id: "load-error" }, err.message));
    }
  }

  function start() {
    if (MODE === "report") render(JSON.parse(embedded.textContent), null);
    else loadRun(new URLSearchParams(location.search).get("run") || "latest");
  }

  window.rfmsegFormat = { pyFixed }; // for the browser tests: the rounding the page uses
  start();
})();
