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

async function refresh() {
  const [accounts, keys, tasks] = await Promise.all([api("GET", "accounts"), api("GET", "keys"), api("GET", "tasks")]);
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
    cell(row, t.history_id);
    cell(row, t.type);
    cell(row, t.model);
    cell(row, statusName[t.status] || t.status);
    cell(row, t.owner);
    cell(row, t.account);
    cell(row, t.webhook || "none");
    cell(row, when(t.created_at));
  });
  say("updated " + new Date().toLocaleTimeString(), false);
}

async function open() {
  try {
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
