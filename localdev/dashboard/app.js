/* Local restore dashboard: polls the status API every 2 s and renders active/recent restores, a stage timeline
   (bars) per restore and the details of the selected restore. Plain DOM, no dependencies; every value from the
   API is inserted as text (never as HTML).
   The stages (pipeline order, labels, the status each stage runs under) come from GET /stages, read once: the page
   holds no list of its own, so a stage added to the service's registry shows up here without a change. Stage and
   running-status colours follow the position in that list; until the list is read (or if it cannot be), stages
   show as their raw values in grey. */
"use strict";

const REFRESH_MS = 2000;
/* Active restores: every page of GET /restores?status=active (the API reads its active index, whatever day they
   were created on); MAX_PAGES only bounds a runaway loop. Recent: one page of finished restores, newest first. */
const ACTIVE_PAGE = 200;
const MAX_PAGES = 500;
const RECENT_LIMIT = 50;
const FINISHED = "succeeded,failed,rejected,cancelled";
/* Lifecycle statuses around the stages: before the first stage runs, and the ends. */
const BEFORE = ["accepted"];
const TERMINAL = new Set(["succeeded", "failed", "rejected", "cancelled"]);
/* i-th stage of GET /stages, i-th distinct running status: the first five are the page's original colours. */
const STAGE_PALETTE = ["#7a5af8", "#f79009", "#fdb022", "#06aed4", "#2e90fa", "#ee46bc", "#16b364", "#ef6820",
  "#6172f3", "#dd2590"];
const STATUS_PALETTE = ["#7a5af8", "#f79009", "#fdb022", "#2e90fa", "#ee46bc", "#16b364", "#ef6820", "#6172f3",
  "#dd2590", "#06aed4"];
const UNKNOWN_COLOUR = "#98a2b3";
const API = (new URLSearchParams(location.search).get("api") || new URL("api", location.href).pathname)
  .replace(/\/$/, "");

