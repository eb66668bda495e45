// The admin dashboard: plain DOM, no framework, no build step. Every call sends the admin key.
"use strict";

const $ = (sel) => document.querySelector(sel);
let adminKey = sessionStorage.getItem("jimeng-admin-key") || "";

function say(text, isError) {
  const el = $("#status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + adminKey } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch("/admin/api/" + path, init);
  const data = await resp.json();
  if (!resp.ok) {
    throw new Error(data.error ? data.error.message : "HTTP " + resp.status);
  }
  return data;
}

function when(ts) {
  return ts ? new Date(ts * 1000).toLocaleString() : "";
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function button(td, label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", async () => {
    try {
      await action();
      await refresh();
    } catch (err) {
      say(err.message, true);
    }
  });
  td.appendChild(b);
}

function fill(tableId, items, render) {
  const body = $(tableId + " tbody");
  body.replaceChildren();
  for (const item of items) {
    const row = document.createElement("tr");
    render(row, item);
    body.appendChild(row);
  }
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

// A horizontal bar chart: one row per item (label, bar scaled to the largest value, number).
function bars(id, items, label, value, failed) {
  const box = $(id);
  box.replaceChildren();
  const top = Math.max(0, ...items.map(value));
  if (!items.length || top === 0) {
    box.appendChild(el("p", "nothing yet", "empty"));
    return;
  }
  for (const item of items) {
    const row = el("div", null, "bar");
    row.dataset.label = label(item);
    row.appendChild(el("span", label(item), "label")).title = label(item);
    const track = row.appendChild(el("span", null, "track"));
    const fill = track.appendChild(el("span", null, "fill" + (failed ? " failed" : "")));
    fill.style.display = "block";
    fill.style.width = (100 * value(item) / top).toFixed(1) + "%";
    row.appendChild(el("span", value(item), "value"));
    box.appendChild(row);
  }
}

function overview(stats) {
  const t = stats.totals;
  const cards = [
    ["tasks", t.tasks], ["done", t.done], ["failed", t.failed], ["processing", t.processing],
    ["images/videos made", t.items], ["credits spent (keys)", t.credits_spent],
    ["credits left (pool)", t.credits_left], ["accounts", t.accounts], ["active keys", t.keys_active],
  ];
  const box = $("#totals");
  box.replaceChildren();
  for (const [name, number] of cards) {
    const card = el("div", null, "card");
    card.dataset.total = name;
    card.appendChild(el("b", number));
    card.appendChild(el("span", name));
    box.appendChild(card);
  }
  $("#window").textContent = stats.window.tasks
    ? "(latest " + stats.window.tasks + " task(s) since " + when(stats.window.since) + ")" : "(no tasks yet)";
  const name = (r) => r.name;
  const tasks = (r) => r.tasks;
  bars("#chart-day", stats.per_day, name, tasks);
  bars("#chart-model", stats.per_model, name, tasks);
  bars("#chart-key", stats.per_key, name, tasks);
  bars("#chart-account", stats.per_account, name, tasks);
  bars("#chart-failures", stats.failure_codes, (r) => r.code, tasks, true);
  bars("#chart-day-credits", stats.credits_per_day, (r) => r.day, (r) => r.credits);
  bars("#chart-key-credits", stats.credits.per_key, name, (r) => r.credits_spent);
  bars("#chart-account-credits", stats.credits.per_account, name, (r) => r.credits || 0);
}

let logSeq = 0;

async function tailLog() {
  const got = await api("GET", "logs?after=" + logSeq);
  const box = $("#log");
  const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  for (const entry of got.data) box.appendChild(document.createTextNode(entry.line + "\n"));
  while (box.childNodes.length > 500) box.removeChild(box.firstChild);
  logSeq = got.last;
  if (stick) box.scrollTop = box.scrollHeight;
}

async function showTask(historyId) {
  const t = await api("GET", "tasks/" + encodeURIComponent(historyId));
  $("#detail").hidden = false;
  $("#detail-id").textContent = t.history_id;
  $("#detail-summary").textContent =
    t.type + " · " + t.status_name + " · " + t.owner + (t.account ? " · account " + t.account : "");
  const error = $("#detail-error");
  error.hidden = !t.error;
  error.textContent = t.error ? t.error.code + (t.error.message ? ": " + t.error.message : "") : "";
  const previews = $("#detail-previews");
  previews.replaceChildren();
  for (const r of t.results) {
    const media = el(r.kind === "video" ? "video" : "img");
    media.src = r.url;
    if (r.kind === "video") media.controls = true; else media.alt = "result of " + t.history_id;
    const link = el("a");
    link.href = r.url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.appendChild(media);
    previews.appendChild(link);
  }
  const params = $("#detail-params");
  params.replaceChildren();
  for (const [k, v] of Object.entries(t.parameters)) {
    if (v === null || v === "") continue;
    params.appendChild(el("dt", k));
    params.appendChild(el("dd", v));
  }
  const history = $("#detail-history");
  history.replaceChildren();
  for (const step of t.status_history) history.appendChild(el("li", when(step.at) + " · " + step.status + (step.note ? " · " + step.note : "")));
  const events = Object.fromEntries(t.webhook.events.map((e) => [e.webhook_id, e]));
  fill("#detail-webhook", t.webhook.deliveries, (row, a) => {
    cell(row, events[a.webhook_id] ? events[a.webhook_id].type + " (" + events[a.webhook_id].state + ")" : a.webhook_id);
    cell(row, a.attempt);
    cell(row, when(a.at));
    cell(row, a.status);
    cell(row, a.error);
    cell(row, a.latency_ms === null ? "" : a.latency_ms + " ms");
  });
  if (!t.webhook.deliveries.length) {
    const row = el("tr");
    cell(row, t.webhook.callback_url ? "no attempt yet" : "no callback_url");
    $("#detail-webhook tbody").appendChild(row);
  }
  $("#detail").scrollIntoView({ block: "start" });
}

async function refresh() {
  const [accounts, keys, tasks, stats] = await Promise.all([
    api("GET", "accounts"), api("GET", "keys"), api("GET", "tasks"), api("GET", "stats"),
  ]);
  overview(stats);
  const accountNames = Object.fromEntries(accounts.data.map((a) => [a.id, a.name]));
  fill("#accounts", accounts.data, (row, a) => {
    row.dataset.name = a.name;
    cell(row, a.name);
    cell(row, a.region);
    cell(row, a.session);
    cell(row, a.credential + (a.transport ? " via " + a.transport : ""));
    cell(row, a.health.state.replace("_", " "), "state-" + a.health.state);
    cell(row, a.credits);
    cell(row, a.in_flight);
    const scoped = (a.health.model_cooldowns || []).map((c) => c.model + " until " + when(c.until) + " (" + c.reason + ")");
    cell(row, [when(a.health.cooldown_until), ...scoped].filter(Boolean).join("; "));
    cell(row, a.health.last_error_code ? a.health.last_error_code + ": " + a.health.last_error : "");
    cell(row, a.note);
    const td = cell(row, "");
    const ref = encodeURIComponent(a.id);
    button(td, "Check", () => api("POST", "accounts/" + ref + "/check"));
    button(td, a.enabled ? "Disable" : "Enable", () => api("POST", "accounts/" + ref + (a.enabled ? "/disable" : "/enable")));
    button(td, "Remove", () => api("DELETE", "accounts/" + ref));
  });
  fill("#keys", keys.data, (row, k) => {
    row.dataset.name = k.name;
    cell(row, k.name);
    cell(row, k.prefix + "…");
    cell(row, k.accounts === null ? "all" : k.accounts.map((id) => accountNames[id] || "#" + id).join(", "));
    cell(row, k.rate_per_minute);
    cell(row, k.max_in_flight);
    cell(row, k.usage.submits);
    cell(row, k.usage.credits_spent);
    cell(row, k.usage.in_flight);
    cell(row, when(k.usage.last_used_at));
    cell(row, k.revoked ? "revoked" : "active", k.revoked ? "state-revoked" : "state-ok");
    const td = cell(row, "");
    if (!k.revoked) button(td, "Revoke", () => api("POST", "keys/" + encodeURIComponent(k.id) + "/revoke"));
  });
  const statusName = { 10: "done", 20: "processing", 30: "failed" };
  fill("#tasks", tasks.data, (row, t) => {
    row.dataset.id = t.history_id;
    row.addEventListener("click", () => showTask(t.history_id).catch((err) => say(err.message, true)));
    cell(row, t.history_id);
    cell(row, t.type);
    cell(row, t.model);
    cell(row, statusName[t.status] || t.status, "status-" + (statusName[t.status] || ""));
    cell(row, t.error_code || "");
    cell(row, t.owner);
    cell(row, t.account);
    cell(row, t.webhook || "none");
    cell(row, when(t.created_at));
  });
  await tailLog();
  say("updated " + new Date().toLocaleTimeString(), false);
}

async function open() {
  try {
    say("reading the accounts' credits…", false);
    await api("POST", "accounts/check"); // credits are read on open, never blank
    await refresh();
    $("#login").hidden = true;
    $("#panel").hidden = false;
  } catch (err) {
    say(err.message, true);
  }
}

function formData(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) {
    if (String(v).trim() !== "") out[k] = String(v).trim();
  }
  return out;
}

$("#detail-close").addEventListener("click", () => { $("#detail").hidden = true; });

$("#login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  adminKey = $("#admin-key").value;
  sessionStorage.setItem("jimeng-admin-key", adminKey);
  open();
});

$("#add-account").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const a = await api("POST", "accounts", formData(ev.target));
    ev.target.reset();
    say("added account " + a.name, false);
    await refresh();
  } catch (err) {
    say(err.message, true);
  }
});

$("#create-key").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const data = formData(ev.target);
  if (data.accounts) data.accounts = data.accounts.split(",").map((s) => s.trim()).filter(Boolean);
  for (const f of ["rate_per_minute", "max_in_flight"]) if (data[f] !== undefined) data[f] = Number(data[f]);
  try {
    const k = await api("POST", "keys", data);
    ev.target.reset();
    $("#new-key code").textContent = k.key;
    $("#new-key").hidden = false;
    await refresh();
  } catch (err) {
    say(err.message, true);
  }
});

if (adminKey) open();
setInterval(() => { if (!$("#panel").hidden) refresh().catch((err) => say(err.message, true)); }, 5000);
