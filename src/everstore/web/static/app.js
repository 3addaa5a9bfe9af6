// everstore web viewer: a small single page over the read-only JSON API (/api/...).
// Views are chosen by the location hash (#/, #/ns, #/field, #/log, #/diff); the "as
// of" seq travels in the hash too, so a view of the past can be bookmarked.
"use strict";

const view = document.getElementById("view");
let info = { last_seq: 0 };
let pollTimer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => query.append(key, v));
    else query.append(key, value);
  }
  const response = await fetch(`/api/${path}?${query}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function when(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const d = new Date(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// A value as the API gives it: its repr, or {erased: digest} for a value that
// `everstore erase` removed, shown as a marker (the digest in its tooltip).
function valueNode(value) {
  if (value !== null && typeof value === "object" && "erased" in value) {
    return el("span", { class: "erased", title: `erased; the log keeps its digest ${value.erased}` }, "erased");
  }
  return value;
}

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function go(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => query.append(key, v));
    else query.append(key, value);
  }
  const seq = route().params.get("seq");
  if (seq !== null && !query.has("seq") && !("seq" in (params || {}))) query.set("seq", seq);
  const text = query.toString();
  location.hash = `#${path}${text ? "?" + text : ""}`;
}

function nsLink(parts, seq) {
  const query = new URLSearchParams();
  parts.forEach((p) => query.append("ns", p));
  if (seq !== null && seq !== undefined) query.set("seq", seq);
  return `#/ns?${query}`;
}

function fieldLink(parts, field, seq) {
  const query = new URLSearchParams();
  parts.forEach((p) => query.append("ns", p));
  query.set("field", field);
  if (seq !== null && seq !== undefined) query.set("seq", seq);
  return `#/field?${query}`;
}

function table(headers, body, id) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), body);
}

// -- the "as of" bar ----------------------------------------------------------------

const slider = document.getElementById("asof-slider");
const seqInput = document.getElementById("asof-seq");
const label = document.getElementById("asof-label");

function currentSeq() {
  const seq = route().params.get("seq");
  return seq === null || seq === "" ? null : Number(seq);
}

function setSeq(seq) {
  const { path, params } = route();
  if (path === "/log" || path === "/diff") params.delete("seq");
  if (seq === null || seq >= info.last_seq) params.delete("seq");
  else params.set("seq", String(seq));
  const text = params.toString();
  location.hash = `#${path === "/log" || path === "/diff" ? "/" : path}${text ? "?" + text : ""}`;
}

function syncAsOf() {
  const seq = currentSeq();
  slider.max = String(info.last_seq);
  slider.value = String(seq === null ? info.last_seq : seq);
  seqInput.value = seq === null ? "" : String(seq);
  seqInput.placeholder = `now (${info.last_seq})`;
  label.textContent = seq === null ? "" : `viewing the past: seq ${seq}`;
}

slider.addEventListener("input", () => { seqInput.value = slider.value; });
slider.addEventListener("change", () => setSeq(Number(slider.value)));
document.getElementById("asof-go").addEventListener("click", () => {
  setSeq(seqInput.value === "" ? null : Number(seqInput.value));
});
seqInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter") setSeq(seqInput.value === "" ? null : Number(seqInput.value));
});
document.getElementById("asof-now").addEventListener("click", () => setSeq(null));
document.getElementById("asof-time-go").addEventListener("click", async () => {
  const text = document.getElementById("asof-time").value;
  if (!text) return;
  const found = await api("seq_at", { time: new Date(text).getTime() / 1000 });
  setSeq(found.seq);
});

// -- views --------------------------------------------------------------------------

