// A small, self-hosted reader of /openapi.json (the machines serving this may be offline,
// so no Swagger UI from a CDN).
"use strict";

function node(tag, text, cls) {
  const n = document.createElement(tag);
  if (text != null) n.textContent = String(text).replace(/`+/g, ""); // docstring markup
  if (cls) n.className = cls;
  return n;
}

function schemaText(schema, spec) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.enum) return schema.enum.join(" | ");
  if (schema.anyOf) return schema.anyOf.map((s) => schemaText(s, spec)).join(" | ");
  let text = schema.type || "object";
  if (schema.format) text += ` (${schema.format})`;
  if (schema.minimum != null || schema.maximum != null) text += ` [${schema.minimum ?? ""}..${schema.maximum ?? ""}]`;
  return text;
}

function table(rows) {
  const dl = node("dl", null, "facts");
  for (const [k, v] of rows) dl.append(node("dt", k), node("dd", v));
  return dl;
}

async function main() {
  const root = document.getElementById("api");
  const spec = await (await fetch("/openapi.json")).json();
  root.append(node("p", spec.info.description || ""));
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const panel = node("section", null, "panel");
      panel.append(node("h2", `${method.toUpperCase()} ${path}`));
      if (op.summary) panel.append(node("p", op.summary));
      if (op.description) panel.append(node("p", op.description, "hint"));
      const params = (op.parameters || []).map((p) => [
        `${p.name} (${p.in})`, `${schemaText(p.schema, spec)} ${p.description || ""}`]);
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        for (const [type, media] of Object.entries(body)) {
          const props = (media.schema && media.schema.properties) || {};
          const required = (media.schema && media.schema.required) || [];
          for (const [name, s] of Object.entries(props)) {
            params.push([`${name} (${type}${required.includes(name) ? ", required" : ""})`,
              `${schemaText(s, spec)} ${s.description || ""}`]);
          }
        }
      }
      if (params.length) {
        panel.append(node("h2", "Parameters"));
        panel.append(table(params));
      }
      const responses = Object.entries(op.responses || {}).map(([code, r]) => [code, r.description || ""]);
      if (responses.length) {
        panel.append(node("h2", "Responses"));
        panel.append(table(responses));
      }
      root.append(panel);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  main().catch((err) => {
    document.getElementById("api").textContent = `Could not read /openapi.json: ${err}`;
  });
});
