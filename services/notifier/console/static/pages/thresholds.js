// Seuils et contrôles: value and blocking per control, the strong warning on closure coherence, who changed
// what (audit), locked with a clear message while an import of the site runs (the API answers 423).
import {
  $, api, clear, debounce, formatDate, h, notice, problemText, requireSession, showError, streamEvents,
} from "../lib.js";

const { site } = await requireSession();
const base = `/sites/${encodeURIComponent(site)}/thresholds`;
const rows = $("#controls tbody");
let current = null;
let auditCursor = null;
const FIELDS = { value: "Valeur", blocking: "Bloquant", enabled: "Activé", addresses: "Adresses" };

function defaults(c) {
  const blocking = c.default_blocking ? "Bloquant par défaut" : "Non bloquant par défaut";
  return c.kind === "check" ? `(${blocking})` : `(${c.default_value}% - ${blocking})`;
}

function render(data) {
  current = data;
  clear(rows);
  for (const [name, c] of Object.entries(data.controls)) {
    const valueCell = c.kind === "check"
      ? h("td", {}, h("input", { type: "checkbox", id: `enabled-${name}`, checked: c.enabled, "data-field": "enabled" }),
        " ", h("label", { for: `enabled-${name}` }, "Contrôle activé"))
      : h("td", {}, h("input", { type: "number", id: `value-${name}`, min: "0", max: "100", step: "1", value: String(c.value),
        required: true, "data-field": "value", "aria-label": `${c.label} : valeur en %` }));
    rows.append(h("tr", { "data-control": name },
      h("th", { scope: "row" }, c.kind === "check" ? h("label", { for: `enabled-${name}` }, c.label) : h("label", { for: `value-${name}` }, c.label)),
      valueCell,
      h("td", {}, h("input", { type: "checkbox", id: `blocking-${name}`, checked: c.blocking, "data-field": "blocking" }),
        " ", h("label", { for: `blocking-${name}` }, "Bloquant")),
      h("td", { class: "hint" }, defaults(c))));
  }
  $("#emails").value = (data.notification_emails || []).join("\n");
  $("#updated").textContent = data.updated_at ? `Dernière modification le ${formatDate(data.updated_at)} (${data.updated_by})` : "Valeurs par défaut";
  lock(data.locked);
  coherenceWarning();
}

function lock(locked) {
  $("#thresholds-fieldset").disabled = locked;
  const el = clear($("#lock"));
  if (locked) {
    el.append(h("div", { class: "box warn" }, h("p", {}, h("strong", {}, "Seuils verrouillés : "),
      "un import de ce site est en cours. Les seuils pourront être modifiés dès qu'il sera terminé ; cette page se met à jour d'elle-même.")));
  }
}

function coherenceWarning() {
  const blocking = $("#blocking-closure_coherence");
  const enabled = $("#enabled-closure_coherence");
  const weak = (blocking && !blocking.checked) || (enabled && !enabled.checked);
  $("#coherence-warning").hidden = !weak;
}

rows.addEventListener("change", coherenceWarning);

function changes() {
  const controls = {};
  for (const tr of rows.querySelectorAll("tr[data-control]")) {
    const name = tr.dataset.control;
    const before = current.controls[name];
    const patch = {};
    for (const input of tr.querySelectorAll("[data-field]")) {
      const field = input.dataset.field;
      const value = input.type === "checkbox" ? input.checked : Number(input.value);
      if (value !== before[field]) patch[field] = value;
    }
    if (Object.keys(patch).length) controls[name] = patch;
  }
  return controls;
}

$("#thresholds-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = clear($("#save-result"));
  const bad = [...rows.querySelectorAll("input[type=number]")].find((i) => !i.checkValidity());
  if (bad) { result.append(h("div", { class: "box error" }, h("p", {}, "Chaque valeur est un pourcentage entier entre 0 et 100."))); bad.focus(); return; }
  const emails = $("#emails").value.split(/\s+/).filter((x) => x);
  const body = { controls: changes() };
  if (emails.join("\n") !== (current.notification_emails || []).join("\n")) body.notification_emails = emails;
  if (!Object.keys(body.controls).length && !body.notification_emails) {
    result.append(h("div", { class: "box" }, h("p", {}, "Aucune modification à enregistrer.")));
    return;
  }
  try {
    const saved = await api("PUT", base, { json: body });
    render(saved);
    result.append(h("div", { class: "box ok" }, h("p", {}, "Seuils enregistrés.")));
    for (const w of saved.warnings || []) result.append(h("div", { class: "box error", role: "alert" }, h("p", {}, w.message)));
    loadAudit(true);
  } catch (e) {
    if (e.status === 423) lock(true);
    showError(result, e);
  }
});

async function loadAudit(fresh) {
  if (fresh) { auditCursor = null; clear($("#audit tbody")); }
  try {
    const page = await api("GET", `${base}/audit`, { query: { limit: 20, cursor: auditCursor || undefined } });
    const labels = current ? current.controls : {};
    for (const a of page.items) {
      $("#audit tbody").append(h("tr", {},
        h("td", {}, formatDate(a.at)), h("td", {}, a.actor),
        h("td", {}, labels[a.control] ? labels[a.control].label : a.control), h("td", {}, FIELDS[a.field] || a.field),
        h("td", {}, show(a.old)), h("td", {}, show(a.new))));
    }
    if (fresh && !page.items.length) $("#audit tbody").append(h("tr", {}, h("td", { colspan: "6" }, "Aucune modification.")));
    auditCursor = page.next_cursor;
    $("#audit-more").hidden = !auditCursor;
  } catch (e) { notice(problemText(e), "error"); }
}

function show(value) {
  if (value === true) return "Oui";
  if (value === false) return "Non";
  if (Array.isArray(value)) return value.join(", ") || "—";
  return value === null || value === undefined ? "—" : String(value);
}

$("#audit-more").addEventListener("click", () => loadAudit(false));

async function load() {
  try { render(await api("GET", base)); } catch (e) { notice(problemText(e), "error"); }
}

(async () => {
  await load();
  await loadAudit(true);
  // The lock follows the site's imports: re-read when one of them changes status.
  const later = debounce(async () => {
    try {
      const fresh = await api("GET", base);
      if (fresh.locked !== current.locked) { current.locked = fresh.locked; lock(fresh.locked); }
    } catch { /* next event */ }
  }, 300);
  streamEvents(`/sites/${encodeURIComponent(site)}/events?live=true`, later, (live) => { if (live) later(); });
  // While locked, look again now and then too: the lock ends when threshold control has seen the import end,
  // which may come a moment after the import's last event.
  setInterval(() => { if (current && current.locked) later(); }, 2000);
})();
