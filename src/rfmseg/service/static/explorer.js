/* rfmseg explorer and report.
 *
 * One script draws a run's "view" (see rfmseg/report/data.py): segment cards, insights, the customer scatter
 * (2-D and 3-D), customer search, the K choice, the Pareto curve, transitions and data quality.
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
  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  const state = { view: null, colors: {}, segments: [], servedRun: null };

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
  const int = (x) => Math.round(Number(x)).toLocaleString("en-US");
  const num = (x, d) => Number(x).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  const money = (x) => (x < 0 ? "-" : "") + cur() + int(Math.abs(x));
  const pct = (x) => Math.round(Number(x) * 100) + "%";
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
    if (/revenue|monetary|aov/.test(key)) return money(v);
    return Number.isInteger(v) ? int(v) : num(v, 1);
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
    const app = document.getElementById("app");
    const header = el("header", { class: "top" },
      el("h1", {}, MODE === "report" ? "rfmseg report" : "rfmseg explorer"),
      el("div", { class: "sub", id: "run-line" },
        `Run ${r.run_id}` + (s.as_of ? ` · as of ${s.as_of}` : "") + ` · ${int(s.n_customers)} customers · revenue ` +
        `${money(s.total_revenue)} · K=${s.k} (${s.transform || "minmax"})` + (r.input ? ` · ${r.input}` : "")),
      runs && runs.length > 1 ? runPicker(runs, r.run_id) : null);
    const notices = (s.warnings || []).map((w) => el("p", { class: "notice" }, typeof w === "string" ? w : w.text));
    app.replaceChildren(
      header,
      ...notices,
      el("section", { class: "cards", id: "cards" }, s.segments.map(card)),
      insightsPanel(s),
      scatterPanel(view),
      searchPanel(view),
      kPanel(view.choose_k),
      paretoPanel(view),
      transitionsPanel(view.transitions),
      qualityPanel(view.quality),
      el("footer", {},
        MODE === "report"
          ? `Self-contained report generated ${view.generated} by rfmseg; it works offline.`
          : el("span", {}, "Data from the rfmseg API — ", el("a", { href: "docs" }, "API docs"), ".")),
    );
    drawScatter();
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
    return el("article", { class: "card", "data-segment": seg.name, style: segStyle(seg.name) },
      el("header", {}, el("h3", {}, seg.name), el("span", { class: "prio" }, `priority ${seg.priority}`)),
      el("dl", {},
        el("div", {}, el("dt", {}, "Customers"), el("dd", { class: "v-customers" }, int(seg.customers)),
          el("dd", { class: "sub" }, `${pct(seg.share_customers)} of customers`)),
        el("div", {}, el("dt", {}, "Revenue"), el("dd", { class: "v-revenue" }, money(seg.revenue)),
          el("dd", { class: "sub" }, `${pct(seg.share_revenue)} of revenue`)),
        el("div", {}, el("dt", {}, "Average order value"), el("dd", { class: "v-aov" }, money(seg.aov))),
        el("div", {}, el("dt", {}, "Profile (means)"), el("dd", { class: "profile" },
          `${int(seg.mean_recency_days)} days · ${num(seg.mean_frequency, 1)} orders · ${money(seg.mean_monetary)}`))),
      el("p", { class: "action" }, el("strong", {}, "Action: "), seg.action || "—"),
      seg.reason ? el("p", { class: "reason" }, seg.reason) : null);
  }

  function insightsPanel(s) {
    const items = (s.insights || []).map((i) =>
      el("li", { "data-insight": i.id }, i.text,
        el("div", { class: "values" }, Object.entries(i.values || {}).map(([k, v]) =>
          el("span", {}, `${k.replace(/_/g, " ")}: ${formatValue(k, v)}`)))));
    return el("section", { class: "panel", id: "insights-panel" }, el("h2", {}, "Insights"),
      items.length ? el("ul", { class: "insights" }, items) : el("p", { class: "note" }, "No insight rule fired."));
  }

  // ------------------------------------------------------------------------------------------- scatter
  function scatterPanel(view) {
    const toggles = state.segments.map((name, i) =>
      el("label", { style: segStyle(name) },
        el("input", { type: "checkbox", checked: true, "data-segment": name, "data-trace": i, onchange: onToggle }),
        el("span", { class: "chip" }), name));
    return el("section", { class: "panel", id: "scatter-panel" },
      el("h2", {}, "Customers: recency against spend"),
      el("div", { class: "toolbar", id: "segment-toggles" }, toggles,
        el("button", { type: "button", id: "log-toggle", "aria-pressed": "false", onclick: onLog }, "log spend"),
        el("button", { type: "button", id: "view3d", "aria-pressed": "false", onclick: on3d }, "3-D RFM view"),
        el("span", { class: "count", id: "points-drawn" })),
      el("p", { class: "note", id: "scatter-note" },
        view.scatter.note + ". Marker size: orders. Hover a point for the customer; click a segment to hide it."),
      el("div", { class: "plot", id: "scatter" }),
      el("div", { class: "plot", id: "scatter3d", hidden: true }));
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
    const c = cur();
    const traces = state.segments.map((name, i) => {
      const g = groups[name];
      return {
        type: "scatter", mode: "markers", name, visible: vis[i],
        x: g.r, y: g.m,
        customdata: g.id.map((id, j) => [id, g.f[j]]),
        marker: { color: colorOf(name), opacity: 0.75, line: { width: 0.5, color: "#fff" },
          size: g.f.map((f) => 5 + 16 * Math.sqrt(f / fmax)) },
        hovertemplate: `<b>%{customdata[0]}</b><br>${name}<br>recency %{x} days<br>%{customdata[1]} orders<br>` +
          `spend ${c}%{y:,.2f}<extra></extra>`,
      };
    });
    const layout = {
      title: { text: state.view.scatter.note, font: { size: 13 } },
      margin: { t: 40, r: 10, b: 50, l: 70 },
      xaxis: { title: { text: "Recency (days since last order)" }, zeroline: false },
      yaxis: { title: { text: `Monetary (${c})` }, type: logOn() ? "log" : "linear" },
      legend: { orientation: "h", y: -0.18 },
      hovermode: "closest",
    };
    const gd = document.getElementById("scatter");
    Plotly.newPlot(gd, traces, layout, PLOT_CONFIG).then(() => {
      gd.on("plotly_restyle", syncToggles);
      countPoints();
    });
  }

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
    gd2.hidden = on;
    gd3.hidden = !on;
    if (on && !gd3.data) draw3d(gd3);
  }

  function draw3d(gd3) {
    const groups = pointsBySegment();
    const vis = visibility();
    const traces = state.segments.map((name, i) => ({
      type: "scatter3d", mode: "markers", name, visible: vis[i] === true,
      x: groups[name].r, y: groups[name].f, z: groups[name].m, text: groups[name].id,
      marker: { color: colorOf(name), size: 3, opacity: 0.8 },
      hovertemplate: `<b>%{text}</b><br>${name}<br>recency %{x} days<br>%{y} orders<br>spend ${cur()}%{z:,.2f}` +
        "<extra></extra>",
    }));
    const layout = {
      title: { text: state.view.scatter.note, font: { size: 13 } },
      margin: { t: 40, r: 0, b: 0, l: 0 },
      height: 620,
      scene: {
        xaxis: { title: { text: "recency (days)" } },
        yaxis: { title: { text: "frequency (orders)" } },
        zaxis: { title: { text: `monetary (${cur()})` }, type: logOn() ? "log" : "linear" },
      },
    };
    Plotly.newPlot(gd3, traces, layout, PLOT_CONFIG).catch((err) => {
      gd3.replaceChildren(el("p", { class: "error" }, "The 3-D view needs WebGL, which this browser lacks: " + err));
    });
  }

  // ------------------------------------------------------------------------------------------- search
  function searchPanel(view) {
    const input = el("input", { id: "search-id", type: "search", placeholder: "customer id, e.g. " +
      (view.scatter.points.customer_id[0] || "C001"), autocomplete: "off", spellcheck: "false" });
    const form = el("form", { class: "search", id: "search-form", onsubmit: (e) => {
      e.preventDefault();
      search(input.value.trim());
    } }, input, el("button", { type: "submit" }, "Find"));
    let note = null;
    if (MODE === "report" && view.search && !view.search.complete) {
      note = el("p", { class: "note" }, `This report holds the ${int(view.search.customers)} customers shown ` +
        `in the scatter, of ${int(view.summary.n_customers)}; the explorer (rfmseg serve) finds them all.`);
    }
    return el("section", { class: "panel", id: "search-panel" }, el("h2", {}, "Find a customer"), form, note,
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
      const why = s && s.complete ? `no customer '${id}' in run ${state.view.run.run_id}`
        : `customer '${id}' is not among the customers this report holds`;
      return el("p", { class: "error", id: "search-error" }, why);
    }
    const runs = s.history.runs;
    const entries = rows.map(([i, segment, r, f, m]) => ({
      run_id: runs[i].run_id, as_of: runs[i].as_of, segment, recency_days: r, frequency: f, monetary: m,
    }));
    return customerResult(id, entries, state.view.run.run_id, null);
  }

  function customerResult(id, entries, runId, served) {
    const here = entries.find((e) => e.run_id === runId) || null;
    const latest = here || entries[entries.length - 1];
    const seg = state.view.summary.segments.find((x) => x.name === (latest && latest.segment));
    const box = el("div", { "data-customer": id, "data-segment": latest ? latest.segment : "" },
      el("h3", {}, id, " ", latest ? el("span", { class: "badge", style: segStyle(latest.segment) }, latest.segment)
        : null),
      here ? null : el("p", { class: "note" }, `Not in run ${runId}; its last run is ${latest.run_id}.`),
      latest ? el("p", { class: "values-line" },
        `${int(latest.recency_days)} days since the last order · ${int(latest.frequency)} orders · ` +
        `${money(latest.monetary)} spent · AOV ${money(latest.frequency ? latest.monetary / latest.frequency : 0)}`)
        : null,
      seg ? el("p", {}, el("strong", {}, "Action: "), seg.action) : null,
      served ? el("p", { class: "note" }, `Served by the profile store (run ${served.run_id}): ${served.segment} ` +
        `since ${served.segment_since}` + (served.previous_segment ? `, before that ${served.previous_segment}` : "") +
        ".") : null);
    if (entries.length) {
      box.append(el("table", { class: "data history" },
        el("thead", {}, el("tr", {}, ["run", "as of", "segment", "recency", "orders", "spend"].map((h) =>
          el("th", {}, h)))),
        el("tbody", {}, entries.map((e) => el("tr", {},
          el("td", {}, e.run_id), el("td", {}, e.as_of || ""), el("td", {}, e.segment),
          el("td", {}, `${int(e.recency_days)} d`), el("td", {}, int(e.frequency)), el("td", {}, money(e.monetary)))))));
    }
    return box;
  }

  // ------------------------------------------------------------------------------------------- K choice
  function kPanel(ck) {
    if (!ck || ck.error) {
      return el("section", { class: "panel", id: "k-panel" }, el("h2", {}, "Choosing K"),
        el("p", { class: "note" }, ck ? ck.error : "Too few customers to compare values of K."));
    }
    return el("section", { class: "panel", id: "k-panel" }, el("h2", {}, "Choosing K"),
      el("p", {}, `Recommended: ${ck.reason}. This run uses K=${ck.chosen_k}.`),
      el("p", { class: "note" }, `Metrics ${ck.note}; transform ${ck.transform}.`),
      el("div", { class: "grid2" }, el("div", { class: "plot small", id: "elbow" }),
        el("div", { class: "plot small", id: "silhouette" })));
  }

  function drawK(ck) {
    if (!ck || ck.error) return;
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
      title: { text: "Elbow: inertia by K" + (knee ? ` (knee at K=${knee})` : ""), font: { size: 13 } },
      margin: { t: 40, r: 10, b: 45, l: 60 }, showlegend: false,
      xaxis: { title: { text: "K" }, dtick: 1 }, yaxis: { title: { text: "inertia (within-cluster SS)" } },
      annotations: kneeRow ? [{ x: knee, y: kneeRow.inertia, text: `knee: K=${knee}`, ax: 40, ay: -40 }] : [],
    }, PLOT_CONFIG);
    Plotly.newPlot("silhouette", [{ type: "bar", x: ks, y: ck.metrics.map((m) => m.silhouette),
      marker: { color: ks.map((k) => (k === best ? "#1b9e77" : "#b8c2d6")) },
      hovertemplate: "K=%{x}<br>silhouette %{y:.3f}<extra></extra>" }], {
      title: { text: `Silhouette by K (recommended K=${best})`, font: { size: 13 } },
      margin: { t: 40, r: 10, b: 45, l: 60 }, xaxis: { title: { text: "K" }, dtick: 1 },
      yaxis: { title: { text: "silhouette (higher is better)" } },
    }, PLOT_CONFIG);
  }

  // ------------------------------------------------------------------------------------------- Pareto
  function paretoPanel(view) {
    const p = view.pareto;
    const at = (x) => p.share_revenue[Math.round(x * (p.share_customers.length - 1))];
    return el("section", { class: "panel", id: "pareto-panel" }, el("h2", {}, "Revenue concentration"),
      el("p", { class: "note", id: "pareto-note" }, `The top 20% of customers by spend bring ${pct(at(0.2))} of ` +
        `revenue; the top 50% bring ${pct(at(0.5))}.`),
      el("div", { class: "plot small", id: "pareto" }));
  }

  function drawPareto(view) {
    const p = view.pareto;
    const x = p.share_customers.map((v) => v * 100);
    const y = p.share_revenue.map((v) => v * 100);
    Plotly.newPlot("pareto", [
      { type: "scatter", mode: "lines", x, y, name: "customers by spend", line: { color: "#2f5bd3", width: 3 },
        hovertemplate: "top %{x:.0f}% of customers<br>%{y:.1f}% of revenue<extra></extra>" },
      { type: "scatter", mode: "lines", x: [0, 100], y: [0, 100], name: "equal spend",
        line: { color: "#aaa", dash: "dot" }, hoverinfo: "skip" },
    ], {
      title: { text: "Cumulative share of revenue against share of customers", font: { size: 13 } },
      margin: { t: 40, r: 10, b: 45, l: 60 }, legend: { x: 0.6, y: 0.1 },
      xaxis: { title: { text: "share of customers, biggest spenders first (%)" }, range: [0, 100] },
      yaxis: { title: { text: "share of revenue (%)" }, range: [0, 100] },
    }, PLOT_CONFIG);
  }

  // ------------------------------------------------------------------------------------------- transitions
  function transitionsPanel(t) {
    if (!t) {
      return el("section", { class: "panel", id: "transitions-panel" }, el("h2", {}, "Transitions"),
        el("p", { class: "note" }, "A Sankey of how customers moved between segments appears once there are two runs."));
    }
    return el("section", { class: "panel", id: "transitions-panel" }, el("h2", {}, "Transitions"),
      el("p", { class: "note", id: "transitions-note" }, `From run ${t.from_run} (as of ${t.from_as_of}) to run ` +
        `${t.to_run} (as of ${t.to_as_of}): ${int(t.moved)} of the ${int(t.customers)} customers in both runs changed ` +
        `segment; ${int(t.new)} are new and ${int(t.gone)} are gone. Link width: customers.`),
      el("div", { class: "plot", id: "sankey" }));
  }

  function drawSankey(t) {
    if (!t) return;
    const left = [...new Set(t.links.map((l) => l.source))];
    const right = [...new Set(t.links.map((l) => l.target))];
    const side = (n, when) => (n.startsWith("(") ? n : `${n} (${when})`);
    const labels = left.map((n) => side(n, t.from_as_of)).concat(right.map((n) => side(n, t.to_as_of)));
    const colors = left.concat(right).map(colorOf);
    Plotly.newPlot("sankey", [{
      type: "sankey", arrangement: "snap",
      node: { label: labels, color: colors, pad: 18, thickness: 16 },
      link: {
        source: t.links.map((l) => left.indexOf(l.source)),
        target: t.links.map((l) => left.length + right.indexOf(l.target)),
        value: t.links.map((l) => l.customers),
        customdata: t.links.map((l) => money(l.revenue)),
        color: t.links.map((l) => (l.source === l.target ? "rgba(160,170,190,0.35)" : "rgba(230,85,13,0.45)")),
        hovertemplate: "%{source.label} → %{target.label}<br>%{value} customers, %{customdata} revenue<extra></extra>",
      },
    }], { margin: { t: 10, r: 10, b: 10, l: 10 } }, PLOT_CONFIG);
  }

  // ------------------------------------------------------------------------------------------- quality
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

  // ------------------------------------------------------------------------------------------- start
  async function loadRun(runId) {
    const app = document.getElementById("app");
    try {
      const [runs, view, health] = await Promise.all([
        api("runs"),
        api(`runs/${encodeURIComponent(runId)}/view`),
        api("health").catch(() => null),
      ]);
      state.servedRun = health && health.store && health.store.run_id;
      render(view, runs.runs);
    } catch (err) {
      if (err.status !== 401) app.replaceChildren(el("p", { class: "error", id: "load-error" }, err.message));
    }
  }

  function start() {
    if (MODE === "report") render(JSON.parse(embedded.textContent), null);
    else loadRun(new URLSearchParams(location.search).get("run") || "latest");
  }

  start();
})();
