// One import: its five steps advancing live (SSE), the queue message, progress, the bilan, the threshold
// figures, alerts, the unreconciled lists with their CSV export, and the manual wizard while it waits.
import {
  $, LABELS, api, apiText, badge, clear, debounce, download, establishmentName, establishments, formatDate,
  formatDuration, formatPercent, formatTime, h, isTerminal, notice, problemText, requireSession, statusBadge,
  streamEvents, table,
} from "../lib.js";
import { showWizard } from "./wizard.js";

const { site } = await requireSession();
const importId = $("#main").dataset.import;
const path = `/imports/${encodeURIComponent(importId)}`;
let siteInfo = null;
let shownReport = null;
let wizardShown = false;

const STEP_STATES = {
  pending: ["À venir", "wait"], running: ["En cours", "run"], ok: ["Terminé", "ok"],
  warning: ["Terminé avec alertes", "warn"], error: ["Interrompu", "error"], skipped: ["Non exécuté", "wait"],
};
const PROBLEM_STATUSES = ["rejected", "blocked", "failed"];
const RUNNING = ["received", "validating", "checking_thresholds", "creating_groups", "generating_sessions"];

function facts(item) {
  const dl = clear($("#facts"));
  const add = (term, ...value) => dl.append(h("dt", {}, term), h("dd", {}, ...value));
  add("Fichier", h("button", { type: "button", class: "link", id: "source-download", onclick: source }, item.file.name),
    h("span", { class: "hint" }, ` (${(item.file.size / 1024).toLocaleString("fr-FR", { maximumFractionDigits: 1 })} Ko)`));
  add("Déposé le", formatDate(item.created_at));
  add("Type", item.mode === "auto" ? "Automatique" : "Manuel", item.dry_run ? " — simulation" : "");
  add("Établissement", item.establishment ? establishmentName(siteInfo, item.establishment) : "Tous");
  add("Source", item.source === "webdav" ? `Dépôt WebDAV${item.account ? ` (${item.account})` : ""}` : "Dépôt par l'ENT");
  if (item.ended_at) add("Terminé le", formatDate(item.ended_at));
}

async function source() {
  try { await download(`${path}/source`, "source.zip"); } catch (e) { notice(problemText(e), "error"); }
}

function statusLine(item) {
  const el = clear($("#status-line"));
  el.append(h("p", {}, statusBadge(item), " ", h("span", {}, item.label_detail)));
  if (item.message) {
    const kind = PROBLEM_STATUSES.includes(item.status) ? "error" : item.status === "cancelled" ? "warn" : "";
    el.append(h("div", { class: `box ${kind}`, role: kind === "error" ? "alert" : null }, h("p", {}, item.message)));
  }
}

// Seed 001: « x établissements sont déjà en cours d'importation », with the estimated wait.
function queueMessage(item) {
  const el = clear($("#queue"));
  if (item.status === "waiting" && item.queue_position !== null) {
    const x = item.queue_position;
    const text = x === 0 ? "L'import va démarrer dans un instant."
      : x === 1 ? "1 établissement est déjà en cours d'importation."
        : `${x} établissements sont déjà en cours d'importation.`;
    el.append(h("div", { class: "box", id: "queue-message" }, h("p", {}, text),
      item.eta_s !== null ? h("p", {}, `Attente estimée : environ ${formatDuration(item.eta_s)}. Tout cela est normal : il faut patienter.`) : null));
  } else if (RUNNING.includes(item.status) && item.eta_s !== null) {
    el.append(h("p", { class: "hint" }, `Fin estimée dans environ ${formatDuration(item.eta_s)}.`));
  }
  $("#progress").value = item.progress;
  $("#progress-text").textContent = `${item.progress} %`;
}

function steps(item) {
  const list = clear($("#steps"));
  for (const step of item.steps) {
    const [text, kind] = STEP_STATES[step.status] || [step.status, "wait"];
    const times = step.started_at ? `${formatTime(step.started_at)}${step.ended_at ? ` → ${formatTime(step.ended_at)}` : ""}` : "";
    // Seed 001: a message only on problems.
    const problem = (step.status === "warning" || step.status === "error") && step.message;
    list.append(h("li", { "data-stage": step.stage, "data-status": step.status },
      h("strong", {}, step.label || LABELS.steps[step.stage]), badge(text, null, kind),
      h("span", { class: "hint" }, times),
      problem ? h("p", { class: `message box ${step.status === "error" ? "error" : "warn"}` }, step.message) : null));
  }
}

