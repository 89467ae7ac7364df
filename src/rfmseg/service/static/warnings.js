/* rfmseg explorer and report: the early-warnings panel.
 *
 * Draws whatever rfmseg.runs.warnings.warnings returns (GET /warnings in the explorer, embedded in a report's
 * view): one block per warning with its title, its rule (text) and parameters, the runs it compared, its count,
 * a paged table of its customers (the columns are the keys of their records, customer_id first) and a CSV of
 * all of them built in the page. Nothing here knows a warning id or a customer field: a new warning or field
 * shows as it comes. explorer.js calls rfmsegWarnings.panel(data, ctx) with its helpers (the element builder,
 * the rounding, the run's words, the customer search).
 */
(function () {
  "use strict";

  const PAGE = 50;

  // a CSV field: quoted when it holds a quote, a comma or a line break (quotes doubled), as RFC 4180
  function csvField(v) {
    if (v === null || v === undefined) return "";
    const s = Array.isArray(v) ? v.map((x) => (x === null ? "" : String(x))).join(";")
      : typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function toCsv(columns, rows) {
    const lines = [columns.map(csvField).join(",")];
    for (const r of rows) lines.push(columns.map((c) => csvField(r[c])).join(","));
    return lines.join("\r\n") + "\r\n";
  }

  // the keys of the customers' records in order of appearance, customer_id first
  function columnsOf(rows) {
    const seen = new Set(rows.length ? ["customer_id"] : []);
    for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
    return [...seen];
  }

  function cell(ctx, key, v) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.map((x) => cell(ctx, key, x)).join(" → ");
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "object") return JSON.stringify(v);
    if (typeof v !== "number") return String(v);
    if (/monetary|revenue|value|spend|aov/i.test(key)) return ctx.value(v);
    if (/^p_|prob|share|rate/i.test(key)) return ctx.num(v, 2);
    return Number.isInteger(v) ? ctx.int(v) : ctx.num(v, 1);
  }

  function heading(ctx, key) { // "frequency_from" -> "sessions from" in a SaaS run's words
    const u = ctx.W();
    const say = { customers: u.entity, customer: ctx.one(u.entity), orders: u.frequency, frequency: u.frequency,
      monetary: u.monetary, revenue: u.total || "total" };
    return key.split("_").map((w) => say[w] || w).join(" ");
  }

  function param(v) {
    if (v === null || v === undefined) return "none";
    if (Array.isArray(v)) return v.join(", ");
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }

  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    const a = Object.assign(document.createElement("a"), { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function block(w, data, ctx) {
    const { el } = ctx;
    const u = ctx.W();
    const rows = w.customers || [];
    const columns = columnsOf(rows);
    const count = Number(w.count ?? rows.length);
    const params = Object.entries(w.params || {});
    const compared = (w.compared || []).map((c) => (c.as_of ? `${c.run_id} (as of ${c.as_of})` : c.run_id));
    const body = el("tbody", {});
    const pager = el("div", { class: "pager" });
    let page = 0;
    const show = () => {
      const last = Math.max(0, Math.ceil(rows.length / PAGE) - 1);
      page = Math.min(Math.max(page, 0), last);
      const start = page * PAGE;
      body.replaceChildren(...rows.slice(start, start + PAGE).map((r) => el("tr", { "data-customer": r.customer_id },
        columns.map((c, i) => el("td", {}, i === 0 && c === "customer_id"
          ? el("button", { type: "button", class: "linkish", title: `find this ${ctx.one(u.entity)}`,
            onclick: () => ctx.find(String(r.customer_id)) }, String(r.customer_id))
          : cell(ctx, c, r[c]))))));
      pager.replaceChildren(
        el("button", { type: "button", class: "prev", disabled: page === 0, onclick: () => { page--; show(); } },
          "Previous"),
        el("span", { class: "page-info" }, ` ${ctx.int(start + 1)}–${ctx.int(Math.min(start + PAGE, rows.length))} ` +
          `of ${ctx.int(rows.length)} `),
        el("button", { type: "button", class: "next", disabled: page >= last, onclick: () => { page++; show(); } },
          "Next"));
    };
    const capped = rows.length < count;
    const table = rows.length ? el("table", { class: "data" },
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { "data-key": c }, heading(ctx, c))))), body) : null;
    if (table) show();
    return el("div", { class: "warning", "data-warning": w.id },
      el("h3", {}, el("span", { class: "warning-title" }, w.title || w.id), " ",
        el("span", { class: "warning-count", "data-count": String(count) }, `${ctx.int(count)} ${u.entity}`)),
      w.text ? el("p", { class: "rule" }, w.text) : null,
      params.length ? el("p", { class: "note params" }, "Parameters: ",
        params.map(([k, v], i) => el("span", { "data-param": k }, (i ? " · " : "") + `${heading(ctx, k)} = ${param(v)}`)))
        : null,
      compared.length ? el("p", { class: "note compared" }, `Compared: ${compared.join(" → ")}`) : null,
      rows.length ? el("details", { class: "warning-customers", open: true },
        el("summary", {}, `${ctx.cap(u.entity)} (${ctx.int(count)})`),
        el("div", { class: "toolbar" },
          el("button", { type: "button", class: "warning-csv",
            onclick: () => download(`${data.run_id || "run"}-${w.id}.csv`, toCsv(columns, rows)) },
          capped ? `CSV (${ctx.int(rows.length)})` : "CSV"),
          capped ? el("span", { class: "note capped" }, ` This report holds the first ${ctx.int(rows.length)} of ` +
            `the ${ctx.int(count)} ${u.entity} (and so does its CSV); the explorer (rfmseg serve) lists them all.`)
            : null),
        el("div", { class: "scroll" }, table), rows.length > PAGE ? pager : null) : null);
  }

  function panel(data, ctx) {
    if (!data || !Array.isArray(data.warnings)) return null;
    const { el } = ctx;
    const u = ctx.W();
    const first = !data.previous_run;
    if (data.note) { // a large run's own report leaves the warnings out and says where they are
      return el("section", { class: "panel", id: "warnings-panel", "data-run": data.run_id },
        el("h2", {}, "Early warnings"), el("p", { class: "note", id: "warnings-note" }, data.note));
    }
    return el("section", { class: "panel", id: "warnings-panel", "data-run": data.run_id },
      el("h2", {}, "Early warnings"),
      el("p", { class: "note", id: "warnings-note" }, first
        ? `Nothing to compare yet: run ${data.run_id} is the first of its timeline, and the warnings compare a run ` +
          `with the runs before it.`
        : `Run ${data.run_id} against the runs before it (previous: ${data.previous_run}). Each warning lists the ` +
          `${u.entity} that triggered it with the values that did; click an id to find the ${ctx.one(u.entity)}.`),
      data.warnings.map((w) => block(w, data, ctx)));
  }

  window.rfmsegWarnings = { panel, toCsv };
})();
