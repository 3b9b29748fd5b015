// ferrymq dashboard: one page over /api/*. Every value from the cluster is inserted as text
// (never as HTML): message bodies and names are other people's data.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { session: null, tps: [], timer: null, showTopicKinds: false };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.addEventListener("click", v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function notice(text, isError) {
  const n = $("#notice");
  n.textContent = text;
  n.className = isError ? "error" : "";
  n.hidden = !text;
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  let data = {};
  try { data = await resp.json(); } catch (_) { /* empty body */ }
  if (resp.status === 401 && state.session && state.session.loginRequired) {
    showLogin();
  }
  if (!resp.ok) throw new Error(data.error || `${resp.status} ${resp.statusText}`);
  return data;
}

const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const fmtTps = (a) => (a && a.length ? a[0].toFixed(1) : "–");
const fmtTime = (ms) => (ms > 0 ? new Date(ms).toISOString().replace("T", " ").replace("Z", "") : "–");
const fmtPct = (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(1) + " %");

function fillTable(sel, rows) {
  const tbody = $(sel + " tbody");
  tbody.replaceChildren(...rows);
}

// ----- sign-in -----------------------------------------------------------------------------

function showLogin() {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#logout-btn").hidden = true;
  $("#who").textContent = "";
  stopTimer();
}

async function start() {
  state.session = await api("GET", "/api/session");
  if (!state.session.signedIn) return showLogin();
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#who").textContent = state.session.user ? "signed in as " + state.session.user : "";
  $("#logout-btn").hidden = !state.session.loginRequired;
  route();
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("POST", "/api/login", { accessKey: $("#login-ak").value, secretKey: $("#login-sk").value });
    $("#login-sk").value = "";
    notice("");
    await start();
  } catch (e) { notice(e.message, true); }
});

$("#logout-btn").addEventListener("click", async () => {
  await api("POST", "/api/logout");
  showLogin();
});

// ----- navigation --------------------------------------------------------------------------

function stopTimer() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

function route() {
  const page = (location.hash || "#cluster").slice(1);
  const known = ["cluster", "topics", "groups", "messages"];
  const current = known.includes(page) ? page : "cluster";
  for (const p of known) {
    $("#page-" + p).hidden = p !== current;
    $("#nav-" + p).classList.toggle("active", p === current);
  }
  stopTimer();
  notice("");
  const load = { cluster: loadCluster, topics: loadTopics, groups: loadGroups, messages: async () => {} }[current];
  load().catch((e) => notice(e.message, true));
  if (current === "cluster") {
    state.timer = setInterval(() => loadCluster().catch((e) => notice(e.message, true)), 2000);
  }
}
window.addEventListener("hashchange", () => { if (!$("#app").hidden) route(); });

// ----- cluster -----------------------------------------------------------------------------

async function loadCluster() {
  const data = await api("GET", "/api/overview");
  let put = 0, get = 0, putTotal = 0, getTotal = 0;
  const rows = data.brokers.map((b) => {
    if (b.putTps.length) put += b.putTps[0];
    if (b.getTps.length) get += b.getTps[0];
    putTotal += b.putTotal || 0;
    getTotal += b.getTotal || 0;
    return el("tr", {},
      el("td", {}, b.cluster), el("td", {}, b.brokerName), el("td", {}, b.brokerId === 0 ? "0 (master)" : b.brokerId),
      el("td", {}, b.addr), el("td", {}, b.error ? el("span", { class: "muted" }, b.error) : b.version || "–"),
      el("td", { class: "num" }, fmtTps(b.putTps)), el("td", { class: "num" }, fmtTps(b.getTps)),
      el("td", { class: "num" }, fmtNum(b.putTotal)), el("td", { class: "num" }, fmtNum(b.getTotal)),
      el("td", { class: "num" }, fmtPct(b.diskRatio)));
  });
  fillTable("#brokers-table", rows);
  const clusters = new Set(data.brokers.map((b) => b.cluster));
  $("#totals").replaceChildren(
    card("Clusters", clusters.size), card("Brokers", data.brokers.length),
    card("Put TPS", put.toFixed(1)), card("Get TPS", get.toFixed(1)),
    card("Put today", fmtNum(putTotal)), card("Get today", fmtNum(getTotal)));
  state.tps.push({ put, get });
  if (state.tps.length > 90) state.tps.shift();
  drawChart();
}

function card(label, value) {
  return el("div", { class: "card" }, el("b", {}, value), label);
}

function drawChart() {
  const c = $("#tps-chart");
  const g = c.getContext("2d");
  const w = c.width, h = c.height, pad = 30;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...state.tps.map((s) => Math.max(s.put, s.get)));
  g.strokeStyle = "#d9dee7"; g.fillStyle = "#667085"; g.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + (h - pad) * i / 4;
    g.beginPath(); g.moveTo(pad + 20, y); g.lineTo(w - 4, y); g.stroke();
    g.fillText((max * (4 - i) / 4).toFixed(max < 10 ? 1 : 0), 2, y + 4);
  }
  const line = (key, color) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    state.tps.forEach((s, i) => {
      const x = pad + 20 + (w - pad - 24) * i / 89;
      const y = pad / 2 + (h - pad) * (1 - s[key] / max);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  };
  line("put", "#2f6fdb");
  line("get", "#1f9d6b");
}

