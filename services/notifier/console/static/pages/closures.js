// Périodes de fermeture: an establishment's closure periods, locked (423) while one of its imports runs.
import {
  $, api, clear, debounce, establishments, fillEstablishments, formatDate, h, notice, problemText, requireSession,
  showError, streamEvents,
} from "../lib.js";

const { site } = await requireSession();
const select = $("#c-establishment");
const body = $("#closures tbody");
let counter = 0;

const path = () => `/sites/${encodeURIComponent(site)}/establishments/${encodeURIComponent(select.value)}/closures`;

function periodRow(p = { start: "", end: "", label: "" }) {
  const n = ++counter;
  const tr = h("tr", { "data-period": String(n) },
    h("td", {}, h("label", { for: `start-${n}`, class: "hint" }, "Début"), " ",
      h("input", { type: "date", id: `start-${n}`, value: p.start, required: true, "data-field": "start" })),
    h("td", {}, h("label", { for: `end-${n}`, class: "hint" }, "Fin"), " ",
      h("input", { type: "date", id: `end-${n}`, value: p.end, required: true, "data-field": "end" })),
    h("td", {}, h("label", { for: `label-${n}`, class: "hint" }, "Libellé"), " ",
      h("input", { type: "text", id: `label-${n}`, value: p.label, maxlength: "255", "data-field": "label" })),
    h("td", {}, h("button", { type: "button", class: "danger", "aria-label": `Retirer la période ${n}`,
      onclick: () => tr.remove() }, "Retirer")));
  return tr;
}

function lock(locked) {
  $("#closures-fieldset").disabled = locked;
  const el = clear($("#lock"));
  if (locked) {
    el.append(h("div", { class: "box warn" }, h("p", {}, h("strong", {}, "Périodes verrouillées : "),
      "un import de cet établissement est en cours. Elles pourront être modifiées dès qu'il sera terminé.")));
  }
}

async function load() {
  clear($("#save-result"));
  $("#closures-fieldset").disabled = true; // until this establishment's periods are drawn
  try {
    const data = await api("GET", path());
    clear(body);
    data.items.forEach((p) => body.append(periodRow(p)));
    lock(data.locked);
    $("#updated").textContent = data.updated_at ? `Dernière modification le ${formatDate(data.updated_at)} (${data.updated_by})` : "";
  } catch (e) { notice(problemText(e), "error"); }
}

$("#add-period").addEventListener("click", () => {
  const tr = periodRow();
  body.append(tr);
  tr.querySelector("input").focus();
});

$("#closures-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = clear($("#save-result"));
  const items = [];
  for (const tr of body.querySelectorAll("tr[data-period]")) {
    const get = (f) => tr.querySelector(`[data-field=${f}]`).value;
    if (!get("start") || !get("end")) {
      result.append(h("div", { class: "box error" }, h("p", {}, "Chaque période a une date de début et une date de fin.")));
      tr.querySelector("input").focus();
      return;
    }
    items.push({ start: get("start"), end: get("end"), label: get("label") });
  }
  try {
    await api("PUT", path(), { json: items });
    result.append(h("div", { class: "box ok" }, h("p", {}, `Périodes de fermeture enregistrées (${items.length}).`)));
    const kept = result.firstChild;
    await load();
    result.append(kept);
  } catch (e) {
    if (e.status === 423) lock(true);
    showError(result, e);
  }
});

select.addEventListener("change", load);

(async () => {
  try { fillEstablishments(select, await establishments(site), { keepFirst: false }); } catch (e) { notice(problemText(e), "error"); }
  await load();
  const later = debounce(async () => {
    try { lock((await api("GET", path())).locked); } catch { /* next event */ }
  }, 300);
  streamEvents(`/sites/${encodeURIComponent(site)}/events?live=true`, later);
})();
