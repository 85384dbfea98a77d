// Historique des imports: the site's history with filters, cursor pages, and live updates (site SSE).
import {
  $, api, clear, debounce, download, establishmentName, establishments, fillEstablishments, formatDate, h,
  notice, problemText, requireSession, statusBadge, streamEvents,
} from "../lib.js";

const { site } = await requireSession();
const body = $("#history tbody");
const form = $("#filters");
const params = new URLSearchParams(location.search);
let siteInfo = null;
let cursors = [null]; // the cursor of each page seen, so that « Précédent » goes back
let page = 0;
let nextCursor = null;
let latest = 0; // loads overlap (filters, live events): only the last one asked for is drawn

function filters() {
  return {
    establishment: $("#f-establishment").value, status: $("#f-status").value, mode: $("#f-mode").value,
    limit: $("#f-limit").value,
  };
}

function remember() {
  const q = new URLSearchParams();
  Object.entries(filters()).forEach(([k, v]) => { if (v && !(k === "limit" && v === "10")) q.set(k, v); });
  history.replaceState(null, "", `${location.pathname}${q.toString() ? `?${q}` : ""}`);
}

function row(item) {
  const link = `/console/sites/${encodeURIComponent(site)}/imports/${encodeURIComponent(item.id)}`;
  const file = h("button", {
    type: "button", class: "link", title: "Télécharger le fichier source",
    onclick: async () => {
      try { await download(`/imports/${encodeURIComponent(item.id)}/source`, `${item.file.name}.zip`); }
      catch (e) { notice(problemText(e), "error"); }
    },
  }, item.file.name);
  return h("tr", { "data-import": item.id, "data-status": item.status },
    h("td", {}, h("a", { href: link }, formatDate(item.created_at))),
    h("td", {}, statusBadge(item), item.queue_position !== null && item.queue_position !== undefined
      ? h("span", { class: "hint" }, ` (position ${item.queue_position + 1})`) : null),
    h("td", {}, item.auto ? "Oui" : "Non"),
    h("td", {}, item.establishment ? establishmentName(siteInfo, item.establishment) : "Tous"),
    h("td", {}, file, item.dry_run ? h("span", { class: "hint" }, " (simulation)") : null),
    h("td", {}, h("a", { href: `${link}#bilan-section`, "aria-label": `Bilan de l'import du ${formatDate(item.created_at)}` }, "Bilan")));
}

async function load() {
  const f = filters();
  const mine = ++latest;
  try {
    const result = await api("GET", `/sites/${encodeURIComponent(site)}/imports`,
      { query: { ...f, cursor: cursors[page] || undefined } });
    if (mine !== latest) return;
    clear(body);
    if (!result.items.length) {
      body.append(h("tr", {}, h("td", { colspan: "6" }, "Aucun import pour ces critères.")));
    }
    result.items.forEach((item) => body.append(row(item)));
    nextCursor = result.next_cursor;
    $("#next").disabled = !nextCursor;
    $("#prev").disabled = page === 0;
    $("#page-no").textContent = `Page ${page + 1}`;
  } catch (e) {
    notice(problemText(e), "error");
  }
}

function restart() { cursors = [null]; page = 0; remember(); load(); }

$("#next").addEventListener("click", () => { if (nextCursor) { cursors[page + 1] = nextCursor; page += 1; load(); } });
$("#prev").addEventListener("click", () => { if (page > 0) { page -= 1; load(); } });
form.addEventListener("change", restart);
form.addEventListener("submit", (e) => { e.preventDefault(); restart(); });

(async () => {
  try {
    siteInfo = await establishments(site);
    fillEstablishments($("#f-establishment"), siteInfo);
  } catch (e) { notice(problemText(e), "error"); }
  for (const name of ["establishment", "status", "mode", "limit"]) {
    const value = params.get(name);
    const select = $(`#f-${name}`);
    if (value && [...select.options].some((o) => o.value === value)) select.value = value;
  }
  await load();
  // Live: any status change of the site's imports refreshes the page shown.
  const refresh = debounce(load, 300);
  streamEvents(`/sites/${encodeURIComponent(site)}/events?live=true`, refresh, (live) => {
    $("#live-state").textContent = live ? "— mis à jour en direct" : "— reconnexion…";
    if (live) refresh(); // what changed while the stream was being opened
  });
})();