// ----- topics ------------------------------------------------------------------------------

async function loadTopics() {
  const data = await api("GET", "/api/topics");
  const clusterSel = $("#new-topic-cluster");
  clusterSel.replaceChildren(...data.clusters.map((c) => el("option", { value: c }, c)));
  const all = $("#topics-show-system").checked;
  const filter = $("#topics-filter").value.trim().toLowerCase();
  const rows = data.topics
    .filter((t) => all || t.kind === "normal")
    .filter((t) => !filter || t.name.toLowerCase().includes(filter))
    .map((t) => el("tr", { class: "clickable", "data-topic": t.name },
      el("td", { onclick: () => showTopic(t.name) }, t.name),
      el("td", {}, t.kind),
      el("td", {}, el("button", { class: "danger", onclick: () => deleteTopic(t.name) }, "Delete"))));
  fillTable("#topics-table", rows);
}

async function showTopic(name) {
  const d = await api("GET", "/api/topics/" + encodeURIComponent(name));
  const queues = el("table", {}, el("thead", {}, el("tr", {},
    el("th", {}, "Broker"), el("th", {}, "Queue"), el("th", { class: "num" }, "Min offset"),
    el("th", { class: "num" }, "Max offset"), el("th", {}, "Last update"))),
    el("tbody", {}, ...d.queues.map((q) => el("tr", {},
      el("td", {}, q.brokerName), el("td", {}, q.queueId), el("td", { class: "num" }, fmtNum(q.minOffset)),
      el("td", { class: "num" }, fmtNum(q.maxOffset)), el("td", {}, fmtTime(q.lastUpdateTimestamp))))));
  const brokers = d.route.brokerDatas.map((b) => `${b.brokerName} (${Object.entries(b.brokerAddrs).map(([id, a]) => id + "=" + a).join(", ")})`);
  const qd = d.route.queueDatas.map((q) => `${q.brokerName}: read ${q.readQueueNums} / write ${q.writeQueueNums}, perm ${q.perm}`);
  $("#topic-detail").replaceChildren(el("div", { class: "detail", id: "topic-detail-" + name },
    el("h3", {}, "Topic " + name), el("p", {}, `${fmtNum(d.messages)} messages stored · brokers: ${brokers.join("; ")}`),
    el("p", { class: "muted" }, qd.join(" · ")), queues,
    el("button", { class: "link", onclick: () => { location.hash = "#messages"; $("#msg-topic").value = name; $("#msg-by").value = "time"; } }, "Browse messages")));
}

async function deleteTopic(name) {
  if (!confirm(`Delete topic ${name} from every broker of its cluster?`)) return;
  try {
    await api("DELETE", "/api/topics/" + encodeURIComponent(name));
    notice(`Topic ${name} deleted.`);
    $("#topic-detail").replaceChildren();
    await loadTopics();
  } catch (e) { notice(e.message, true); }
}

$("#new-topic-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const topic = $("#new-topic-name").value.trim();
  try {
    const r = await api("POST", "/api/topics", {
      topic, queues: Number($("#new-topic-queues").value || 8),
      cluster: $("#new-topic-cluster").value || null, order: $("#new-topic-order").checked,
    });
    notice(`Topic ${r.topic} created on ${r.brokers.join(", ")}.`);
    $("#new-topic-name").value = "";
    await loadTopics();
  } catch (e) { notice(e.message, true); }
});
$("#topics-show-system").addEventListener("change", () => loadTopics().catch((e) => notice(e.message, true)));
$("#topics-filter").addEventListener("input", () => loadTopics().catch((e) => notice(e.message, true)));

// ----- consumer groups ---------------------------------------------------------------------

async function loadGroups() {
  const q = $("#groups-show-system").checked ? "?all=true" : "";
  const data = await api("GET", "/api/groups" + q);
  fillTable("#groups-table", data.groups.map((g) => el("tr", { class: "clickable", onclick: () => showGroup(g.group) },
    el("td", {}, g.group), el("td", { class: "num" }, g.clients), el("td", {}, g.consumeType || "–"),
    el("td", {}, g.messageModel || "–"), el("td", { class: "num" }, g.consumeTps === null ? "–" : g.consumeTps.toFixed(1)),
    el("td", { class: "num" }, fmtNum(g.lag)))));
}
$("#groups-show-system").addEventListener("change", () => loadGroups().catch((e) => notice(e.message, true)));

