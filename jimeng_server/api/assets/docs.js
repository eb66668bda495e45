// Renders /openapi.json as a list of operations: parameters, request bodies and answers with their schemas
// ($ref resolved). Plain DOM, no dependencies.
"use strict";

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

function schemaBlock(doc, schema) {
  return el("pre", {}, JSON.stringify(resolve(doc, schema, new Set()), null, 2));
}

function operation(doc, path, method, op) {
  const box = el("details", {});
  box.append(
    el("summary", {}, el("span", { class: `method ${method}` }, method), " ",
       el("span", { class: "path" }, path), " — ", op.summary || ""),
  );
  if (op.security) box.append(el("p", {}, "Needs Authorization: Bearer <token>[,<token>...]"));
  if (op.parameters) {
    box.append(el("h4", {}, "Parameters"));
    const list = el("ul", {});
    for (const p of op.parameters) {
      list.append(el("li", {}, `${p.name} (${p.in}${p.required ? ", required" : ""})`
        + (p.description ? `: ${p.description}` : "")));
    }
    box.append(list);
  }
  if (op.requestBody) {
    for (const [media, body] of Object.entries(op.requestBody.content)) {
      box.append(el("h4", {}, `Request body (${media})`), schemaBlock(doc, body.schema));
    }
  }
  for (const [status, answer] of Object.entries(op.responses)) {
    box.append(el("h4", {}, `${status}: ${answer.description}`));
    for (const body of Object.values(answer.content || {})) box.append(schemaBlock(doc, body.schema));
  }
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