function actions(item) {
  const el = clear($("#import-actions"));
  el.append(h("button", { type: "button", class: "secondary", onclick: source }, "Télécharger le fichier source"));
  if (["waiting", "awaiting_selection"].includes(item.status)) {
    el.append(h("button", {
      type: "button", class: "danger", id: "cancel-import",
      onclick: () => act("cancel", "Abandonner cet import ? Rien n'en sera importé."),
    }, "Abandonner l'import"));
  }
  // Abort and undo (design.md §5): offered where the contract allows them.
  const stopping = item.abort_requested_at && RUNNING.includes(item.status);
  if (stopping) {
    el.append(h("p", { id: "abort-requested", role: "status" },
      `Arrêt demandé le ${formatDate(item.abort_requested_at)} : l'import s'arrêtera à la fin de l'étape en cours, sans rien en écrire.`));
  } else if (item.status === "waiting" || RUNNING.includes(item.status)) {
    el.append(h("button", {
      type: "button", class: "danger", "data-action": "abort",
      onclick: () => act("abort", "Arrêter cet import à la fin de l'étape en cours ? Rien n'en sera écrit."),
    }, "Arrêter l'import"));
  }
  if (item.status === "done" && !item.dry_run && !item.no_change) {
    el.append(h("button", {
      type: "button", class: "danger", "data-action": "undo",
      onclick: () => act("undo", "Annuler cet import ? Les séances, groupes et rattachements redeviennent, à partir de maintenant, ceux d'avant lui."),
    }, "Annuler cet import"));
  }
}

async function act(verb, question) {
  if (!window.confirm(question)) return;
  try {
    const result = await api("POST", `${path}/${verb}`);
    if (verb === "undo" && result && result.import_id) {
      location.assign(`/console/sites/${encodeURIComponent(site)}/imports/${encodeURIComponent(result.import_id)}`);
      return;
    }
    await refresh();
  } catch (e) {
    notice(e.status === 404 || e.status === 405 ? "Cette action n'est pas disponible sur ce serveur." : problemText(e), "error");
  }
}

const CONTROL_STATES = { ok: ["Respecté", "ok"], exceeded: ["Dépassé", "error"], not_computed: ["Non calculé", "wait"],
  disabled: ["Désactivé", "wait"] };

function controlsTable(controls, caption) {
  const rows = Object.entries(controls).map(([name, c]) => {
    const [text, kind] = CONTROL_STATES[c.status] || [c.status, "wait"];
    const check = c.value === null || c.value === undefined;
    return h("tr", { "data-control": name },
      h("th", { scope: "row" }, c.label),
      h("td", { class: "num" }, check ? (c.status === "exceeded" ? "Incohérent" : c.status === "ok" ? "Cohérent" : "—") : formatPercent(c.computed)),
      h("td", { class: "num" }, check ? "—" : `${c.value} %`),
      h("td", {}, c.blocking ? "Bloquant" : "Non bloquant"),
      h("td", {}, badge(text, null, c.status === "exceeded" && !c.blocking ? "warn" : kind)),
      h("td", { class: "hint" }, typeof c.count === "number" && typeof c.existing === "number" && !check ? `${c.count} sur ${c.existing}` : ""));
  });
  return table(["Contrôle", h("th", { scope: "col", class: "num" }, "Calculé"), h("th", { scope: "col", class: "num" }, "Seuil"),
    "Bloquant", "Résultat", "Détail"], rows, { caption });
}

function thresholds(item) {
  const counts = item.counts.thresholds;
  const section = $("#thresholds-section");
  const el = clear($("#thresholds"));
  if (!counts || !counts.establishments) { section.hidden = true; return; }
  section.hidden = false;
  const ests = Object.entries(counts.establishments);
  for (const [est, part] of ests) {
    el.append(controlsTable(part.controls, ests.length > 1 ? establishmentName(siteInfo, est) : null));
  }
}

function alerts(item) {
  const section = $("#alerts-section");
  const list = clear($("#alerts"));
  section.hidden = !item.alerts.length;
  for (const a of item.alerts) {
    list.append(h("li", { class: a.severity === "error" ? "badge-error" : "" },
      a.severity === "error" ? badge("Bloquant", null, "error") : badge("Alerte", null, "warn"), " ",
      a.message || a.label || a.code));
  }
}

const KINDS = {
  teachers: ["Nombre d'enseignants réconciliés", "Enseignants non réconciliés"],
  students: ["Nombre d'élèves réconciliés", "Élèves non réconciliés"],
  classes: ["Nombre de classes rapprochées", "Classes non rapprochées"],
  groups: ["Nombre de groupes rapprochés", "Groupes non rapprochés"],
};

