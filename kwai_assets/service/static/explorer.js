// The explorer: one user's places, LLM profile, recall candidates and served list, from the service's JSON.
// Plain DOM and SVG, no library and no map tiles: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const W = 640, H = 440, PAD = 24, KM_PER_DEG = 111.32;

function el(tag, attrs = {}, text = null, ns = null) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function itemLabel(row) {
  return row.title || row.name || row.category || row.item;
}

async function getJSON(url) {
  const response = await fetch(url);
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch { body = null; }
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}: ${text}`);
  return body;
}

// the latest request of each kind wins: an older answer that arrives later is dropped
const latest = { show: 0, search: 0 };

// -- the map: an equirectangular projection in km around the user's places -------------------------------------
function niceStep(km) {
  const p = Math.pow(10, Math.floor(Math.log10(km)));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= km) || 10 * p;
}

function quantile(weighted, q) {
  const sorted = weighted.slice().sort((a, b) => a[0] - b[0]);
  const total = sorted.reduce((s, [, w]) => s + w, 0);
  let seen = 0;
  for (const [value, w] of sorted) { seen += w; if (seen >= q * total) return value; }
  return sorted[sorted.length - 1][0];
}

const median = (weighted) => quantile(weighted, 0.5);

function drawMap(data) {
  const svg = $("map");
  svg.replaceChildren();
  const located = (rows) => rows.filter((r) => Number.isFinite(r.lat) && Number.isFinite(r.lon));
  // framed on where the user mostly is: around the visit-weighted median of the train check-ins, out to the
  // distance that covers 90% of their visits; places, test visits and recommendations beyond are counted
  const recs = located(data.recommendations);
  const frame = [located(data.places), located(data.test_places), recs].find((rows) => rows.length);
  const lat0 = median(frame.map((p) => [p.lat, p.visits || 1]));
  const cos0 = Math.cos((lat0 * Math.PI) / 180);
  const km = (p) => [p.lon * cos0 * KM_PER_DEG, -p.lat * KM_PER_DEG];
  const cx = median(frame.map((p) => [km(p)[0], p.visits || 1]));
  const cy = median(frame.map((p) => [km(p)[1], p.visits || 1]));
  const reach = quantile(frame.map((p) => { const [x, y] = km(p); return [Math.hypot(x - cx, y - cy), p.visits || 1]; }),
                         0.9);
  const radius = Math.max(reach * 1.15, 1);
  const scale = Math.min(W - 2 * PAD, H - 2 * PAD) / (2 * radius);
  const span = 2 * radius * Math.max(W, H) / Math.min(W, H);
  const project = (p) => { const [x, y] = km(p); return [W / 2 + (x - cx) * scale, H / 2 + (y - cy) * scale]; };
  const inside = ([x, y]) => x >= 0 && x <= W && y >= 0 && y <= H;

  const step = niceStep(span / 6);
  for (let gx = Math.ceil((cx - W / 2 / scale) / step) * step; gx < cx + W / 2 / scale; gx += step) {
    const x = W / 2 + (gx - cx) * scale;
    svg.append(el("line", { class: "grid", x1: x, x2: x, y1: 0, y2: H }, null, SVG));
  }
  for (let gy = Math.ceil((cy - H / 2 / scale) / step) * step; gy < cy + H / 2 / scale; gy += step) {
    const y = H / 2 + (gy - cy) * scale;
    svg.append(el("line", { class: "grid", x1: 0, x2: W, y1: y, y2: y }, null, SVG));
  }
  svg.append(el("line", { class: "scale", x1: 12, x2: 12 + step * scale, y1: H - 12, y2: H - 12 }, null, SVG));
  svg.append(el("text", { class: "scale-label", x: 12, y: H - 18 }, `${step} km`, SVG));

  const maxVisits = Math.max(1, ...data.places.map((p) => p.visits));
  let outside = 0, testOutside = 0, trainOutside = 0;
  for (const p of located(data.places)) {
    const [x, y] = project(p);
    if (!inside([x, y])) { trainOutside += 1; continue; }
    const dot = el("circle", { class: "train", cx: x, cy: y, r: 3 + 6 * Math.sqrt(p.visits / maxVisits),
                               "data-poi": p.poi }, null, SVG);
    dot.append(el("title", {}, `${p.name || p.poi} (${p.category}): ${p.visits} train check-ins`, SVG));
    svg.append(dot);
  }
  for (const p of located(data.test_places)) {
    const [x, y] = project(p);
    if (!inside([x, y])) { testOutside += 1; continue; }
    const ring = el("circle", { class: "test", cx: x, cy: y, r: 8, "data-poi": p.poi }, null, SVG);
    ring.append(el("title", {}, `${p.name || p.poi}: visited in test`, SVG));
    svg.append(ring);
  }
  const byPoi = new Map();
  for (const r of recs) if (!byPoi.has(r.poi_id)) byPoi.set(r.poi_id, r);   // best rank per POI
  for (const r of byPoi.values()) {
    const [x, y] = project(r);
    if (!inside([x, y])) { outside += 1; continue; }
    const mark = el("rect", { class: "rec", x: x - 4, y: y - 4, width: 8, height: 8, "data-poi": r.poi_id,
                              "data-rank": r.rank }, null, SVG);
    mark.append(el("title", {}, `#${r.rank} ${itemLabel(r)} at ${r.name || r.poi_id}`, SVG));
    svg.append(mark);
    if (r.rank <= 10) svg.append(el("text", { x: x + 6, y: y - 5 }, String(r.rank), SVG));
  }
  const beyond = [trainOutside && `${trainOutside} train places`, testOutside && `${testOutside} test places`,
                  outside && `${outside} recommended POIs`];
  $("outside").textContent = beyond.some(Boolean) ? `· beyond the map: ${beyond.filter(Boolean).join(", ")}` : "";
}