async function showNamespaces(params) {
  const seq = currentSeq();
  const q = params.get("q") || "";
  const search = el("input", { type: "search", id: "ns-search", placeholder: "search namespaces", value: q });
  const list = el("tbody", {});
  const more = el("button", { id: "ns-more", type: "button", hidden: "" }, "More");
  const count = el("span", { class: "muted", id: "ns-count" });
  let after = "";
  async function load(reset) {
    if (reset) { list.replaceChildren(); after = ""; }
    const page = await api("namespaces", { q: search.value, after, seq });
    const at = seq === null ? "" : ` at seq ${seq}`;
    count.textContent = page.total === null ? `sorted by name${at}` : `searching ${page.total} namespaces${at}`;
    for (const item of page.items) {
      list.append(el("tr", {}, el("td", {}, el("a", { href: nsLink(item.parts, seq), class: "ns-link" }, item.name))));
    }
    after = page.next;
    more.hidden = page.next === null;
  }
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      history.replaceState(null, "", `#/?${new URLSearchParams(Object.assign(
        search.value ? { q: search.value } : {}, seq === null ? {} : { seq }))}`);
      load(true);
    }, 150);
  });
  more.addEventListener("click", () => load(false));
  view.replaceChildren(
    el("h2", {}, "Namespaces"),
    el("div", { class: "controls" }, search, count),
    el("table", { id: "ns-list" }, el("thead", {}, el("tr", {}, el("th", {}, "namespace"))), list),
    el("div", { class: "pager" }, more));
  await load(true);
  search.focus();
}

async function showNamespace(params) {
  const seq = currentSeq();
  const parts = params.getAll("ns");
  const body = el("tbody", {});
  const more = el("button", { id: "fields-more", type: "button", hidden: "" }, "More");
  let offset = 0;
  const heading = el("h2", {}, el("span", { class: "crumb" }, "namespace "), parts.join("/"));
  const note = el("p", { class: "muted", id: "fields-note" });
  async function load() {
    const page = await api("namespace", { ns: parts, seq, offset });
    note.textContent = `${page.total} fields` + (seq === null ? ", current values" : `, as they were at seq ${seq}`);
    for (const f of page.fields) {
      body.append(el("tr", {},
        el("td", {}, el("a", { href: fieldLink(parts, f.name, seq), class: "field-link" }, f.name)),
        el("td", { class: "value" }, valueNode(f.value)),
        el("td", { class: "num" }, f.versions),
        el("td", { class: "num" }, f.seq),
        el("td", {}, when(f.time)),
        el("td", { class: "ctx" }, f.context)));
    }
    offset += page.fields.length;
    more.hidden = offset >= page.total;
  }
  more.addEventListener("click", load);
  const diffLink = el("a", { href: `#/diff?${new URLSearchParams(parts.map((p) => ["ns", p]))}`, id: "ns-diff" }, "diff this namespace");
  view.replaceChildren(heading, note,
    table(["field", "value", "versions", "last seq", "last written", "written by"], body, "fields"),
    el("div", { class: "pager" }, more, diffLink));
  await load();
}

function plot(points, byVersion) {
  const width = 720, height = 200, pad = 40;
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("class", "plot");
  svg.setAttribute("id", "plot");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(svgNs, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  // x is the time of each write, or (byVersion) its rank among the plotted writes
  const xOf = (p, i) => (byVersion ? i : p.time);
  const xs = points.map(xOf), ys = points.map((p) => p.value);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => pad + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - 2 * pad);
  const sy = (y) => height - pad / 2 - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0)) * (height - pad);
  add("line", { x1: pad, y1: height - pad / 2, x2: width - pad, y2: height - pad / 2 });
  add("line", { x1: pad, y1: pad / 2, x2: pad, y2: height - pad / 2 });
  add("text", { x: 2, y: pad / 2 + 4 }, String(y1));
  add("text", { x: 2, y: height - pad / 2 }, String(y0));
  const first = points[0], last = points[points.length - 1];
  add("text", { x: pad, y: height - 4 }, byVersion ? `seq ${first.seq}` : when(first.time));
  add("text", { x: width - pad, y: height - 4, "text-anchor": "end" },
    byVersion ? `seq ${last.seq}` : when(last.time));
  // a step line: a value holds until the next write
  const path = [];
  points.forEach((p, i) => {
    if (i > 0) path.push(`${sx(xOf(p, i))},${sy(points[i - 1].value)}`);
    path.push(`${sx(xOf(p, i))},${sy(p.value)}`);
  });
  add("polyline", { points: path.join(" ") });
  if (points.length <= 60) {
    points.forEach((p, i) => {
      const dot = add("circle", { cx: sx(xOf(p, i)), cy: sy(p.value), r: 2.5 });
      const tip = document.createElementNS(svgNs, "title");
      tip.textContent = `seq ${p.seq}: ${p.value}`;
      dot.append(tip);
    });
  }
  return svg;
}

