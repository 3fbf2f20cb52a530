// Calls to the gateway's REST API, the API key kept for this browser tab, and error messages in plain words.
"use strict";

const ApiKey = {
  storageKey: "ecg-api-key",
  get() { return sessionStorage.getItem(this.storageKey) || ""; },
  set(value) { value ? sessionStorage.setItem(this.storageKey, value) : sessionStorage.removeItem(this.storageKey); },
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function describeDetail(detail, status) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {  // FastAPI validation errors: [{loc, msg}]
    return detail.map((d) => {
      const where = (d.loc || []).filter((p) => p !== "body").join(".");
      return where ? `${where}: ${d.msg}` : d.msg;
    }).join("; ");
  }
  return `request failed (HTTP ${status})`;
}

async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  const key = ApiKey.get();
  if (key) init.headers["X-API-Key"] = key;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "cannot reach the server; check your connection");
  }
  let payload = null;
  const text = await response.text();
  if (text) {
    try { payload = JSON.parse(text); } catch (err) { payload = null; }
  }
  if (!response.ok) {
    const message = payload && payload.detail !== undefined
      ? describeDetail(payload.detail, response.status)
      : `the server answered HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return payload;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A non-breaking space keeps "%" on the line of its number.
function percent(p, digits = 1) { return `${(100 * p).toFixed(digits)}\u00a0%`; }

// Clinical names for the class labels and calls the API answers with (from ecg_shared.vocabulary, embedded in the
// page): "A" reads "atrial fibrillation (A)".
const Vocabulary = (() => {
  const source = document.getElementById("vocabulary");
  const words = source ? JSON.parse(source.textContent) : { classes: {}, calls: {}, evidence: {} };
  return {
    evidence: words.evidence,
    className(label) { return words.classes[label] || label; },
    classWithCode(label) { return words.classes[label] ? `${words.classes[label]} (${label})` : label; },
    callName(call) { return words.calls[call] || call; },
  };
})();
function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "medium" }) : "–";
}
function formatNumber(value) {
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) < 10 ? 3 : 1);
}

(function setUpApiKeyField() {
  const input = document.getElementById("api-key");
  const state = document.getElementById("api-key-state");
  if (!input) return;
  input.value = ApiKey.get();
  const show = () => { state.textContent = ApiKey.get() ? "✓" : ""; };
  show();
  input.addEventListener("change", () => { ApiKey.set(input.value.trim()); show(); });
  document.getElementById("api-key-form").addEventListener("submit", (e) => { e.preventDefault(); input.blur(); });
})();
