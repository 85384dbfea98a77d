// The console's common code: the session (token in this tab's sessionStorage), REST calls with the bearer
// token, the live event streams (SSE read with fetch, since EventSource cannot send a header), downloads,
// DOM building (never innerHTML: the API's data is text) and French formatting.

export const LABELS = JSON.parse(document.getElementById("edt-labels").textContent);
const KEY = { token: "edt.token", site: "edt.site", user: "edt.user", admin: "edt.admin" };

export const session = {
  get token() { return sessionStorage.getItem(KEY.token); },
  get site() { return sessionStorage.getItem(KEY.site); },
  get user() { return sessionStorage.getItem(KEY.user) || ""; },
  get admin() { return sessionStorage.getItem(KEY.admin) === "1"; },
  save({ token, site, user, admin }) {
    sessionStorage.setItem(KEY.token, token);
    sessionStorage.setItem(KEY.site, site || "");
    sessionStorage.setItem(KEY.user, user || "");
    sessionStorage.setItem(KEY.admin, admin ? "1" : "0");
  },
  clear() { Object.values(KEY).forEach((k) => sessionStorage.removeItem(k)); },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `Erreur ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  if (session.token) h.Authorization = `Bearer ${session.token}`;
  if (session.user) h["X-EDT-User"] = asciiHeader(session.user);
  return h;
}

// HTTP header values are Latin-1: keep the name readable, drop what cannot be sent.
function asciiHeader(text) {
  return text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").replace(/[^\x20-\x7e]/g, "");
}

async function problemOf(response) {
  try { return await response.json(); } catch { return null; }
}

// A REST call under /api/v1: the JSON answer, or an ApiError carrying the problem+json.
export async function api(method, path, { json, body, contentType, query } = {}) {
  const url = new URL(`/api/v1${path}`, location.origin);
  Object.entries(query || {}).forEach(([k, v]) => { if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v); });
  const extra = {};
  let payload = body;
  if (json !== undefined) { payload = JSON.stringify(json); extra["Content-Type"] = "application/json"; }
  if (contentType) extra["Content-Type"] = contentType;
  const response = await fetch(url, { method, headers: headers(extra), body: payload });
  if (response.status === 401 && path !== "/healthz") {
    signOut(true);
    throw new ApiError(401, await problemOf(response));
  }
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export async function apiText(path, query) {
  const url = new URL(`/api/v1${path}`, location.origin);
  Object.entries(query || {}).forEach(([k, v]) => url.searchParams.set(k, v));
  const response = await fetch(url, { headers: headers({ Accept: "text/csv, */*" }) });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  return response.text();
}

// Download an API resource that needs the token (a plain link cannot send it): fetched, then saved.
export async function download(path, fallbackName) {
  const response = await fetch(`/api/v1${path}`, { headers: headers({ Accept: "*/*" }) });
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  const blob = await response.blob();
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = match ? match[1] : fallbackName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

// Server-Sent Events of /api/v1{path} with the token; reconnects with Last-Event-ID. Returns a stop function.
export function streamEvents(path, onEvent, onState) {
  let lastId = null;
  let stopped = false;
  let controller = null;
  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (lastId) h["Last-Event-ID"] = lastId;
        const response = await fetch(`/api/v1${path}`, { headers: h, signal: controller.signal });
        if (!response.ok) throw new ApiError(response.status, await problemOf(response));
        onState && onState(true);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
            const event = { id: null, event: "message", data: "" };
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith(":")) continue;
              const [field, ...rest] = line.split(":");
              const text = rest.join(":").replace(/^ /, "");
              if (field === "id") event.id = text;
              else if (field === "event") event.event = text;
              else if (field === "data") event.data += (event.data ? "\n" : "") + text;
            }
            if (event.id) lastId = event.id;
            if (event.data) {
              try { onEvent(JSON.parse(event.data), event); } catch (e) { console.error(e); }
            }
          }
        }
      } catch (e) {
        if (stopped || e.name === "AbortError") return;
        if (e instanceof ApiError && (e.status === 401 || e.status === 404)) return;
      }
      onState && onState(false);
      if (!stopped) await new Promise((r) => setTimeout(r, 1000));
    }
  }
  run();
  return () => { stopped = true; if (controller) controller.abort(); };
}

// h("td", {class: "num"}, "12") — an element with attributes (on* as listeners) and children (text or nodes).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }
export function $(selector) { return document.querySelector(selector); }

const dateFormat = new Intl.DateTimeFormat("fr-FR", { timeZone: LABELS.timezone, day: "2-digit", month: "2-digit",
  year: "numeric" });
const timeFormat = new Intl.DateTimeFormat("fr-FR", { timeZone: LABELS.timezone, hour: "2-digit", minute: "2-digit" });
const secondsFormat = new Intl.DateTimeFormat("fr-FR", { timeZone: LABELS.timezone, hour: "2-digit",
  minute: "2-digit", second: "2-digit" });

// "23/07/2014 à 16:54", as the seeds' history shows it.
export function formatDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return `${dateFormat.format(d)} à ${timeFormat.format(d)}`;
}
export function formatTime(iso) { return iso ? secondsFormat.format(new Date(iso)) : "—"; }
export function formatDay(isoDate) {
  if (!isoDate) return "—";
  const [y, m, d] = isoDate.split("-");
  return `${d}/${m}/${y}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")}`;
}