let selectedId = null;
let lastItems = [];
let stages = null; /* [{stage, label, status, cancellable, queue_setting}] from GET /stages, once read */
let stagesError = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function parseTime(s) {
  if (!s) return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "-";
  let s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d${pad(h)}h`;
  if (h) return `${h}h${pad(m)}m`;
  if (m) return `${m}m${pad(s)}s`;
  return `${s}s`;
}

/* "2026-11-24 08:15:00" in UTC (the column headers say UTC); "-" when absent or unreadable. */
function fmtUtc(s) {
  const t = parseTime(s);
  return t === null ? "-" : new Date(t).toISOString().slice(0, 19).replace("T", " ");
}

function fmtGap(seconds) {
  return typeof seconds === "number" && seconds > 0 ? fmtDuration(seconds * 1000) : null;
}

function endTime(r, now) {
  return TERMINAL.has(r.status) ? (parseTime(r.updated_at) || now) : now;
}

function elapsed(r, now) {
  const c = parseTime(r.created_at);
  return c === null ? null : endTime(r, now) - c;
}

function nextCheck(r, now) {
  const t = parseTime(r.next_check_at);
  if (t === null || TERMINAL.has(r.status)) return "-";
  return t <= now ? "due" : "in " + fmtDuration(t - now);
}

/* The running statuses, in pipeline order, each once (two stages may run under one status). */
function runningStatuses() {
  return [...new Set((stages || []).map((s) => s.status).filter((s) => typeof s === "string" && s))];
}

function statuses() {
  return [...BEFORE, ...runningStatuses(), ...TERMINAL];
}

function statusColor(status) {
  if (BEFORE.includes(status) || TERMINAL.has(status)) return `var(--${status})`;
  const i = runningStatuses().indexOf(status);
  return i < 0 ? "var(--accepted)" : STATUS_PALETTE[i % STATUS_PALETTE.length];
}

function stageInfo(stage) {
  return (stages || []).find((s) => s.stage === stage) || null;
}

function stageLabel(stage) {
  const info = stageInfo(stage);
  return info && info.label ? info.label : stage;
}

function stageColor(stage) {
  const i = (stages || []).findIndex((s) => s.stage === stage);
  return i < 0 ? UNKNOWN_COLOUR : STAGE_PALETTE[i % STAGE_PALETTE.length];
}

function badge(status) {
  return el("span", { class: "badge status-" + String(status), style: { background: statusColor(status) } },
    status || "?");
}

/* Bars: one per stage in stage_times, positioned on the restore's own span (created → end or now). */
function stageBars(r, now, big) {
  const box = el("div", { class: "bars" + (big ? " big" : ""), "data-restore": r.id });
  const start = parseTime(r.created_at);
  const times = r.stage_times || {};
  const entries = Object.entries(times).filter(([, t]) => t && parseTime(t.started) !== null);
  if (start === null || entries.length === 0) return box;
  const end = Math.max(endTime(r, now), ...entries.map(([, t]) => parseTime(t.finished) || now));
  const span = Math.max(1, end - start);
  for (const [stage, t] of entries) {
    const s = parseTime(t.started);
    const running = !t.finished;
    const f = running ? (TERMINAL.has(r.status) ? end : now) : parseTime(t.finished);
    const left = ((s - start) / span) * 100;
    const width = Math.max(0.5, ((f - s) / span) * 100);
    const title = `${stage}: ${fmtDuration(f - s)}${running ? " (running)" : ""}`;
    box.append(el("div", {
      class: "bar stage-" + stage + (running ? " running" : ""), "data-stage": stage, title,
      style: { left: left.toFixed(2) + "%", width: width.toFixed(2) + "%", background: stageColor(stage) },
    }, big ? title : null));
  }
  return box;
}

function sourceCell(r) {
  const src = r.source_resource || {};
  return el("td", { class: "source", title: src.id || r.backup_instance_id || "" }, src.name || "-");
}

function regionCell(r) {
  const where = r.restore_location ? `${r.region || "-"} · ${r.restore_location}` : (r.region || "-");
  return el("td", { class: "region" }, el("span", { class: "region-chip region-" + String(r.region || "none") },
    where));
}

function startedBy(r) {
  const by = r.started_by || { door: r.source };
  const extra = Object.entries(by).filter(([k]) => k !== "door").map(([k, v]) => `${k}=${v}`).join(" ");
  return [by.door || "-", extra];
}

function reasonCell(r) {
  const why = r.reason || r.error;
  if (!why) return el("td", { class: "reason none" }, "-");
  return el("td", { class: "reason" }, el("b", {}, why.code || "Error"), ": ", why.message || "",
    why.fix ? el("div", { class: "fix" }, "Fix: ", why.fix) : null);
}

/* One restore row; the Recent table (withReason) shows the reason and fix where the Active one shows the next check
   and the Azure job. */
function restoreRow(r, now, withReason) {
  const job = r.azure_job_id ? String(r.azure_job_id).split("/").pop() : "-";
  const [door, by] = startedBy(r);
  const tail = withReason ? [reasonCell(r)] : [el("td", { class: "next" }, nextCheck(r, now)),
    el("td", { class: "job", title: r.azure_job_visible_in || "" }, job)];
  const tr = el("tr", { class: "restore" + (r.id === selectedId ? " selected" : ""), "data-id": r.id,
    "data-status": r.status },
    el("td", { class: "id" }, r.id),
    el("td", { class: "status" }, badge(r.status)),
    el("td", { class: "stage", title: r.stage ? stageLabel(r.stage) : "" }, r.stage || "-"),
    sourceCell(r),
    el("td", { class: "target", title: (r.target || {}).kind || "" }, r.target_name || "-"),
    regionCell(r),
    el("td", { class: "point" }, fmtUtc(r.point_time || (r.recovery_point || {}).time)),
    el("td", { class: "by", title: [by, "created " + fmtUtc(r.created_at) + " UTC"].filter(Boolean).join("; ") },
      door),
    el("td", { class: "elapsed" }, fmtDuration(elapsed(r, now))),
    ...tail,
    el("td", { class: "tl" }, stageBars(r, now, false)));
  tr.addEventListener("click", () => { selectedId = r.id; renderList(lastItems); refreshDetail(); });
  return tr;
}

function renderList(items) {
  const now = Date.now();
  const active = items.filter((r) => !TERMINAL.has(r.status));
  const recent = items.filter((r) => TERMINAL.has(r.status));
  for (const [id, rows] of [["active", active], ["recent", recent]]) {
    document.querySelector(`#${id} tbody`).replaceChildren(...rows.map((r) => restoreRow(r, now, id === "recent")));
    document.getElementById(`${id}-count`).textContent = String(rows.length);
    document.getElementById(`${id}-empty`).hidden = rows.length > 0;
    document.getElementById(id).hidden = rows.length === 0;
  }
  const counts = {};
  for (const r of items) counts[r.status] = (counts[r.status] || 0) + 1;
  const known = statuses(); /* then any status the page was not told about (e.g. without the stage list) */
  const order = [...known, ...Object.keys(counts).filter((s) => !known.includes(s))];
  document.getElementById("summary").replaceChildren(...order.filter((s) => counts[s]).map((s) =>
    el("div", { class: "tile", "data-status": s, style: { borderLeftColor: statusColor(s) } },
      el("b", {}, counts[s]), s)));
}