async function showGroup(group) {
  const box = $("#group-detail");
  let d;
  try { d = await api("GET", "/api/groups/" + encodeURIComponent(group)); } catch (e) { return notice(e.message, true); }
  const topics = [...new Set(d.queues.map((q) => q.topic))];
  const clients = (d.connection ? d.connection.connectionSet : []).map((c) =>
    el("li", {}, `${c.clientId} · ${c.clientAddr} · ${c.language} v${c.version}`));
  const topicSel = el("select", { id: "reset-topic" }, ...topics.map((t) => el("option", { value: t }, t)));
  const when = el("input", { id: "reset-time", type: "datetime-local" });
  const reset = el("button", { id: "reset-btn", onclick: async () => {
    const ts = when.value ? new Date(when.value).getTime() : Date.now();
    if (!confirm(`Reset ${group} on ${topicSel.value} to ${new Date(ts).toISOString()}?`)) return;
    try {
      const r = await api("POST", `/api/groups/${encodeURIComponent(group)}/reset`, { topic: topicSel.value, timestamp: ts, force: true });
      notice(`Offsets reset on ${r.offsets.length} queues.`);
      await showGroup(group);
    } catch (e) { notice(e.message, true); }
  } }, "Reset offset");
  box.replaceChildren(el("div", { class: "detail" },
    el("h3", {}, `Group ${group} — lag ${fmtNum(d.lag)}, ${d.consumeTps.toFixed(1)} msg/s`),
    el("h3", {}, "Clients"), clients.length ? el("ul", {}, ...clients) : el("p", { class: "muted" }, "no client online"),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Topic", "Broker", "Queue", "Broker offset", "Consumer offset", "Lag", "Last consumed"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...d.queues.map((q) => el("tr", {},
        el("td", {}, q.topic), el("td", {}, q.brokerName), el("td", {}, q.queueId),
        el("td", { class: "num" }, fmtNum(q.brokerOffset)), el("td", { class: "num" }, fmtNum(q.consumerOffset)),
        el("td", { class: "num" }, fmtNum(q.lag)), el("td", {}, fmtTime(q.lastTimestamp)))))),
    topics.length ? el("p", { class: "inline" }, "Reset to time: ", topicSel, " ", when, " ", reset) : null));
}

// ----- messages ----------------------------------------------------------------------------

$("#msg-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const params = new URLSearchParams({ topic: $("#msg-topic").value.trim() });
  const by = $("#msg-by").value;
  const key = $("#msg-key").value.trim();
  if (by === "id") params.set("id", key);
  if (by === "key") params.set("key", key);
  if ($("#msg-begin").value) params.set("begin", new Date($("#msg-begin").value).getTime());
  if ($("#msg-end").value) params.set("end", new Date($("#msg-end").value).getTime());
  try {
    const data = await api("GET", "/api/messages?" + params);
    $("#msg-detail").replaceChildren();
    fillTable("#msg-results", data.messages.map((m) => el("tr", { class: "msg-row" },
      el("td", {}, m.msgId), el("td", {}, m.tags || ""), el("td", {}, m.keys.join(" ")),
      el("td", {}, `${m.brokerName}:${m.queueId}`), el("td", { class: "num" }, m.queueOffset),
      el("td", {}, fmtTime(m.storeTimestamp)), el("td", { class: "num" }, m.bodyLength),
      el("td", {}, el("button", { class: "link", onclick: () => showMessage(m) }, "Details")))));
    notice(data.messages.length ? `${data.messages.length} message(s) found.` : "No message found.");
  } catch (e) { notice(e.message, true); }
});

async function showMessage(m) {
  const props = Object.entries(m.properties).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v)));
  const box = el("div", { class: "detail", id: "msg-detail-box" },
    el("h3", {}, "Message " + m.msgId),
    el("p", {}, `topic ${m.topic} · queue ${m.brokerName}:${m.queueId} @ ${m.queueOffset} · offset id ${m.offsetMsgId}`),
    el("p", {}, `born ${fmtTime(m.bornTimestamp)} at ${m.bornHost} · stored ${fmtTime(m.storeTimestamp)} at ${m.storeHost} · reconsumed ${m.reconsumeTimes}×`),
    el("h3", {}, `Body (${m.bodyLength} bytes)`), el("pre", {}, m.body !== null ? m.body : "(binary) " + m.bodyHex),
    el("h3", {}, "Properties"), el("table", {}, el("tbody", {}, ...props)),
    el("h3", {}, "Trace"), el("div", { id: "trace-box" }, el("span", { class: "muted" }, "loading…")));
  $("#msg-detail").replaceChildren(box);
  try {
    const t = await api("GET", "/api/trace?msgId=" + encodeURIComponent(m.msgId));
    const rows = t.records.map((r) => el("tr", {},
      el("td", {}, r.traceType), el("td", {}, fmtTime(r.timestamp)), el("td", {}, r.group), el("td", {}, r.clientHost),
      el("td", { class: "num" }, r.costTime + " ms"),
      el("td", {}, r.traceType === "EndTransaction" ? r.transactionState : (r.traceType === "SubBefore" ? `retry ${r.retryTimes}` : (r.success ? "success" : "failed")))));
    $("#trace-box").replaceChildren(rows.length
      ? el("table", { id: "trace-table" }, el("thead", {}, el("tr", {}, ...["Type", "Time", "Group", "Client", "Cost", "Status"].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows))
      : el("p", { class: "muted" }, `no trace in ${t.traceTopic} (clients trace only when enabled)`));
  } catch (e) { $("#trace-box").replaceChildren(el("p", { class: "muted" }, e.message)); }
}

start().catch((e) => notice(e.message, true));
