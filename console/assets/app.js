// slotreg's web console: polls the JSON API under /ui/api/ and updates
// the page in place. Plain JS, no framework; every value from the cluster
// goes into the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1000;
const SEARCH_REFRESH_MS = 3000;
const api = (path) => new URL("api/" + path, document.baseURI).toString();
const $ = (sel) => document.querySelector(sel);

let token = "";
let selectedSlot = -1;
let lastSearch = null; // {prefix, limit}
let colors = new Map(); // data node id -> colour
let dataNodes = [];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

async function getJSON(path) {
  const r = await fetch(api(path), { cache: "no-store" });
  const body = await r.json().catch(() => ({ error: "not JSON (status " + r.status + ")" }));
  if (!r.ok) throw new Error(body.error || "status " + r.status);
  return body;
}

// setRows replaces tbody's rows: the tables are small, and a fresh row
// per poll keeps the code simple.
function setRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function fmtMs(ms) {
  if (ms === undefined || ms === null) return "–";
  if (ms < 1000) return ms + " ms";
  return (ms / 1000).toFixed(1) + " s";
}

function fmtBytes(n) {
  if (n === undefined || n === null) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
}

function colorOf(id) {
  if (!id) return "";
  return colors.get(id) || "#9ca3af";
}

function assignColors(ids) {
  colors = new Map();
  ids.forEach((id, i) => {
    const hue = Math.round((i * 137.508 + 200) % 360);
    colors.set(id, `hsl(${hue}, 62%, 62%)`);
  });
}

// --- overview: header, nodes, grid ---

function renderOverview(o) {
  $("#meta-leader").textContent = o.metaLeader || "none";
  $("#table-epoch").textContent = o.tableEpoch;
  $("#updated").textContent = new Date(o.at).toLocaleTimeString();
  const problems = [o.metaError, o.tableError].filter(Boolean);
  const banner = $("#banner");
  banner.hidden = problems.length === 0;
  banner.textContent = problems.join("; ");

  const data = o.nodes.filter((n) => n.kind === "data").map((n) => n.id);
  if (data.join(",") !== dataNodes.join(",")) {
    dataNodes = data;
    assignColors(data);
    renderNodeChoices();
  }

  setRows($("#nodes tbody"), o.nodes.map((n) => {
    const health = n.healthy ? el("span", { class: "good" }, "ok") : el("span", { class: "bad", title: n.error || "" }, "not answering: " + (n.error || "?"));
    const place = [n.datacenter, n.zone].filter(Boolean).join(" / ") || "–";
    const idCell = el("td", { class: "id" }, n.id);
    return el("tr", { "data-node": n.id, "data-kind": n.kind, "data-healthy": n.healthy ? "1" : "0", "data-role": n.role },
      el("td", {}, n.kind), idCell, el("td", {}, n.addr), el("td", { class: "role" }, n.role),
      el("td", { class: "health" }, health), el("td", { class: "num lease" }, n.lastSeenMs === undefined ? "–" : fmtMs(n.lastSeenMs)),
      el("td", {}, place), el("td", { class: "num" }, n.leads ?? "–"), el("td", { class: "num" }, n.follows ?? "–"),
      el("td", {}, n.kind === "data" ? (n.draining ? "yes" : "no") : "–"));
  }));

  renderLegend(o);
  renderGrid(o.slots);
}

function renderLegend(o) {
  const counts = new Map();
  for (const s of o.slots) counts.set(s.leader, (counts.get(s.leader) || 0) + 1);
  $("#legend").replaceChildren(...dataNodes.map((id) => {
    const sw = el("span", { class: "swatch" });
    sw.style.background = colorOf(id);
    return el("span", { "data-legend": id }, sw, `${id} (${counts.get(id) || 0})`);
  }));
}

let cells = [];
let slotsNow = [];
let movesNow = new Map(); // slot -> move