function renderDetail(r) {
  const now = Date.now();
  const section = document.getElementById("detail");
  section.hidden = false;
  section.dataset.id = r.id;
  document.getElementById("detail-id").textContent = r.id;
  const rp = r.recovery_point || {};
  const target = r.target || {};
  const src = r.source_resource || {};
  const [door, by] = startedBy(r);
  const fields = [
    ["Status", badge(r.status)], ["Stage", r.stage ? stageLabel(r.stage) : "-"],
    ["Source", src.name ? `${src.name} (${src.kind || "?"})` : "-"], ["Target", r.target_name || "-"],
    ["Started by", `${door}${by ? " " + by : ""}`],
    ["Backup instance", r.backup_instance_id || "-"],
    ["Recovery point", `${rp.id || "-"} ${fmtUtc(r.point_time || rp.time)} (${rp.tier || "-"})`],
    ["Target details", [target.kind || "-", ...Object.entries(target).filter(([k]) => k !== "kind")
      .map(([k, v]) => `${k}=${v}`)].join(" ")],
    ["Region", [r.region || "-", r.restore_location].filter(Boolean).join(" · ")],
    ["Azure job", r.azure_job_id || "-"],
  ];
  if (r.azure_job_visible_in) fields.push(["Job visible in", r.azure_job_visible_in]);
  if (r.expected) fields.push(["Expected", expectedText(r.expected)]);
  const gap = fmtGap(r.data_loss_gap_seconds);
  if (gap) fields.push(["Data-loss gap", gap]);
  fields.push(["Created (UTC)", fmtUtc(r.created_at)], ["Elapsed", fmtDuration(elapsed(r, now))],
    ["Deadline (UTC)", fmtUtc(r.deadline)], ["Next check", nextCheck(r, now)]);
  for (const w of r.warnings || []) fields.push(["Warning", `${w.code || ""}: ${w.message || ""}`]);
  document.getElementById("detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k),
    el("dd", {}, v)]));
  const err = document.getElementById("detail-error");
  if (r.error) {
    err.hidden = false;
    err.replaceChildren(el("b", {}, r.error.code || "Error"), ": ", r.error.message || "",
      r.error.fix ? el("div", { class: "fix" }, "Fix: ", r.error.fix) : null);
  } else {
    err.hidden = true;
    err.replaceChildren();
  }
  document.getElementById("detail-bars").replaceWith(Object.assign(stageBars(r, now, true), { id: "detail-bars" }));
  document.getElementById("detail-timeline").replaceChildren(...(r.timeline || []).map((e) =>
    el("li", { "data-status": e.status || "" }, el("time", {}, e.at || ""),
      `${e.status || ""}${e.stage ? " · " + e.stage : ""} — ${e.message || ""}`)));
}

