// Renders /openapi.json as a list of operations: for each, a request example and an answer example (the
// document's `example`s), the schemas ($ref resolved), and a form that sends the call to this server with the
// key pasted at the top and shows the answer. Plain DOM, no dependencies.
"use strict";

const keyInput = document.getElementById("api-key");
keyInput.value = sessionStorage.getItem("jimeng-docs-key") || "";
keyInput.addEventListener("input", () => sessionStorage.setItem("jimeng-docs-key", keyInput.value.trim()));

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function resolve(doc, schema, seen) {
  if (schema === null || typeof schema !== "object") return schema;
  if (Array.isArray(schema)) return schema.map((s) => resolve(doc, s, seen));
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.split("/").pop();
    if (seen.has(name)) return { $ref: schema.$ref };
    const target = doc.components.schemas[name];
    return resolve(doc, target, new Set([...seen, name]));
  }
  const out = {};
  for (const [key, value] of Object.entries(schema)) out[key] = resolve(doc, value, seen);
  return out;
}

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function schemaBlock(doc, schema) {
  const box = el("details", { class: "schema" }, el("summary", {}, "schema"));
  box.append(el("pre", {}, JSON.stringify(resolve(doc, schema, new Set()), null, 2)));
  return box;
}

function pathParams(op) {
  return (op.parameters || []).filter((p) => p.in === "path");
}

function queryParams(op) {
  return (op.parameters || []).filter((p) => p.in === "query");
}

// The request as text: method, path, headers and body (the JSON body's example; multipart named as such).
function requestExample(path, method, op) {
  const lines = [`${method.toUpperCase()} ${path}`];
  if (op.security) lines.push("Authorization: Bearer <key>");
  const content = (op.requestBody && op.requestBody.content) || {};
  const json = content["application/json"];
  if (json) {
    lines.push("Content-Type: application/json", "", pretty(json.example));
  } else if (content["multipart/form-data"]) {
    lines.push("Content-Type: multipart/form-data", "", "fields: " + pretty(content["multipart/form-data"].example));
  }
  return lines.join("\n");
}

function tryForm(path, method, op) {
  const form = el("form", { class: "try", "data-path": path, "data-method": method });
  const inputs = {};
  for (const p of pathParams(op)) {
    const input = el("input", { name: p.name, placeholder: p.name, required: "" });
    inputs[p.name] = input;
    form.append(el("label", {}, `${p.name} `, input));
  }
  const query = el("input", { name: "query", placeholder: queryParams(op).map((p) => p.name + "=").join("&") || "query (optional)" });
  if (queryParams(op).length) form.append(el("label", {}, "query ", query));
  const content = (op.requestBody && op.requestBody.content) || {};
  let body = null;
  if (content["application/json"]) {
    body = el("textarea", { name: "body", rows: "6", spellcheck: "false" });
    body.value = pretty(content["application/json"].example);
    form.append(el("label", { class: "body" }, "JSON body", body));
  } else if (content["multipart/form-data"]) {
    form.append(el("p", { class: "note" }, "This operation takes files (multipart): send it with curl or a client library."));
  }
  const send = el("button", { type: "submit" }, "Send");
  const out = el("pre", { class: "answer", hidden: "" });
  form.append(send, out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let url = path;
    for (const [name, input] of Object.entries(inputs)) url = url.replace(`{${name}}`, encodeURIComponent(input.value.trim()));
    if (query.value.trim()) url += "?" + query.value.trim().replace(/^\?/, "");
    const init = { method: method.toUpperCase(), headers: {} };
    const key = keyInput.value.trim();
    if (key) init.headers.Authorization = "Bearer " + key;
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = body.value;
    }
    out.hidden = false;
    out.textContent = "…";
    try {
      const resp = await fetch(url, init);
      const text = await resp.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: as it came */ }
      out.dataset.status = String(resp.status);
      out.textContent = `HTTP ${resp.status} ${resp.statusText}\n\n${shown}`;
    } catch (err) {
      out.dataset.status = "0";
      out.textContent = `the call did not complete: ${err}`;
    }
  });
  return form;
}

function operation(doc, path, method, op) {
  const box = el("details", { class: "op", "data-op": `${method.toUpperCase()} ${path}` });
  box.append(
    el("summary", {}, el("span", { class: `method ${method}` }, method), " ",
       el("span", { class: "path" }, path), " — ", op.summary || ""),
  );
  if (op.security) {
    const admin = op.security.some((s) => "admin" in s);
    box.append(el("p", {}, admin ? "Needs Authorization: Bearer <admin key>"
      : "Needs Authorization: Bearer <API key or session id>[,<session id>...]"));
  }
  if (op.parameters) {
    box.append(el("h4", {}, "Parameters"));
    const list = el("ul", {});
    for (const p of op.parameters) {
      list.append(el("li", {}, `${p.name} (${p.in}${p.required ? ", required" : ""})`
        + (p.description ? `: ${p.description}` : "")));
    }
    box.append(list);
  }
  box.append(el("h4", {}, "Request example"), el("pre", { class: "request-example" }, requestExample(path, method, op)));
  if (op.requestBody) {
    for (const [media, body] of Object.entries(op.requestBody.content)) {
      box.append(el("h5", {}, `Request body (${media})`), schemaBlock(doc, body.schema));
    }
  }
  for (const [status, answer] of Object.entries(op.responses)) {
    box.append(el("h4", {}, `${status}: ${answer.description}`));
    for (const body of Object.values(answer.content || {})) {
      if (body.example !== undefined) box.append(el("pre", { class: "answer-example" }, pretty(body.example)));
      box.append(schemaBlock(doc, body.schema));
    }
  }
  box.append(el("h4", {}, "Try it"), tryForm(path, method, op));
  return box;
}

async function main() {
  const root = document.getElementById("operations");
  try {
    const doc = await (await fetch("/openapi.json")).json();
    document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version}`;
    document.getElementById("description").textContent = doc.info.description || "";
    root.replaceChildren();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) root.append(operation(doc, path, method, op));
    }
  } catch (err) {
    root.replaceChildren(el("p", {}, `Could not load /openapi.json: ${err}`));
  }
}

main();