async function showField(params) {
  const seq = currentSeq();
  const parts = params.getAll("ns");
  const field = params.get("field");
  const body = el("tbody", {});
  const more = el("button", { id: "history-more", type: "button", hidden: "" }, "Older");
  const note = el("p", { class: "muted", id: "history-note" });
  const plotBox = el("div", { id: "plot-box" });
  let offset = 0;
  async function load() {
    const page = await api("history", { ns: parts, field, seq, offset });
    note.textContent = `${page.total} versions, newest first` + (seq === null ? "" : ` (up to seq ${seq})`);
    if (offset === 0 && page.points.length > 0) {
      const axis = el("select", { id: "plot-axis" },
        el("option", { value: "time" }, "x: time"), el("option", { value: "version" }, "x: version"));
      const draw = () => plotBox.replaceChildren(plot(page.points, axis.value === "version"), axis);
      axis.addEventListener("change", draw);
      draw();
    }
    for (const row of page.rows) {
      body.append(el("tr", { class: row.deleted ? "deleted" : null },
        el("td", { class: "num" }, row.seq),
        el("td", {}, when(row.time)),
        el("td", { class: "value" }, row.deleted ? "(deleted)" : valueNode(row.value)),
        el("td", { class: "ctx" }, row.context)));
    }
    offset += page.rows.length;
    more.hidden = offset >= page.total;
  }
  more.addEventListener("click", load);
  view.replaceChildren(
    el("h2", {}, el("span", { class: "crumb" }, "field "),
      el("a", { href: nsLink(parts, seq), id: "back-ns" }, parts.join("/")), ".", field),
    note, plotBox, table(["seq", "time", "value", "written by"], body, "history"),
    el("div", { class: "pager" }, more));
  await load();
}

function logRow(fact, fresh) {
  return el("tr", { class: fresh ? "fresh" : null, "data-seq": fact.seq },
    el("td", { class: "num" }, fact.seq),
    el("td", {}, when(fact.time)),
    el("td", {}, el("a", { href: nsLink(fact.namespace, null) }, fact.namespace.join("/"))),
    el("td", {}, el("a", { href: fieldLink(fact.namespace, fact.field, null) }, fact.field)),
    el("td", { class: "value" }, fact.deleted ? "(deleted)" : valueNode(fact.value)),
    el("td", { class: "ctx" }, fact.context));
}

async function showLog() {
  const body = el("tbody", {});
  const more = el("button", { id: "log-more", type: "button", hidden: "" }, "Older");
  const status = el("span", { class: "live", id: "log-status" }, "live: new facts appear on top");
  view.replaceChildren(el("h2", {}, "Log ", status),
    table(["seq", "time", "namespace", "field", "value", "written by"], body, "log"),
    el("div", { class: "pager" }, more));
  const first = await api("log", {});
  first.facts.forEach((f) => body.append(logRow(f, false)));
  let newest = first.facts.length ? first.facts[0].seq : first.last_seq;
  let oldest = first.next;
  more.hidden = oldest === null;
  more.addEventListener("click", async () => {
    const page = await api("log", { before: oldest });
    page.facts.forEach((f) => body.append(logRow(f, false)));
    oldest = page.next;
    more.hidden = oldest === null;
  });
  const mine = pollTimer = setInterval(async () => {
    if (pollTimer !== mine) return;
    try {
      const page = await api("log", { after: newest, limit: 200 });
      if (pollTimer !== mine) return;
      for (const f of page.facts) {
        body.prepend(logRow(f, true));
        newest = f.seq;
      }
      if (page.last_seq > info.last_seq) { info.last_seq = page.last_seq; syncAsOf(); }
      status.textContent = `live: up to seq ${newest}`;
    } catch (error) {
      status.textContent = `live: ${error.message}`;
    }
  }, 1000);
}