function csvRows(text) {
  return text.split(/\r?\n/).filter((l) => l).map((l) => l.split(";"));
}

function reconciliation(item) {
  const counts = item.counts.groups;
  const section = $("#reconciliation-section");
  const el = clear($("#reconciliation"));
  if (!counts || !counts.teachers) { section.hidden = true; return; }
  section.hidden = false;
  for (const [kind, [matchedText, unmatchedText]] of Object.entries(KINDS)) {
    const c = counts[kind] || { matched: 0, unmatched: 0 };
    const list = h("div", { id: `list-${kind}` });
    const show = h("button", {
      type: "button", class: "secondary",
      onclick: async () => {
        try {
          const rows = csvRows(await apiText(`${path}/unreconciled`, { kind }));
          clear(list).append(rows.length > 1
            ? table(rows[0], rows.slice(1, 201).map((r) => h("tr", {}, r.map((cell) => h("td", {}, cell)))), { caption: unmatchedText })
            : h("p", {}, "Aucun."));
        } catch (e) { clear(list).append(h("p", {}, problemText(e))); }
      },
    }, "Afficher la liste");
    const exportButton = h("button", {
      type: "button", "data-export": kind,
      onclick: async () => {
        try { await download(`${path}/unreconciled?kind=${kind}`, `unreconciled-${kind}.csv`); }
        catch (e) { notice(problemText(e), "error"); }
      },
    }, "Exporter (CSV)");
    el.append(h("div", { "data-kind": kind },
      h("p", {}, `${matchedText} : `, h("strong", { "data-count": "matched" }, String(c.matched))),
      h("p", {}, `${unmatchedText} : `, h("strong", { "data-count": "unmatched" }, String(c.unmatched))),
      h("div", { class: "actions" }, exportButton, c.unmatched ? show : null), list));
  }
}

async function bilan(item) {
  const section = $("#bilan-section");
  if (!isTerminal(item.status)) { section.hidden = true; return; }
  if (shownReport === item.status) return;
  shownReport = item.status;
  try {
    const report = await api("GET", `${path}/report`);
    const el = clear($("#bilan"));
    section.hidden = false;
    el.append(h("p", {}, "Date d'import : ", formatDate(item.created_at)));
    el.append(h("p", {}, "Nombre de tâches effectuées : ", h("strong", { id: "total-tasks" }, String(report.total_tasks))));
    if (report.actions.length) {
      el.append(table(["Action", h("th", { scope: "col", class: "num" }, "Succès"), h("th", { scope: "col", class: "num" }, "Erreur")],
        report.actions.map((a) => h("tr", { "data-action": a.action },
          h("th", { scope: "row" }, a.label || LABELS.actions[a.action] || a.action),
          h("td", { class: "num" }, String(a.success)), h("td", { class: "num" }, String(a.error)))),
        { caption: "Récapitulatif de l'import" }));
      if (report.actions.some((a) => a.error)) {
        el.append(h("div", { class: "box error" }, h("p", {}, "Des actions sont en erreur : contactez l'assistance en précisant le nom de l'établissement, une capture de ce bilan et l'anomalie constatée.")));
      }
    } else {
      el.append(h("p", {}, "Aucune action : rien n'a été écrit."));
    }
  } catch (e) { notice(problemText(e), "error"); }
}

let latest = 0; // refreshes overlap (live events): a slower, older answer never overwrites a newer one

async function refresh() {
  let item;
  const mine = ++latest;
  try { item = await api("GET", path); } catch (e) { notice(problemText(e), "error"); return; }
  if (mine !== latest) return;
  facts(item);
  statusLine(item);
  queueMessage(item);
  actions(item);
  steps(item);
  thresholds(item);
  alerts(item);
  reconciliation(item);
  await bilan(item);
  const waiting = item.status === "awaiting_selection";
  if (waiting && !wizardShown) {
    wizardShown = true;
    showWizard(item, siteInfo, refresh);
  }
  if (!waiting && wizardShown) {
    wizardShown = false;
    $("#wizard").hidden = true;
  }
  $("#main").dataset.status = item.status;
}

(async () => {
  try { siteInfo = await establishments(site); } catch (e) { notice(problemText(e), "error"); }
  await refresh();
  const later = debounce(refresh, 150);
  streamEvents(`${path}/events?live=true`, later, (live) => { if (live) later(); });
})();
