// The manual import wizard (seeds 002–003): file check, subjects, classes, groups and courses on/off
// (« Tout activer / Tout désactiver »), teachers and students matched or not (validate, refuse, choose
// another ENT person), then confirm. Every change is saved at once (PUT …/selection).
import { $, api, clear, h, notice, problemText, table } from "../lib.js";

const STEPS = [
  ["file", "1. Fichier"], ["subjects", "2. Matières"], ["classes", "3. Classes"], ["groups", "4. Groupes"],
  ["courses", "5. Cours"], ["teachers", "6. Enseignants"], ["students", "7. Élèves"], ["confirm", "8. Confirmation"],
];
const STATES = { known: "Déjà importé", new: "Nouveau", deactivated: "Désactivé au dernier import manuel" };
const REASONS = { not_found: "Absent de l'annuaire ENT", ambiguous: "Plusieurs personnes possibles",
  no_directory: "Aucun annuaire ENT déposé", refused: "Refusé" };
const PAGE_SIZE = 25;

export async function showWizard(item, siteInfo, onChange) {
  const section = $("#wizard");
  const importPath = `/imports/${encodeURIComponent(item.id)}`;
  let preview;
  try { preview = await api("GET", `${importPath}/preview`); } catch (e) { notice(problemText(e), "error"); return; }
  if (preview.status !== "awaiting") return;
  let validation = null;
  try { validation = await api("GET", `${importPath}/validation`); } catch { /* shown without it */ }
  section.hidden = false;
  const multi = preview.establishments.length > 1;
  let estIndex = 0;
  let step = 0;
  const pages = {};
  const filters = {};
  let latest = 0; // saves may overlap: only the answer to the last one is drawn (it holds every change)

  const est = () => preview.establishments[estIndex];
  const selection = () => preview.selection[est().establishment] || {};

  async function save(patch) {
    const body = multi ? { establishments: { [est().establishment]: patch } } : patch;
    // Keyboard users keep their place: the row (or button) they acted on gets the focus back.
    const active = document.activeElement;
    const row = active && active.closest ? active.closest("tr[data-ident]") : null;
    const ident = row ? row.dataset.ident : null;
    const text = active ? active.textContent : null;
    const mine = ++latest;
    try {
      const result = await api("PUT", `${importPath}/selection`, { json: body });
      if (mine !== latest) return;
      preview.selection = result.selection;
      render();
      const again = ident ? $(`#wizard-body tr[data-ident="${CSS.escape(ident)}"] button:not(:disabled)`)
        : [...document.querySelectorAll("#wizard-body button")].find((b) => b.textContent === text);
      if (again) again.focus();
    } catch (e) { notice(problemText(e), "error"); }
  }

  function nav() {
    const list = clear($("#wizard-nav"));
    STEPS.forEach(([key, label], i) => list.append(h("li", {}, h("button", {
      type: "button", "data-step": key, "aria-current": i === step ? "step" : null,
      onclick: () => { step = i; render(); $("#wizard-body").focus(); },
    }, label))));
  }

  function fileStep(body) {
    const meta = (validation && validation.meta) || {};
    const encrypted = !!meta.encrypted;
    body.append(h("h3", {}, "Vérification du fichier"), h("dl", { class: "facts" },
      h("dt", {}, "Importation du fichier"), h("dd", { id: "w-uai" }, meta.uai || est().establishment),
      h("dt", {}, "Identifiant unique"), h("dd", { class: "mono" }, item.id),
      h("dt", {}, "Logiciel"), h("dd", {}, meta.software || meta.product || "—"),
      h("dt", {}, "Fichier chiffré"), h("dd", {}, encrypted ? "Oui" : "Non"),
      h("dt", {}, "Clé présente"), h("dd", {}, encrypted ? "Oui" : "Sans objet (fichier en clair)"),
      h("dt", {}, "Établissement"), h("dd", {}, est().establishment)));
    if (multi) {
      body.append(h("div", { class: "field" }, h("label", { for: "w-est" }, "Établissement à vérifier"),
        h("select", { id: "w-est", onchange: (e) => { estIndex = Number(e.target.value); render(); } },
          preview.establishments.map((x, i) => h("option", { value: String(i), selected: i === estIndex }, x.establishment)))));
    }
  }

  function identOf(kind, row) { return kind === "courses" ? row.key : row.ident; }

  function selectable(body, kind) {
    const rows = est()[kind] || [];
    const chosen = selection()[kind] || {};
    const idents = rows.map((r) => identOf(kind, r));
    const search = filters[kind] || "";
    const shown = rows.filter((r) => !search || JSON.stringify(r).toLowerCase().includes(search.toLowerCase()));
    const pageNo = Math.min(pages[kind] || 0, Math.max(0, Math.ceil(shown.length / PAGE_SIZE) - 1));
    const on = idents.filter((i) => chosen[i] !== false).length;
    body.append(h("p", { id: `w-${kind}-count` }, `${on} activé(s) sur ${rows.length}.`));
    body.append(h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => save({ [kind]: Object.fromEntries(idents.map((i) => [i, true])) }) }, "Tout activer"),
      h("button", { type: "button", class: "secondary", onclick: () => save({ [kind]: Object.fromEntries(idents.map((i) => [i, false])) }) }, "Tout désactiver"),
      h("label", { for: `w-${kind}-search` }, "Rechercher"),
      searchBox(kind, search)));
    const head = kind === "subjects" ? ["Matière (EDT)", "Code", "État", "Sélection", "Actions"]
      : kind === "courses" ? ["Cours", "Type", "Enseignants", "État", "Sélection", "Actions"]
        : ["EDT", "ENT", "État", "Sélection", "Actions"];
    const trs = shown.slice(pageNo * PAGE_SIZE, (pageNo + 1) * PAGE_SIZE).map((r) => {
      const ident = identOf(kind, r);
      const active = chosen[ident] !== false;
      const name = kind === "subjects" ? `${r.label} (Id : ${r.ident})` : kind === "courses" ? r.label : `${r.name} (Id : ${r.ident})`;
      const cells = kind === "subjects" ? [r.code || "—"]
        : kind === "courses" ? [r.kind === "group" ? "Groupe" : "Classe", String((r.teachers || []).length)]
          : [r.ent_id ? `Rapproché (${r.ent_id})` : (REASONS[r.reason] || "Non rapproché")];
      return h("tr", { class: `${active ? "on" : "off"} ${r.state === "new" ? "new" : ""}`, "data-ident": ident },
        h("th", { scope: "row" }, name), cells.map((c) => h("td", {}, c)), h("td", {}, STATES[r.state] || r.state || ""),
        h("td", { "data-selected": active ? "on" : "off" }, active ? "Activé" : "Désactivé"),
        h("td", {}, h("div", { class: "actions" },
          h("button", { type: "button", class: "secondary", disabled: active, "aria-label": `Activer ${name}`,
            onclick: () => save({ [kind]: { [ident]: true } }) }, "Activer"),
          h("button", { type: "button", class: "secondary", disabled: !active, "aria-label": `Désactiver ${name}`,
            onclick: () => save({ [kind]: { [ident]: false } }) }, "Désactiver"))));
    });
    body.append(table(head, trs));
    pager(body, kind, shown.length, pageNo);
  }

  // Filters the list on Enter (or when the field is left); the field keeps the focus.
  function searchBox(kind, search) {
    const apply = (value) => {
      filters[kind] = value;
      pages[kind] = 0;
      render();
      const again = $(`#w-${kind}-search`);
      if (again) { again.focus(); again.setSelectionRange(value.length, value.length); }
    };
    return h("input", { type: "search", id: `w-${kind}-search`, value: search,
      onkeydown: (e) => { if (e.key === "Enter") { e.preventDefault(); apply(e.target.value); } },
      onchange: (e) => { if (e.target.value !== (filters[kind] || "")) apply(e.target.value); } });
  }

  function pager(body, kind, total, pageNo) {
    const count = Math.ceil(total / PAGE_SIZE);
    if (count <= 1) return;
    body.append(h("nav", { class: "pager", "aria-label": "Pages de la liste" },
      h("button", { type: "button", class: "secondary", disabled: pageNo === 0, onclick: () => { pages[kind] = pageNo - 1; render(); } }, "« Précédent"),
      h("span", {}, `Page ${pageNo + 1} sur ${count}`),
      h("button", { type: "button", class: "secondary", disabled: pageNo >= count - 1, onclick: () => { pages[kind] = pageNo + 1; render(); } }, "Suivant »")));
  }

  // The match a person ends up with: the computed one, or the person's decision on top of it.
  function effective(kind, row) {
    const d = ((selection().persons || {})[kind] || {})[row.ident];
    if (d && d.decision === "refuse") return { matched: false, text: "Refusé", decided: "refuse" };
    if (d && (d.decision === "override" || d.decision === "accept")) {
      return { matched: true, text: `${d.decision === "accept" ? "Validé" : "Choisi"} : ${d.ent_id}`, decided: d.decision, ent: d.ent_id };
    }
    if (row.status === "matched") {
      const ent = row.ent ? `${row.ent.last_name} ${row.ent.first_name}` : "";
      return { matched: true, text: `Reconnu : ${ent} (${row.ent_id})`, decided: null, ent: row.ent_id };
    }
    return { matched: false, text: `Non reconnu — ${REASONS[row.reason] || row.reason}`, decided: null };
  }

  function persons(body, kind) {
    const rows = (est().persons || {})[kind] || [];
    const search = filters[kind] || "";
    const shown = rows.filter((r) => !search || `${r.last_name} ${r.first_name} ${r.ident}`.toLowerCase().includes(search.toLowerCase()));
    const pageNo = Math.min(pages[kind] || 0, Math.max(0, Math.ceil(shown.length / PAGE_SIZE) - 1));
    const matched = rows.filter((r) => effective(kind, r).matched).length;
    body.append(h("p", { id: `w-${kind}-count` }, `${matched} reconnu(s) sur ${rows.length}. L'emploi du temps des personnes non reconnues ne sera pas importé ; vérifiez l'orthographe ou la date de naissance.`));
    body.append(h("div", { class: "actions" }, h("label", { for: `w-${kind}-search` }, "Rechercher"),
      searchBox(kind, search)));
    const trs = shown.slice(pageNo * PAGE_SIZE, (pageNo + 1) * PAGE_SIZE).map((r) => {
      const e = effective(kind, r);
      const name = `${r.last_name} ${r.first_name}`;
      const pickId = `w-pick-${kind}-${r.ident}`;
      const options = (r.candidates || []).map((c) => h("option", { value: c.id },
        `${c.last_name} ${c.first_name}${c.birth_date ? ` (${c.birth_date})` : ""} — ${c.id}`));
      const canAccept = r.status === "matched" || e.ent;
      return h("tr", { class: e.matched ? "on" : "off", "data-ident": r.ident },
        h("th", { scope: "row" }, name, r.birth_date ? h("span", { class: "hint" }, ` (${r.birth_date})`) : null),
        h("td", { "data-match": e.matched ? "matched" : "unmatched" }, e.text),
        h("td", {}, h("div", { class: "actions" },
          canAccept ? h("button", { type: "button", class: "secondary", disabled: e.decided === "accept", "aria-label": `Valider ${name}`,
            onclick: () => save({ persons: { [kind]: { [r.ident]: { decision: "accept", ent_id: e.ent || r.ent_id } } } }) }, "Valider") : null,
          h("button", { type: "button", class: "secondary", disabled: e.decided === "refuse", "aria-label": `Refuser ${name}`,
            onclick: () => save({ persons: { [kind]: { [r.ident]: "refuse" } } }) }, "Refuser"),
          options.length ? h("label", { for: pickId, class: "hint" }, "Choisir") : null,
          options.length ? h("select", { id: pickId }, options) : null,
          options.length ? h("button", { type: "button", class: "secondary", "aria-label": `Associer ${name} à la personne choisie`,
            onclick: () => save({ persons: { [kind]: { [r.ident]: { decision: "override", ent_id: $(`#${CSS.escape(pickId)}`).value } } } }) }, "Associer") : null,
          e.decided ? h("button", { type: "button", class: "link", onclick: () => save({ persons: { [kind]: { [r.ident]: "auto" } } }) }, "Rétablir") : null)));
    });
    body.append(table(["Nom Prénom (EDT)", "Annuaire ENT", "Actions"], trs));
    pager(body, kind, shown.length, pageNo);
  }

  function confirmStep(body) {
    const sel = selection();
    const count = (kind, key = "ident") => {
      const rows = est()[kind] || [];
      return `${rows.filter((r) => (sel[kind] || {})[r[key]] !== false).length} sur ${rows.length}`;
    };
    body.append(h("h3", {}, "Résumé de l'import"), h("dl", { class: "facts", id: "w-summary" },
      h("dt", {}, "Matières activées"), h("dd", {}, count("subjects")),
      h("dt", {}, "Classes activées"), h("dd", {}, count("classes")),
      h("dt", {}, "Groupes activés"), h("dd", {}, count("groups")),
      h("dt", {}, "Cours activés"), h("dd", {}, count("courses", "key")),
      ...["teachers", "students"].flatMap((kind) => {
        const rows = (est().persons || {})[kind] || [];
        return [h("dt", {}, kind === "teachers" ? "Enseignants reconnus" : "Élèves reconnus"),
          h("dd", {}, `${rows.filter((r) => effective(kind, r).matched).length} sur ${rows.length}`)];
      })));
    body.append(h("p", {}, "Les seuils calculés pour cet import sont présentés plus bas (« Seuils et contrôles ») : un import manuel n'est jamais bloqué, à vous de décider."));
    body.append(h("p", {}, "La génération des séances peut durer plusieurs minutes ; une file d'attente peut se former si d'autres établissements importent au même moment."));
    body.append(h("div", { class: "actions" }, h("button", {
      type: "button", id: "w-confirm",
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          await api("POST", `${importPath}/confirm`);
          notice("Votre demande a bien été prise en compte : l'import continue, son statut s'affiche ci-dessous.", "ok");
          section.hidden = true;
          await onChange();
        } catch (e) { ev.target.disabled = false; notice(problemText(e), "error"); }
      },
    }, "Confirmer l'import")));
  }

  function render() {
    nav();
    const body = clear($("#wizard-body"));
    body.setAttribute("tabindex", "-1");
    const [key, label] = STEPS[step];
    body.append(h("h3", { id: "wizard-step-title" }, `Sélection — ${label.replace(/^\d+\. /, "")}`));
    if (key === "file") fileStep(body);
    else if (["subjects", "classes", "groups", "courses"].includes(key)) selectable(body, key);
    else if (key === "teachers" || key === "students") persons(body, key);
    else confirmStep(body);
    const actions = clear($("#wizard-actions"));
    if (step > 0) actions.append(h("button", { type: "button", class: "secondary", onclick: () => { step -= 1; render(); } }, "Précédent"));
    if (step < STEPS.length - 1) actions.append(h("button", { type: "button", id: "w-next", onclick: () => { step += 1; render(); } }, "Suivant"));
  }

  render();
}
