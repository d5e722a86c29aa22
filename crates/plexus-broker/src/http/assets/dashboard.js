// The plexus dashboard: tables and charts from /api/*, live traffic from /api/live (SSE).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const MAX_RECORDS = 400;
const MAX_SAMPLES = 300;
const ROW = 22;
const LANE = 260;

const state = {
  sort: "id",
  order: "asc",
  samples: [],
  records: [],
  paused: false,
  notShown: 0,
  lagged: 0,
  filter: "",
  renderQueued: false,
};

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (response.status === 401) askForToken(await response.text());
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

// A broker with a token (--token-file) asks for it once; the page keeps it in a cookie that
// every request to this origin carries, the live feed's included.
function askForToken(why) {
  const form = $("token-form");
  if (!form.hidden) return;
  $("token-why").textContent = why;
  form.hidden = false;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!/^[\x21-\x7e]+$/.test(token) || /[;,]/.test(token)) {
      $("token-why").textContent = "a token is printable ASCII without spaces, commas or semicolons";
      return;
    }
    document.cookie = `plexus_token=${token}; path=/; SameSite=Strict`;
    location.reload();
  });
}

function node(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function shape(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function micros(us) {
  if (us === null || us === undefined) return "–";
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

function since(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function fillTable(id, rows, cells) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(
    ...rows.map((r) => {
      const tr = node("tr");
      for (const [text, cls] of cells(r)) tr.append(node("td", cls ? { class: cls } : {}, String(text)));
      return tr;
    }),
  );
  return body;
}

async function refreshServer() {
  const s = await getJSON("/api/server");
  const t = s.totals;
  $("server").textContent =
    `v${s.version} · pid ${s.pid} · up ${since(s.started_at_ms)} · ${t.connections} connections · ` +
    `${t.names} names · ${t.subscriptions} subscriptions · ${t.pending_calls} pending calls`;
}

async function refreshConnections() {
  const d = await getJSON(`/api/connections?sort=${state.sort}&order=${state.order}&limit=200`);
  $("conn-count").textContent = d.total > d.connections.length ? `${d.total} (first ${d.connections.length})` : `${d.total}`;
  fillTable("connections", d.connections, (c) => [
    [c.id, "num"], [c.client || "–"], [c.dialect], [c.pid ?? c.addr ?? "–", "num"], [c.uid ?? "–", "num"],
    [c.exe ? c.exe.split("/").pop() : "–"], [since(c.connected_since_ms)],
    [bytes(c.bytes_in), "num"], [bytes(c.bytes_out), "num"], [c.frames_in, "num"], [c.frames_out, "num"],
    [bytes(c.queued_bytes), "num"], [c.dropped_events, "num"], [c.pending_calls, "num"], [c.names.join(", ")],
  ]);
  for (const th of $("connections").querySelectorAll("th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === state.sort);
  }
}

async function refreshNames() {
  const d = await getJSON("/api/names?limit=200");
  $("name-count").textContent = `${d.total}`;
  const body = fillTable("names", d.names, (n) => [
    [n.name, "name"], [n.owners.map((o) => `${o.client || "?"}#${o.conn}`).join(", ")], [n.shared ? "group" : "exclusive"],
    [n.calls_served, "num"], [n.errors, "num"], [micros(n.p50_us), "num"], [micros(n.p99_us), "num"],
    [n.methods ? n.methods.join(", ") : "any"],
  ]);
  for (const td of body.querySelectorAll("td.name")) td.addEventListener("click", () => showName(td.textContent));
}

async function showName(name) {
  const n = await getJSON(`/api/names/${encodeURIComponent(name)}`);
  $("name-detail").hidden = false;
  $("detail-title").textContent = `${n.name} — ${n.calls_served} calls, ${n.errors} errors, p50 ${micros(n.p50_us)}, p99 ${micros(n.p99_us)}`;
  const methods = n.contract && typeof n.contract.methods === "object" ? Object.keys(n.contract.methods) : n.methods || [];
  $("detail-methods").textContent = methods.length ? `methods: ${methods.join(", ")}` : "no methods declared: it takes any method";
  $("detail-contract").textContent = n.contract ? JSON.stringify(n.contract, null, 2) : "no contract declared";
}

async function refreshTopics() {
  const d = await getJSON("/api/topics");
  fillTable("topics", d.topics, (t) => [
    [t.topic], [t.subscriptions, "num"], [t.events_per_s.toFixed(1), "num"], [t.published, "num"], [t.delivered, "num"], [t.dropped, "num"],
  ]);
  fillTable("patterns", d.patterns, (p) => [[p.pattern], [p.subscriptions, "num"]]);
}

function refreshTables() {
  Promise.all([refreshServer(), refreshConnections(), refreshNames(), refreshTopics()]).catch((e) => {
    $("server").textContent = `cannot read the API: ${e.message}`;
  });
}

function chart(id, series, format = (v) => `${Math.round(v)}`) {
  const svg = $(id);
  const values = series.flatMap((s) => s.values.filter((v) => v !== null));
  const top = Math.max(1, ...values);
  const n = Math.max(...series.map((s) => s.values.length), 2);
  const x = (i) => (i * 300) / (n - 1);
  const y = (v) => 78 - (v / top) * 72;
  const parts = [shape("text", { x: 2, y: 10 }, format(top))];
  for (const s of series) {
    const points = s.values.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    parts.push(shape("polyline", { points: points.join(" "), class: s.cls, stroke: s.color }));
  }
  svg.replaceChildren(...parts);
}

function drawCharts() {
  const s = state.samples;
  chart("chart-calls", [{ values: s.map((p) => p.calls_per_s), color: "#2357c6" }]);
  chart("chart-errors", [{ values: s.map((p) => p.errors_per_s), color: "#d22d2d" }]);
  chart("chart-latency", [
    { values: s.map((p) => p.p50_us), color: "#2f8a4c" },
    { values: s.map((p) => p.p99_us), color: "#e08a00" },
  ], micros);
  const last = s[s.length - 1];
  if (last) {
    $("now-calls").textContent = `${last.calls_per_s.toFixed(0)} calls/s`;
    $("now-errors").textContent = `${last.errors_per_s.toFixed(1)} errors/s`;
    $("now-latency").textContent = `p50 ${micros(last.p50_us)} · p99 ${micros(last.p99_us)}`;
  }
}

function addSample(sample) {
  state.samples.push(sample);
  if (state.samples.length > MAX_SAMPLES) state.samples.shift();
  drawCharts();
}

// The traffic view: a sequence diagram, one lane per process.
function party(r, side) {
  if (r[side] === "broker") return { key: "broker", label: "broker" };
  const pid = r[`${side}_pid`];
  const client = r[`${side}_client`] || "?";
  return pid !== undefined ? { key: `pid ${pid}`, label: `${client} (pid ${pid})` } : { key: `conn ${r[side]}`, label: `${client} #${r[side]}` };
}

function searchable(r) {
  const called = r.object ? `${r.object}.${r.method}` : undefined;
  return [called, r.topic, r.from_client, r.to_client, r.from_pid, r.to_pid, r.code].filter((v) => v !== undefined).join(" ").toLowerCase();
}

function visibleRecords() {
  const f = state.filter.trim().toLowerCase();
  return f ? state.records.filter((r) => searchable(r).includes(f)) : state.records;
}

function renderSequence() {
  state.renderQueued = false;
  const records = visibleRecords();
  const lanes = new Map();
  const lane = (p) => {
    if (!lanes.has(p.key)) lanes.set(p.key, { x: 150 + lanes.size * LANE, label: p.label });
    return lanes.get(p.key).x;
  };
  const TOPICS = "topics";
  const parts = [];
  const calls = new Map();
  records.forEach((r, i) => {
    const y = 20 + i * ROW;
    const g = shape("g", { class: "entry", "data-kind": r.kind });
    const from = lane(party(r, "from"));
    if (r.kind === "event") {
      const to = lane({ key: TOPICS, label: "topics (events)" });
      g.append(shape("line", { x1: from, y1: y, x2: to, y2: y, class: "event", "marker-end": "url(#head)" }));
      g.append(shape("text", { x: Math.min(from, to) + 6, y: y - 4, class: "seq-label" }, `${r.topic} → ${r.delivered}${r.dropped ? ` (${r.dropped} dropped)` : ""}`));
      g.setAttribute("data-label", r.topic);
    } else {
      const to = lane(party(r, "to"));
      const label = r.object ? `${r.object}.${r.method}` : `call ${r.call_id ?? r.id}`;
      const cls = r.kind === "call" ? "call" : r.kind === "reply" ? "reply" : "error";
      g.append(shape("line", { x1: from, y1: y, x2: to, y2: y, class: cls, "marker-end": "url(#head)" }));
      let text = label;
      if (r.kind === "call") calls.set(r.call_id, { y, x: from });
      else {
        const took = r.elapsed_us !== undefined ? micros(r.elapsed_us) : "";
        text = r.kind === "error" ? `${label} ✗ ${r.code} ${took}` : `${label} ✓ ${took}`;
        const call = calls.get(r.call_id);
        if (call && call.x === to) {
          // The arc bulges away from the other party, so it crosses no arrow.
          const out = from < to ? 1 : -1;
          const bend = to + out * 24;
          g.append(shape("path", { d: `M ${to} ${call.y} C ${bend} ${call.y}, ${bend} ${y}, ${to} ${y}`, class: "arc" }));
          const anchor = out > 0 ? "start" : "end";
          g.append(shape("text", { x: bend + out * 4, y: (call.y + y) / 2 + 4, "text-anchor": anchor, class: "arc-label" }, took));
        }
      }
      g.append(shape("text", { x: Math.min(from, to) + 6, y: y - 4, class: `seq-label ${cls === "error" ? "error" : ""}` }, text));
      g.setAttribute("data-label", label);
    }
    parts.push(g);
  });
  const height = 30 + records.length * ROW;
  const width = Math.max(600, 80 + lanes.size * LANE);
  const lines = [...lanes.values()].map((l) => shape("line", { x1: l.x, y1: 0, x2: l.x, y2: height, class: "lane" }));
  const heads = $("sequence-heads");
  heads.setAttribute("width", width);
  heads.replaceChildren(
    ...[...lanes.values()].map((l) => shape("text", { x: l.x, y: 16, "text-anchor": "middle", class: "lane-head" }, l.label)),
  );
  const marker = shape("marker", { id: "head", markerWidth: 8, markerHeight: 8, refX: 7, refY: 4, orient: "auto" });
  marker.append(shape("path", { d: "M0,0 L8,4 L0,8 z", fill: "#6b7385" }));
  const defs = shape("defs");
  defs.append(marker);
  const svg = $("sequence");
  svg.setAttribute("height", height);
  svg.setAttribute("width", width);
  svg.replaceChildren(defs, ...lines, ...parts);
  const wrap = $("sequence-wrap");
  if (!state.paused) wrap.scrollTop = wrap.scrollHeight;
  showTrafficStatus();
}

function showTrafficStatus() {
  const bits = [`${state.records.length} records kept`];
  if (state.paused) bits.push(`paused, ${state.notShown} not shown`);
  if (state.lagged) bits.push(`this viewer lost ${state.lagged} records (it read too slowly)`);
  $("traffic-status").textContent = bits.join(" · ");
}

function queueRender() {
  if (!state.renderQueued) {
    state.renderQueued = true;
    setTimeout(renderSequence, 250);
  }
}

function onRecord(record) {
  if (state.paused) {
    state.notShown += 1;
    showTrafficStatus();
    return;
  }
  state.records.push(record);
  if (state.records.length > MAX_RECORDS) state.records.splice(0, state.records.length - MAX_RECORDS);
  queueRender();
}

function connectFeed() {
  const feed = new EventSource("/api/live");
  feed.addEventListener("open", () => {
    $("feed-status").textContent = "live feed: connected";
  });
  feed.addEventListener("record", (e) => onRecord(JSON.parse(e.data)));
  feed.addEventListener("tick", (e) => {
    addSample(JSON.parse(e.data));
    refreshTables();
  });
  feed.addEventListener("lagged", (e) => {
    state.lagged += JSON.parse(e.data).missed;
    $("feed-status").textContent = `live feed: lost ${state.lagged} records`;
    $("feed-status").classList.add("lagged");
    showTrafficStatus();
  });
  feed.addEventListener("error", () => {
    $("feed-status").textContent =
      feed.readyState === EventSource.CLOSED ? "live feed: refused (GET /api/live says why)" : "live feed: reconnecting";
  });
}

function wire() {
  for (const th of $("connections").querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      state.order = state.sort === key && state.order === "desc" ? "asc" : "desc";
      state.sort = key;
      refreshConnections();
    });
  }
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    state.notShown = 0;
    $("pause").textContent = state.paused ? "resume" : "pause";
    showTrafficStatus();
  });
  $("filter").addEventListener("input", (e) => {
    state.filter = e.target.value;
    renderSequence();
  });
  $("export").addEventListener("click", () => {
    const blob = new Blob([JSON.stringify(visibleRecords(), null, 2)], { type: "application/json" });
    const link = node("a", { href: URL.createObjectURL(blob), download: "plexus-traffic.json" });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });
}

async function start() {
  wire();
  refreshTables();
  try {
    state.samples = (await getJSON("/api/history")).samples.slice(-MAX_SAMPLES);
    drawCharts();
  } catch (e) {
    $("server").textContent = `cannot read the API: ${e.message}`;
  }
  connectFeed();
}

start();
