// Annuaire ENT and identifiants PRONOTE: upload each file, see what is stored (counts).
import {
  $, api, clear, establishments, fillEstablishments, formatDate, h, notice, problemText, requireSession, showError,
} from "../lib.js";

const { site } = await requireSession();
const select = $("#d-establishment");
const base = () => `/sites/${encodeURIComponent(site)}/establishments/${encodeURIComponent(select.value)}`;

function mediaType(file) {
  return /\.json$/i.test(file.name) || file.type === "application/json" ? "application/json" : "text/csv";
}

function counts(c) {
  return h("dl", { class: "facts", id: "directory-counts" },
    h("dt", {}, "Enseignants"), h("dd", { "data-count": "teacher" }, String(c.teacher)),
    h("dt", {}, "Personnels"), h("dd", { "data-count": "staff" }, String(c.staff)),
    h("dt", {}, "Élèves"), h("dd", { "data-count": "student" }, String(c.student)),
    h("dt", {}, "Classes"), h("dd", { "data-count": "classes" }, String(c.classes)),
    h("dt", {}, "Groupes"), h("dd", { "data-count": "groups" }, String(c.groups)),
    h("dt", {}, "Identifiants PRONOTE"), h("dd", { "data-count": "pronote_ids" }, String(c.pronote_ids ?? 0)));
}

async function load() {
  const el = clear($("#current"));
  try {
    const d = await api("GET", `${base()}/directory`, { query: { limit: 1 } });
    el.append(h("p", {}, `Annuaire déposé le ${formatDate(d.updated_at)}.`), counts(d.counts));
  } catch (e) {
    el.append(h("p", {}, e.status === 404 ? "Aucun annuaire ENT déposé pour cet établissement : le rapprochement est impossible tant qu'il manque." : problemText(e)));
  }
}

$("#directory-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = clear($("#directory-result"));
  const file = $("#d-file").files[0];
  if (!file) { result.append(h("div", { class: "box error" }, h("p", {}, "Choisissez le fichier de l'annuaire."))); return; }
  const mode = document.querySelector("input[name=d-mode]:checked").value;
  try {
    const r = await api("PUT", `${base()}/directory?mode=${mode}`, { body: await file.arrayBuffer(), contentType: mediaType(file) });
    const got = r.received;
    result.append(h("div", { class: "box ok" }, h("p", {}, `Annuaire déposé : ${got.persons} personnes (${got.teacher} enseignants, ${got.staff} personnels, ${got.student} élèves), ${got.classes} classes, ${got.groups} groupes reçus.`)));
    await load();
  } catch (e) { showError(result, e); }
});

$("#idpn-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = clear($("#idpn-result"));
  const file = $("#i-file").files[0];
  if (!file) { result.append(h("div", { class: "box error" }, h("p", {}, "Choisissez le fichier des identifiants."))); return; }
  const mode = document.querySelector("input[name=i-mode]:checked").value;
  try {
    const r = await api("POST", `${base()}/pronote-ids?mode=${mode}`, { body: await file.arrayBuffer(), contentType: mediaType(file) });
    result.append(h("div", { class: "box ok" }, h("p", {}, `${r.received} identifiant(s) reçu(s) ; ${r.pronote_ids} association(s) enregistrée(s) pour l'établissement.`)));
    await load();
  } catch (e) { showError(result, e); }
});

select.addEventListener("change", load);

(async () => {
  try { fillEstablishments(select, await establishments(site), { keepFirst: false }); } catch (e) { notice(problemText(e), "error"); }
  await load();
})();
