// Shared by the demo pages (/, /pos, /admin): keys, API calls with
// Idempotency-Keys, problem+json shown to a person, tiny DOM helpers.
// Plain JavaScript, no framework, no build step.

export const API = location.origin;

// Keys: under `make dev` the Worker shows the dev keys at /v1/dev/keys (the
// DEMO_PAGE_KEYS var); anywhere else that is 404 and the page asks for a key,
// kept in this tab's sessionStorage only. No page contains a key.
let demoKeys = null;
export async function keyFor(role) {
  if (demoKeys === null) {
    try {
      const r = await fetch(`${API}/v1/dev/keys`);
      demoKeys = r.ok ? (await r.json()).keys : [];
    } catch {
      demoKeys = [];
    }
  }
  const dev = demoKeys.find((k) => k.role === role);
  if (dev) return { key: dev.key, location: dev.location, source: "make dev" };
  const stored = sessionStorage.getItem(`omnistock.key.${role}`);
  if (stored) return { key: stored, location: sessionStorage.getItem(`omnistock.loc.${role}`), source: "entered" };
  const key = prompt(`omnistock ${role} API key (kept in this tab only):`) || "";
  sessionStorage.setItem(`omnistock.key.${role}`, key.trim());
  if (role === "pos") {
    const loc = prompt("The till's location id:") || "";
    sessionStorage.setItem(`omnistock.loc.${role}`, loc.trim());
    return { key: key.trim(), location: loc.trim(), source: "entered" };
  }
  return { key: key.trim(), location: null, source: "entered" };
}

// A failed call: status, the problem's code and detail.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code || "";
  }
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

// One API call. Writes get an Idempotency-Key (the given one, so a retry of
// the same action is the same request). A network failure throws a TypeError.
export async function call(key, method, path, body, idem) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = idem || uuid();
  const r = await fetch(`${API}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

// h("button", {onclick}, "text", child...): a DOM element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function money(m) {
  if (!m) return "";
  const n = Number(m.amount);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: m.currency }).format(n);
  } catch {
    return `${m.amount} ${m.currency}`;
  }
}

// Exact decimal multiplication of an amount string by a whole quantity
// (no floats for money): "19.90" x 3 -> "59.70".
export function times(amount, qty) {
  const [i, f = ""] = String(amount).split(".");
  const scale = f.length;
  const units = BigInt(i + f) * BigInt(qty);
  const s = units.toString().padStart(scale + 1, "0");
  return scale ? `${s.slice(0, -scale)}.${s.slice(-scale)}` : s;
}

export function plus(a, b) {
  const scale = Math.max((a.split(".")[1] || "").length, (b.split(".")[1] || "").length);
  const toUnits = (x) => {
    const [i, f = ""] = x.split(".");
    return BigInt(i + f.padEnd(scale, "0"));
  };
  const s = (toUnits(a) + toUnits(b)).toString().padStart(scale + 1, "0");
  return scale ? `${s.slice(0, -scale)}.${s.slice(-scale)}` : s;
}

// The tax of one line, as the server computes it (core's TaxTable::line,
// GET /v1/config/fulfillment's `tax`): the location's own rate for the
// code, else the "*" row; exclusive: tax = amount x rate, inclusive: tax =
// amount x rate / (1 + rate), rounded to the currency's minor unit half
// away from zero, in exact integer arithmetic (no floats for money).
// Returns {tax, gross} as decimal strings, or null when the table has no rate.
export function lineTax(table, location, code, unitPrice, qty) {
  if (!table) return { tax: "0", gross: times(unitPrice.amount, qty) };
  const c = code || table.default_code;
  const row = table.rates.find((r) => r.location === location && r.code === c)
    || table.rates.find((r) => r.location === "*" && r.code === c);
  if (!row) return null;
  const units = (x) => {
    const [i, f = ""] = String(x).split(".");
    return [BigInt(i + f), BigInt(10) ** BigInt(f.length)];
  };
  let minor = 2;
  try {
    minor = new Intl.NumberFormat("en", { style: "currency", currency: unitPrice.currency })
      .resolvedOptions().maximumFractionDigits;
  } catch { /* an unknown currency: cents */ }
  const [a, da] = units(times(unitPrice.amount, qty));
  const [r, dr] = units(row.rate);
  const scale = BigInt(10) ** BigInt(minor);
  const num = a * r * scale;
  const den = table.inclusive ? da * (dr + r) : da * dr;
  const tax = (2n * num + den) / (2n * den); // half away from zero (num >= 0)
  const fmt = (n) => {
    const s = n.toString().padStart(minor + 1, "0");
    return minor ? `${s.slice(0, -minor)}.${s.slice(-minor)}` : s;
  };
  const amount = times(unitPrice.amount, qty);
  return { tax: fmt(tax), gross: table.inclusive ? amount : plus(amount, fmt(tax)) };
}

// A status line: role="status" so screen readers hear it.
export function say(el, text, kind = "info") {
  el.textContent = text;
  el.dataset.kind = kind;
}

export function explain(e) {
  if (e instanceof ApiError) {
    const lines = (e.problem.lines || [])
      .map((l) => ` ${l.sku}${l.location ? " at " + l.location : ""}: ${l.available ?? l.returnable} of ${l.requested}`)
      .join(";");
    return `${e.message}${lines ? " (" + lines.trim() + ")" : ""} [${e.status} ${e.code}]`;
  }
  return e instanceof TypeError && /fetch|network/i.test(e.message) ? `network error: ${e.message}` : `error: ${e.message}`;
}

export function keyNote(el, role, k) {
  el.textContent =
    k.source === "make dev"
      ? `This page uses the ${role} dev key ${k.key} (shown by make dev only).`
      : `This page uses the ${role} key you entered (kept in this tab).`;
}

export async function locations(key) {
  return (await call(key, "GET", "/v1/locations")).items || [];
}