function ensureGrid() {
  if (cells.length) return;
  const grid = $("#grid");
  for (let i = 0; i < 256; i++) {
    const c = el("div", { class: "cell", "data-slot": String(i), "data-leader": "", "data-moving": "0", role: "gridcell" }, String(i));
    c.append(el("span", { class: "bar" }));
    c.addEventListener("click", () => selectSlot(i));
    grid.append(c);
    cells.push(c);
  }
}

function renderGrid(slots) {
  ensureGrid();
  slotsNow = slots;
  for (let i = 0; i < 256; i++) {
    const s = slots[i];
    const c = cells[i];
    const leader = s ? s.leader : "";
    const target = s ? (s.target || "") : "";
    c.setAttribute("data-leader", leader);
    c.setAttribute("data-target", target);
    c.setAttribute("data-moving", target ? "1" : "0");
    c.style.background = leader ? colorOf(leader) : "";
    const m = movesNow.get(i);
    const bar = c.querySelector(".bar");
    let title = `slot ${i}: ` + (leader ? `led by ${leader}` : "no leader");
    if (s && s.followers.length) title += `, followed by ${s.followers.join(", ")}`;
    if (target) {
      const p = m && m.progress !== undefined ? m.progress : null;
      c.setAttribute("data-progress", p === null ? "" : p.toFixed(3));
      bar.style.width = p === null ? "0" : Math.round(p * 100) + "%";
      title += `; moving to ${target}` + (p === null ? "" : ` (${Math.round(p * 100)}%)`);
    } else {
      c.removeAttribute("data-progress");
      bar.style.width = "0";
    }
    c.title = title;
    c.classList.toggle("selected", i === selectedSlot);
  }
  if (selectedSlot >= 0) renderSlotDetail();
}

function selectSlot(i) {
  selectedSlot = i;
  $("#move-slot").value = i;
  cells.forEach((c, j) => c.classList.toggle("selected", j === i));
  renderSlotDetail();
}

function renderSlotDetail() {
  const s = slotsNow[selectedSlot];
  const d = $("#slot-detail");
  d.hidden = false;
  if (!s) { d.textContent = `slot ${selectedSlot}: no table`; return; }
  const m = movesNow.get(selectedSlot);
  d.replaceChildren(
    el("div", {}, el("b", {}, `slot ${s.slot}`), ` leader ${s.leader || "none"} (leader epoch ${s.leaderEpoch})`),
    el("div", {}, "followers: " + (s.followers.join(", ") || "none")),
    s.target ? el("div", {}, `moving to ${s.target}` + (m && m.progress !== undefined ? `: ${Math.round(m.progress * 100)}%` : "")) : null);
}

// --- moves ---

function renderMoves(mv) {
  movesNow = new Map(mv.moves.map((m) => [m.slot, m]));
  setRows($("#moves tbody"), mv.moves.map((m) => {
    let prog = m.progress === undefined ? "?" : Math.round(m.progress * 100) + "%";
    if (m.leaderSeq !== undefined) prog += ` (${m.targetSeq}/${m.leaderSeq})`;
    return el("tr", { "data-move": String(m.slot) }, el("td", {}, m.slot), el("td", {}, m.from), el("td", {}, m.to),
      el("td", { title: m.note || "" }, prog, m.note ? el("span", { class: "muted" }, " " + m.note) : null));
  }));
  $("#no-moves").hidden = mv.moves.length > 0;
}

// --- stats ---