export function formatPercent(value) {
  if (value === null || value === undefined) return "—";
  return `${Number(value).toLocaleString("fr-FR", { maximumFractionDigits: 1 })} %`;
}

// The seed's short label of a status and the look of its badge.
const KIND_OF_LABEL = { "Fait": "ok", "Interrompu": "error", "En attente": "wait", "En cours": "run", "Remplacé": "wait" };
const ICONS = {
  ok: "M4 12l5 5L20 6",
  error: "M6 6l12 12M18 6L6 18",
  warn: "M12 4l9 16H3zM12 10v4M12 17v.5",
  run: "M12 3a9 9 0 1 0 9 9M12 3v4M21 12h-4",
  wait: "M12 3a9 9 0 1 0 .01 0M12 7v5l3 3",
};

export function icon(kind) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[kind] || ICONS.wait);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2.5");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  return svg;
}

export function badge(label, title, kind) {
  const k = kind || KIND_OF_LABEL[label] || "wait";
  return h("span", { class: `badge ${k}`, title: title || null, "data-label": label }, icon(k), label);
}

export function statusBadge(item) { return badge(item.label, item.label_detail); }

export function isTerminal(status) { return LABELS.terminal.includes(status); }

export function notice(message, kind = "info") {
  const el = clear($("#notice"));
  if (!message) return;
  el.append(h("div", { class: `box ${kind === "info" ? "" : kind}` }, h("p", {}, message)));
}

export function problemText(error) {
  if (!(error instanceof ApiError)) return `Erreur inattendue : ${error.message || error}`;
  const p = error.problem;
  let text = p.detail || p.title || `Erreur ${error.status}`;
  if (Array.isArray(p.errors) && p.errors.length) {
    const first = p.errors.slice(0, 5).map((e) => `${(e.loc || []).join(".")}${e.line ? ` (ligne ${e.line})` : ""} : ${e.msg}`);
    text += ` — ${first.join(" ; ")}`;
  }
  return text;
}

export function showError(target, error) {
  clear(target).append(h("div", { class: "box error" }, h("p", {}, problemText(error))));
}

// Copy a text to the clipboard, telling the person it worked (or what to do when it cannot).
export async function copy(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    const area = h("textarea", { "aria-hidden": "true" }, text);
    document.body.append(area);
    area.select();
    ok = document.execCommand("copy");
    area.remove();
  }
  const before = button.textContent;
  button.textContent = ok ? "Copié ✓" : "Copie impossible : sélectionnez l'adresse";
  setTimeout(() => { button.textContent = before; }, 2500);
}

export function signOut(expired) {
  session.clear();
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/console/?${expired ? "expired=1&" : ""}next=${next}`);
}

// A page that cannot go on (leaving, or not for this token) waits here for ever instead of raising.
const never = () => new Promise(() => {});

// Every page but the sign-in: a session is needed; the layout shows who is signed in. Pages `await` it.
export async function requireSession({ admin = false } = {}) {
  if (!session.token) { signOut(false); return never(); }
  const main = $("#main");
  const site = main.dataset.site;
  if (site && !session.admin && session.site !== site) {
    location.assign(`/console/sites/${encodeURIComponent(session.site)}/imports`);
    return never();
  }
  if (admin && !session.admin) {
    notice("Cette page demande le jeton d'administration.", "error");
    return never();
  }
  document.querySelectorAll("[data-admin-only]").forEach((el) => { el.hidden = !session.admin; });
  const who = $("#who");
  who.hidden = false;
  who.textContent = `${session.admin ? "Administration" : `Site ${session.site}`}${session.user ? ` — ${session.user}` : ""}`;
  const out = $("#sign-out");
  out.hidden = false;
  out.addEventListener("click", () => signOut(false));
  return { site };
}

export async function establishments(site) {
  const found = await api("GET", `/sites/${encodeURIComponent(site)}`);
  return found;
}

export function establishmentName(siteInfo, id) {
  if (!id) return "Tous";
  const e = (siteInfo && siteInfo.establishments || []).find((x) => x.id === id);
  return e ? `${e.name} (${e.id})` : id;
}

export function fillEstablishments(select, siteInfo, { keepFirst = true } = {}) {
  if (!keepFirst) clear(select);
  for (const e of siteInfo.establishments) {
    select.append(h("option", { value: e.id }, `${e.name} — ${e.uai} (${e.id})`));
  }
}

export function table(head, rows, { caption } = {}) {
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, head.map((c) => (typeof c === "string" ? h("th", { scope: "col" }, c) : c)))),
    h("tbody", {}, rows)));
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}
