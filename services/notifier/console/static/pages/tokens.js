// Jetons d'accès (admin): issue a site token (shown once), list them, revoke one at once.
import { $, api, clear, copy, formatDate, h, notice, problemText, requireSession } from "../lib.js";

const { site } = await requireSession({ admin: true });
const base = `/sites/${encodeURIComponent(site)}/tokens`;

async function load() {
  const state = clear($("#tokens-state"));
  const body = clear($("#tokens tbody"));
  try {
    const list = await api("GET", base);
    for (const t of list.items) {
      body.append(h("tr", { "data-token": t.id },
        h("td", { class: "mono" }, t.id), h("td", {}, t.label || "—"), h("td", {}, formatDate(t.created_at)),
        h("td", {}, t.expires_at ? formatDate(t.expires_at) : "Jamais"),
        h("td", {}, h("button", { type: "button", class: "danger", "aria-label": `Révoquer le jeton ${t.id}`,
          onclick: async () => {
            if (!window.confirm(`Révoquer le jeton ${t.id} ? Il cessera aussitôt de fonctionner.`)) return;
            try { await api("DELETE", `${base}/${encodeURIComponent(t.id)}`); await load(); }
            catch (e) { notice(problemText(e), "error"); }
          } }, "Révoquer"))));
    }
    if (!list.items.length) body.append(h("tr", {}, h("td", { colspan: "5" }, "Aucun jeton.")));
  } catch (e) {
    state.append(h("p", {}, e.status === 404 || e.status === 405
      ? "La liste des jetons n'est pas disponible sur ce serveur : seule la création l'est."
      : problemText(e)));
  }
}

$("#issue").addEventListener("click", async () => {
  try {
    const t = await api("POST", base, { json: {} });
    const button = h("button", { type: "button", class: "secondary" }, "Copier");
    button.addEventListener("click", () => copy(t.token, button));
    const box = clear($("#issued"));
    box.append(h("div", { class: "box ok" }, h("p", {}, "Jeton créé. Copiez-le maintenant : il ne sera plus affiché."),
      h("p", {}, h("code", { id: "new-token" }, t.token), " ", button)));
    box.focus();
    await load();
  } catch (e) { notice(problemText(e), "error"); }
});

load();