function renderStats(st) {
  setRows($("#data-stats tbody"), st.data.map((d) => el("tr", { "data-node": d.id },
    el("td", {}, d.id),
    ...(d.error ? [el("td", { colSpan: 6 }, "–"), el("td", { class: "bad" }, "not answering: " + d.error)] : [
      el("td", { class: "num" }, d.leads), el("td", { class: "num" }, d.follows), el("td", { class: "num pubs" }, d.publishers),
      el("td", { class: "num" }, d.datums), el("td", { class: "num" }, d.unready),
      el("td", { class: "num" }, d.memory ? fmtBytes(d.memory.used_memory) : "–"), el("td", { class: "good" }, "ok")]))));
  setRows($("#session-stats tbody"), st.sessions.map((s) => {
    const c = s.counters || {};
    return el("tr", { "data-node": s.id },
      el("td", {}, s.id),
      ...(s.error ? [el("td", { colSpan: 7 }, "–"), el("td", { class: "bad" }, "not answering: " + s.error)] : [
        el("td", { class: "num" }, c.connected_clients ?? "–"), el("td", { class: "num" }, c.session_conn_publishers ?? "–"),
        el("td", { class: "num" }, c.session_subscribed_topics ?? "–"), el("td", { class: "num" }, c.session_subscribers ?? "–"),
        el("td", { class: "num" }, c.session_prefix_watches ?? "–"), el("td", { class: "num" }, c.total_commands_processed ?? "–"),
        el("td", { class: "num" }, c.total_pushes ?? "–"), el("td", { class: c.ready ? "good" : "bad" }, c.ready ? "ok" : "not ready")]));
  }));
}

// --- search ---

async function runSearch() {
  if (!lastSearch) return;
  const q = new URLSearchParams({ prefix: lastSearch.prefix, limit: String(lastSearch.limit) });
  try {
    renderSearch(await getJSON("search?" + q));
  } catch (e) {
    $("#search-info").textContent = "search failed: " + e.message;
    $("#search-info").className = "bad";
  }
}

function renderSearch(r) {
  const info = $("#search-info");
  let text = `${r.items.length} id${r.items.length === 1 ? "" : "s"} with prefix "${r.prefix}"`;
  if (r.truncated) text += ` (more exist: showing the first ${r.limit})`;
  if (r.unready) text += `; ${r.unready} slot(s) still reconciling`;
  if (r.errors && r.errors.length) text += "; not answering: " + r.errors.map((e) => e.error).join("; ");
  info.textContent = text;
  info.className = r.errors && r.errors.length ? "bad" : "muted";
  setRows($("#results tbody"), r.items.map((it) => {
    const sample = el("ul", { class: "sample" }, ...it.sample.map((p) =>
      el("li", {}, `${p.registerId} = ${p.data}${p.dataTruncated ? "…" : ""}`,
        el("span", { class: "muted" }, `  ${[p.datacenter, p.zone].filter(Boolean).join("/")}`))));
    if (it.publishers > it.sample.length) sample.append(el("li", { class: "muted" }, `… and ${it.publishers - it.sample.length} more`));
    return el("tr", { "data-id": it.dataInfoId },
      el("td", { class: "id" }, it.dataInfoId), el("td", { class: "num" }, it.slot), el("td", {}, it.leader || "–"),
      el("td", { class: "num pubs" }, it.publishers), el("td", { class: "num subs" }, it.subscribers), el("td", {}, sample));
  }));
  const w = Object.entries(r.watches || {});
  $("#watches").replaceChildren(...(w.length ? [el("h3", {}, "Path watches (PSUBSCRIBE)"),
    el("ul", {}, ...w.sort().map(([p, n]) => el("li", { "data-watch": p }, `${p}* — ${n} watcher${n === 1 ? "" : "s"}`)))] : []));
}

// --- config and locks ---

function renderConfig(cf) {
  $("#config-info").textContent = cf.error ? "config unavailable: " + cf.error : (cf.keys.length ? "" : "no keys");
  setRows($("#config tbody"), cf.keys.map((k) => {
    const b = el("button", { type: "button" }, "history");
    b.addEventListener("click", () => showHistory(k.key));
    return el("tr", { "data-key": k.key, "data-deleted": k.deleted ? "1" : "0" },
      el("td", { class: "key" }, k.key + (k.deleted ? " (deleted)" : "")), el("td", { class: "num" }, k.version),
      el("td", { class: "num" }, k.size ?? 0), el("td", {}, b));
  }));
}

