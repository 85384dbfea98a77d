// Exploitation (admin): per stage queue figures refreshed every two seconds, imports waiting and in flight.
import { $, LABELS, api, badge, clear, formatDate, formatTime, h, notice, problemText, requireSession } from "../lib.js";

await requireSession({ admin: true });
const REFRESH_MS = 2000;

function cell(value) { return h("td", { class: "num" }, value === null || value === undefined ? "—" : String(value)); }

async function refresh() {
  try {
    const data = await api("GET", "/ops/queues");
    const body = clear($("#queues tbody"));
    let dead = 0;
    for (const [stage, q] of Object.entries(data.stages)) {
      dead += q.dead_lettered || 0;
      body.append(h("tr", { "data-stage": stage },
        h("th", { scope: "row" }, LABELS.steps[stage] || stage), h("td", { class: "mono" }, q.queue),
        cell(q.ready), cell(q.unacked), cell(q.consumers), cell(q.dead_lettered),
        cell(q.oldest_message_age_s.toLocaleString("fr-FR", { maximumFractionDigits: 1 })),
        cell(q.rate_per_min.toLocaleString("fr-FR", { maximumFractionDigits: 2 }))));
    }
    $("#totals").textContent = `${data.waiting_imports} import(s) en attente, ${data.in_flight_imports} en cours `
      + `(au plus ${data.max_in_flight} à la fois, tous sites confondus).`;
    $("#dlq").textContent = `${dead} message(s) en file de rejet. Le rejeu n'est pas proposé : ce serveur n'a pas de route `
      + "de rejeu ; un import dont l'étape a été rejetée est « Interrompu », le redéposer relance l'import.";
    const active = clear($("#active tbody"));
    for (const a of data.active) {
      active.append(h("tr", { "data-import": a.id },
        h("td", {}, h("a", { href: `/console/sites/${encodeURIComponent(a.site)}/imports/${encodeURIComponent(a.id)}` }, formatDate(a.created_at))),
        h("td", {}, a.site), h("td", {}, a.establishment_label), h("td", {}, a.mode === "auto" ? "Automatique" : "Manuel"),
        h("td", {}, badge(a.label, LABELS.statuses[a.status] ? LABELS.statuses[a.status][1] : a.status)),
        h("td", {}, a.queued_stage ? LABELS.steps[a.queued_stage] : "—"),
        cell(a.queue_position === null ? null : a.queue_position + 1)));
    }
    if (!data.active.length) active.append(h("tr", {}, h("td", { colspan: "7" }, "Aucun import en attente ni en cours.")));
    $("#refreshed").textContent = `Actualisé à ${formatTime(new Date().toISOString())}.`;
  } catch (e) { notice(problemText(e), "error"); }
}

$("#goto-site").addEventListener("submit", (event) => {
  event.preventDefault();
  const site = $("#o-site").value.trim();
  if (!site) return;
  sessionStorage.setItem("edt.site", site);
  location.assign(`/console/sites/${encodeURIComponent(site)}/imports`);
});

refresh();
setInterval(refresh, REFRESH_MS);