async function showDiff(params) {
  const parts = params.getAll("ns");
  const from = el("input", { type: "number", id: "diff-from", min: "0", value: params.get("from") || "0" });
  const to = el("input", { type: "number", id: "diff-to", min: "0", value: params.get("to") || String(info.last_seq) });
  const prefix = el("input", { type: "text", id: "diff-ns", placeholder: "namespace prefix (a/b), empty: all", value: parts.join("/") });
  const run = el("button", { type: "button", id: "diff-go" }, "Compare");
  const body = el("tbody", {});
  const more = el("button", { id: "diff-more", type: "button", hidden: "" }, "More");
  const note = el("p", { class: "muted", id: "diff-note" });
  run.addEventListener("click", () => go("/diff", {
    from: from.value, to: to.value, ns: prefix.value.split("/").filter((p) => p), seq: null,
  }));
  view.replaceChildren(el("h2", {}, "Diff between two moments"),
    el("div", { class: "controls" }, "from seq", from, "to seq", to, prefix, run),
    note, table(["namespace", "field", "change", "before", "after"], body, "diff"),
    el("div", { class: "pager" }, more));
  if (!params.has("from")) return;
  const shown = new Set();
  let cursor = null;
  async function load() {
    const page = await api("diff", { from: from.value, to: to.value, ns: parts, cursor });
    for (const c of page.changes) {
      const key = JSON.stringify([c.namespace, c.field]);
      if (shown.has(key)) continue;
      shown.add(key);
      body.append(el("tr", {},
        el("td", {}, el("a", { href: nsLink(c.namespace, null) }, c.namespace.join("/"))),
        el("td", {}, el("a", { href: fieldLink(c.namespace, c.field, null) }, c.field)),
        el("td", { class: `kind-${c.kind}` }, c.kind),
        el("td", { class: "value" }, valueNode(c.old)),
        el("td", { class: "value" }, valueNode(c.new))));
    }
    note.textContent = `${shown.size} differences between seq ${page.from} and seq ${page.to}` +
      (page.namespace.length ? ` under ${page.namespace.join("/")}` : "") +
      (page.cursor === null ? "" : ` (read up to seq ${page.cursor}; more below)`);
    cursor = page.cursor;
    more.hidden = cursor === null;
  }
  more.addEventListener("click", load);
  await load();
}

async function render() {
  clearInterval(pollTimer);
  pollTimer = null;
  const { path, params } = route();
  for (const [id, p] of [["nav-namespaces", "/"], ["nav-log", "/log"], ["nav-diff", "/diff"]]) {
    document.getElementById(id).classList.toggle("active", path === p);
  }
  syncAsOf();
  try {
    if (path === "/ns") await showNamespace(params);
    else if (path === "/field") await showField(params);
    else if (path === "/log") await showLog();
    else if (path === "/diff") await showDiff(params);
    else await showNamespaces(params);
    view.setAttribute("data-ready", path);
  } catch (error) {
    view.replaceChildren(el("p", { class: "error", id: "error" }, error.message));
  }
}

async function start() {
  info = await api("info");
  document.getElementById("store-name").textContent = info.store;
  window.addEventListener("hashchange", render);
  await render();
}

start();