function expectedText(x) {
  const parts = [x.what || "", x.earliest ? `earliest ${fmtUtc(x.earliest)}` : "",
    x.latest ? `latest ${fmtUtc(x.latest)} UTC` : "", x.note || ""];
  return parts.filter(Boolean).join(" · ");
}

async function getJson(path) {
  const resp = await fetch(API + path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

function setConn(state, text) {
  const c = document.getElementById("conn");
  c.dataset.state = state;
  c.textContent = text;
}

/* Every item of a paged list: the continuation token of each page is followed until the API says there is no more. */
async function listAll(query) {
  const items = [];
  let token = null;
  for (let pages = 0; pages < MAX_PAGES; pages++) {
    const page = await getJson("/restores?" + query + (token ? "&continuation=" + encodeURIComponent(token) : ""));
    items.push(...((page && page.items) || []));
    token = page && page.continuation;
    if (!token) break;
  }
  return items;
}

async function refreshList() {
  const active = await listAll("status=active&limit=" + ACTIVE_PAGE);
  const recentPage = await getJson(`/restores?status=${encodeURIComponent(FINISHED)}&limit=${RECENT_LIMIT}`);
  const recent = (recentPage && recentPage.items) || [];
  const finished = new Set(recent.map((r) => r.id)); /* one that ended between the two reads shows as finished */
  lastItems = [...active.filter((r) => !finished.has(r.id)), ...recent];
  if (!selectedId || !lastItems.some((r) => r.id === selectedId)) {
    const first = lastItems.find((r) => !TERMINAL.has(r.status)) || lastItems[0];
    selectedId = first ? first.id : null;
  }
  renderList(lastItems);
}

async function refreshDetail() {
  if (!selectedId) { document.getElementById("detail").hidden = true; return; }
  renderDetail(await getJson("/restores/" + encodeURIComponent(selectedId)));
}

/* GET /stages until it has been read once; a failure leaves the stages raw and is retried on the next refresh. */
async function loadStages() {
  if (stages) return;
  try {
    const body = await getJson("/stages");
    if (!body || !Array.isArray(body.stages)) throw new Error("/stages: no stage list in the answer");
    stages = body.stages.filter((s) => s && typeof s.stage === "string" && s.stage);
    stagesError = null;
    renderLegend();
  } catch (e) {
    stagesError = e.message;
  }
}

function renderLegend() {
  document.getElementById("legend").replaceChildren(...(stages || []).map((s) =>
    el("span", { "data-stage": s.stage }, el("i", { style: { background: stageColor(s.stage) } }),
      stageLabel(s.stage))));
}

/* Drills panel: every page of GET /drills/runs/latest (the last run per drill and backup instance, with the RTO of
   its last TREND_RUNS runs), read on each refresh. A failure shows in the panel only: the restores stay on. */
const DRILL_PAGE = 200;
const TREND_RUNS = 12;
const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function fmtMinutes(seconds) {
  return typeof seconds === "number" ? (seconds / 60).toFixed(1) + "m" : "-";
}

function verdict(last) {
  if (last.passed === true) return el("span", { class: "badge pass" }, "PASS");
  if (last.passed === false) return el("span", { class: "badge fail" }, "FAIL");
  return el("span", { class: "badge" }, last.state || "?");
}

/* One bar per run (oldest first), its height the run's RTO; the dashed line is the RTO target. A bar is red when the
   run failed or took longer than the target. */
function trendChart(item) {
  const W = 120, H = 28;
  const runs = (item.trend || []).filter((r) => typeof r.rto_seconds === "number");
  const target = item.rto_target_seconds;
  const top = Math.max(1, typeof target === "number" ? target : 0, ...runs.map((r) => r.rto_seconds));
  const box = svg("svg", { class: "trend", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `RTO of the last ${runs.length} runs` });
  const slot = W / Math.max(runs.length, 1);
  runs.forEach((r, i) => {
    const h = Math.max(1, (r.rto_seconds / top) * (H - 2));
    const cls = r.passed === false ? "failed" : (r.rto_within_target === false ? "over" : "within");
    box.append(svg("rect", { class: cls, x: (i * slot + 1).toFixed(1), y: (H - h).toFixed(1),
      width: Math.max(1, slot - 2).toFixed(1), height: h.toFixed(1), "data-rto": r.rto_seconds },
    svg("title", {}, `${fmtUtc(r.scheduled_at)} UTC: RTO ${fmtMinutes(r.rto_seconds)}`)));
  });
  if (typeof target === "number") {
    const y = (H - (target / top) * (H - 2)).toFixed(1);
    box.append(svg("line", { class: "target", x1: 0, x2: W, y1: y, y2: y },
      svg("title", {}, `target ${fmtMinutes(target)}`)));
  }
  return box;
}

function drillRow(item) {
  const last = item.last || {};
  const known = last.passed === true || last.passed === false;
  const target = typeof last.rto_target_seconds === "number" ? last.rto_target_seconds : item.rto_target_seconds;
  return el("tr", { class: "drill", "data-drill": item.drill_id, "data-instance": item.backup_instance_name || "",
    "data-passed": known ? String(last.passed) : "" },
  el("td", { class: "drill-id" }, item.drill_id),
  el("td", { class: "instance", title: item.backup_instance_id || "" }, item.backup_instance_name || "-"),
  el("td", { class: "when", title: last.run_key || "" }, fmtUtc(last.scheduled_at) + (last.manual ? " (run now)" : "")),
  el("td", { class: "verdict", title: [last.error_code, last.error].filter(Boolean).join(": ") }, verdict(last)),
  el("td", { class: "rto" + (last.rto_within_target === false ? " over" : "") },
    `${fmtMinutes(last.rto_seconds)} / ${fmtMinutes(target)}`),
  el("td", { class: "rpo" }, typeof last.rpo_seconds === "number" ? fmtDuration(last.rpo_seconds * 1000) : "-"),
  el("td", { class: "checks" }, known ? `${last.checks_passed || 0} ok, ${last.checks_failed || 0} failed` : "-"),
  el("td", { class: "cleanup" }, last.cleanup_status || "-"),
  el("td", { class: "id" }, last.restore_id || "-"),
  el("td", { class: "trend" }, trendChart(item)));
}

async function refreshDrills() {
  const items = [];
  let token = null;
  for (let pages = 0; pages < MAX_PAGES; pages++) {
    const page = await getJson(`/drills/runs/latest?limit=${DRILL_PAGE}&trend=${TREND_RUNS}` +
      (token ? "&continuation=" + encodeURIComponent(token) : ""));
    items.push(...((page && page.items) || []));
    token = page && page.continuation;
    if (!token) break;
  }
  document.querySelector("#drills tbody").replaceChildren(...items.map(drillRow));
  document.getElementById("drills-count").textContent = String(items.length);
  document.getElementById("drills").hidden = items.length === 0;
  const empty = document.getElementById("drills-empty");
  empty.hidden = items.length > 0;
  empty.textContent = "No drill runs yet (define a drill: restorectl drills define FILE).";
}

async function refreshDrillsPanel() {
  try {
    await refreshDrills();
  } catch (e) {
    const empty = document.getElementById("drills-empty");
    empty.hidden = false;
    empty.textContent = "Drills unavailable: " + e.message;
  }
}

async function tick() {
  try {
    await loadStages();
    await refreshList();
    await refreshDetail();
    await refreshDrillsPanel();
    setConn("ok", "updated " + new Date().toISOString().slice(11, 19) + " UTC" +
      (stagesError ? ` (no stage list: ${stagesError}; stages shown raw)` : ""));
  } catch (e) {
    setConn("error", "API unreachable: " + e.message + " (is the local stack up? make up)");
  } finally {
    setTimeout(tick, REFRESH_MS);
  }
}

tick();