async function showHistory(key) {
  const h = $("#history");
  h.hidden = false;
  h.textContent = "loading history of " + key + "…";
  try {
    const r = await getJSON("config/history?key=" + encodeURIComponent(key));
    const t = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "version"), el("th", {}, "value"))),
      el("tbody", {}, ...r.versions.slice().reverse().map((v) => el("tr", { "data-version": String(v.version) },
        el("td", { class: "num" }, v.version), el("td", {}, v.deleted ? "(deleted)" : el("code", {}, v.value))))));
    h.replaceChildren(el("b", {}, `history of ${r.key}`), t);
  } catch (e) {
    h.textContent = "history of " + key + " failed: " + e.message;
  }
}

function renderLocks(lk) {
  $("#locks-info").textContent = lk.error ? "locks unavailable: " + lk.error : (lk.locks.length ? (lk.truncated ? "more locks exist" : "") : "no locks held");
  setRows($("#locks tbody"), lk.locks.map((l) => el("tr", { "data-lock": l.name },
    el("td", { class: "name" }, l.name), el("td", { class: "owner" }, l.owner), el("td", { class: "num token" }, l.token),
    el("td", { class: "num" }, fmtMs(l.ttlMs)), el("td", { class: "num" }, l.waiters),
    el("td", {}, l.session ? `${l.session} ${l.conn || ""}` : "–"))));
}

// --- actions ---

function renderNodeChoices() {
  for (const sel of [$("#move-to"), $("#drain-node")]) {
    const cur = sel.value;
    sel.replaceChildren(...dataNodes.map((id) => el("option", { value: id }, id)));
    if (dataNodes.includes(cur)) sel.value = cur;
  }
}

async function act(path, body) {
  const out = $("#action-result");
  out.hidden = false;
  out.className = "result";
  out.textContent = `${path}…`;
  try {
    const r = await fetch(api(path), {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
      body: JSON.stringify(body),
    });
    const res = await r.json().catch(() => ({ error: "status " + r.status }));
    if (!r.ok) throw new Error(res.error || "status " + r.status);
    out.textContent = `${path}: done\n` + JSON.stringify(res, null, 2);
    tick();
  } catch (e) {
    out.className = "result bad";
    out.textContent = `${path} refused: ${e.message}`;
  }
}

function wireForms() {
  $("#token").addEventListener("input", (e) => { token = e.target.value; });
  $("#auth-form").addEventListener("submit", (e) => e.preventDefault());
  $("#search").addEventListener("submit", (e) => {
    e.preventDefault();
    lastSearch = { prefix: $("#prefix").value, limit: parseInt($("#limit").value, 10) || 50 };
    runSearch();
  });
  $("#move-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act("move", { slot: parseInt($("#move-slot").value, 10), to: $("#move-to").value });
  });
  $("#drain-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act("drain", { node: $("#drain-node").value });
  });
  $("#undrain-btn").addEventListener("click", () => act("undrain", { node: $("#drain-node").value }));
  $("#rebalance-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act("rebalance", { maxMoves: parseInt($("#rebalance-max").value, 10) || 0, dryRun: $("#rebalance-dry").checked });
  });
}

// --- polling ---

let timer = null;
let searchTimer = null;

function setStatus(ok, msg) {
  const s = $("#status");
  s.setAttribute("data-state", ok ? "live" : "error");
  s.textContent = ok ? "live" : "error: " + msg;
}

async function tick() {
  clearTimeout(timer);
  try {
    const [o, mv, st, cf, lk] = await Promise.all([
      getJSON("overview"), getJSON("moves"), getJSON("stats"), getJSON("config"), getJSON("locks")]);
    movesNow = new Map(mv.moves.map((m) => [m.slot, m]));
    renderOverview(o);
    renderMoves(mv);
    renderStats(st);
    renderConfig(cf);
    renderLocks(lk);
    setStatus(true);
  } catch (e) {
    setStatus(false, e.message);
  }
  timer = setTimeout(tick, POLL_MS);
}

function searchLoop() {
  runSearch().finally(() => { searchTimer = setTimeout(searchLoop, SEARCH_REFRESH_MS); });
}

wireForms();
ensureGrid();
tick();
searchTimer = setTimeout(searchLoop, SEARCH_REFRESH_MS);