// -- lists ------------------------------------------------------------------------------------------------------
function drawList(id, rows, render, marked) {
  const list = $(id);
  list.replaceChildren(...rows.map((row) => {
    const li = el("li", { "data-item": row.item }, render(row));
    if (marked(row)) li.classList.add("hit");
    return li;
  }));
}

function drawRecommendations(rows) {
  const body = $("recommendations").tBodies[0];
  body.replaceChildren(...rows.map((r) => {
    const tr = el("tr", { "data-item": r.item });
    if (r.in_test) tr.classList.add("hit");
    for (const text of [r.rank, r.item, r.title || r.category || "", r.name || "", r.score.toFixed(3),
                        r.in_test ? "✓" : ""]) tr.append(el("td", {}, String(text)));
    return tr;
  }));
}

function drawChannels(channels) {
  $("channels").replaceChildren(...Object.entries(channels).map(([name, rows]) => {
    const box = el("div", { class: "channel", "data-channel": name });
    box.append(el("h3", {}, name));
    const list = el("ol");
    for (const r of rows) {
      const li = el("li", { "data-item": r.item, value: r.channel_rank }, `${itemLabel(r)}${r.in_test ? " ✓" : ""}`);
      if (r.kept) li.classList.add("kept");
      if (r.in_test) li.classList.add("hit");
      list.append(li);
    }
    box.append(list);
    return box;
  }));
}

async function show(user) {
  const token = ++latest.show;
  $("status").textContent = `loading ${user}…`;
  try {
    const data = await getJSON(`/users/${encodeURIComponent(user)}/explorer`);
    if (token !== latest.show) return;
    const hasMap = data.places.some((p) => Number.isFinite(p.lat));
    $("places-panel").hidden = !hasMap;
    $("history-panel").hidden = hasMap;
    if (hasMap) drawMap(data);
    else drawList("history", data.history, (r) => itemLabel(r), (r) => r.in_test);
    $("profile").textContent = data.profile.profile || "(no LLM profile stored for this user)";
    $("prompt").textContent = data.profile.prompt || "";
    $("version").textContent = `online-store version ${data.version}`;
    drawRecommendations(data.recommendations);
    drawChannels(data.channels);
    drawList("test", data.test, (r) => `${itemLabel(r)} (${r.item})`, (r) => r.served);
    $("view").hidden = false;
    const hits = data.recommendations.filter((r) => r.in_test).length;
    $("status").textContent = `${data.user}: ${data.places.length} train places, ${data.test.length} test items, ` +
      `${hits} of them in the served list`;
    history.replaceState(null, "", `?user=${encodeURIComponent(user)}`);
  } catch (err) {
    if (token !== latest.show) return;
    $("view").hidden = true;
    $("status").textContent = err.message;
  }
}

$("user").addEventListener("input", async (event) => {
  const q = event.target.value;
  const token = ++latest.search;
  try {
    const { users } = await getJSON(`/users?q=${encodeURIComponent(q)}&limit=20`);
    if (token !== latest.search) return;
    $("user-ids").replaceChildren(...users.map((u) => el("option", { value: u })));
  } catch (err) { $("status").textContent = err.message; }
});
$("pick").addEventListener("submit", (event) => { event.preventDefault(); show($("user").value.trim()); });

const initial = new URLSearchParams(location.search).get("user");
if (initial) { $("user").value = initial; show(initial); }
