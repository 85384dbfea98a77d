// Exploitation (admin): per stage queue figures refreshed every two seconds, imports waiting and in flight,
// the dead-letter queues with their replay.
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
    await deadLetters(dead);
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

async function deadLetters(dead) {
  const data = await api("GET", "/ops/dead-letters");
  const body = clear($("#dead-letters tbody"));
  let listed = 0;
  for (const q of data.queues) {
    q.messages.forEach((m, i) => {
      listed += 1;
      const replay = i ? h("td", {}) : h("td", {}, h("button", {
        type: "button", class: "secondary", "data-replay": q.queue, "aria-label": `Rejouer la file ${q.queue}`,
        onclick: async () => {
          try {
            const done = await api("POST", `/ops/dead-letters/${encodeURIComponent(q.queue)}/replay`);
            notice(`${done.replayed} message(s) renvoyé(s) dans la file ${done.queue}.`, "ok");
            await refresh();
          } catch (e) { notice(problemText(e), "error"); }
        } }, "Rejouer"));
      body.append(h("tr", { "data-queue": q.queue, "data-import": m.import_id || "" },
        h("td", { class: "mono" }, q.queue),
        h("td", {}, m.import_id && m.site
          ? h("a", { href: `/console/sites/${encodeURIComponent(m.site)}/imports/${encodeURIComponent(m.import_id)}` }, m.import_id)
          : "—"),
        h("td", {}, m.site || "—"), cell(m.attempts), h("td", {}, m.reason || "—"), replay));
    });
  }
  if (!listed) body.append(h("tr", {}, h("td", { colspan: "6" }, "Aucun message rejeté.")));
  $("#dlq").textContent = `${listed} message(s) en file de rejet${dead > listed ? ` (${dead} selon le courtier)` : ""}.`;
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
