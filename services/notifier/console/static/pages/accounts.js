// Comptes d'accès: at most 5 deposit accounts, the password shown once (at creation and regeneration) with
// the WebDAV URLs to paste into EDT/PRONOTE, the notification flag, deletion; the site's deposit URLs.
import { $, api, clear, copy, formatDate, h, notice, problemText, requireSession, showError } from "../lib.js";

const { site } = await requireSession();
const base = `/sites/${encodeURIComponent(site)}/accounts`;
const MAX = 5;

function withCredentials(url, login, password) {
  const u = new URL(url);
  u.username = login;
  u.password = password;
  return u.toString();
}

function copyButton(text, label) {
  const button = h("button", { type: "button", class: "secondary", "aria-label": label });
  button.textContent = "Copier";
  button.addEventListener("click", () => copy(text, button));
  return button;
}

// Seed 001's message to a new account: its login, its password (once), its deposit URLs.
function showCredentials(account, what) {
  const box = clear($("#credentials"));
  box.append(h("div", { class: "box ok", id: "password-once" },
    h("h2", {}, what === "created" ? "Compte créé" : "Nouveau mot de passe"),
    h("p", {}, "Notez le mot de passe maintenant : il ne sera plus jamais affiché."),
    h("dl", { class: "facts" },
      h("dt", {}, "Identifiant"), h("dd", { class: "secret", id: "new-login" }, account.login),
      h("dt", {}, "Mot de passe"), h("dd", { class: "secret", id: "new-password" }, account.password)),
    h("p", {}, "Les URL de dépôt de fichiers, à coller dans le logiciel d'emploi du temps (« Vers URL ») :"),
    h("ul", { id: "new-urls" }, account.urls.map((u) => {
      const full = withCredentials(u.url, account.login, account.password);
      return h("li", {}, h("strong", {}, `${u.label} : `), h("code", {}, full), " ",
        copyButton(full, `Copier l'URL ${u.label}`));
    })),
    h("div", { class: "actions" }, h("button", { type: "button", id: "forget-password",
      onclick: () => clear($("#credentials")) }, "J'ai noté le mot de passe"))));
  box.focus();
}

function row(a) {
  const notify = h("input", { type: "checkbox", id: `notify-${a.login}`, checked: a.notify,
    onchange: async (e) => {
      try { await api("PATCH", `${base}/${encodeURIComponent(a.login)}`, { json: { notify: e.target.checked } }); }
      catch (err) { e.target.checked = !e.target.checked; notice(problemText(err), "error"); }
    } });
  return h("tr", { "data-login": a.login },
    h("th", { scope: "row" }, a.display_name, a.locked ? h("span", { class: "hint" }, " (verrouillé après trop d'échecs : régénérez le mot de passe)") : null),
    h("td", { class: "mono" }, a.login),
    h("td", {}, notify, " ", h("label", { for: `notify-${a.login}` }, "Notification")),
    h("td", {}, h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", "aria-label": `Régénérer le mot de passe de ${a.login}`,
        onclick: async () => {
          if (!window.confirm(`Régénérer le mot de passe de ${a.login} ? L'ancien ne fonctionnera plus.`)) return;
          try { showCredentials(await api("POST", `${base}/${encodeURIComponent(a.login)}/password`), "regenerated"); await load(); }
          catch (e) { notice(problemText(e), "error"); }
        } }, "Régénérer le mot de passe"),
      h("button", { type: "button", class: "danger", "aria-label": `Supprimer ${a.login}`,
        onclick: async () => {
          if (!window.confirm(`Supprimer le compte ${a.login} ? Ses dépôts seront refusés.`)) return;
          try { await api("DELETE", `${base}/${encodeURIComponent(a.login)}`); await load(); }
          catch (e) { notice(problemText(e), "error"); }
        } }, "Supprimer"))));
}

async function load() {
  try {
    const list = await api("GET", base);
    const body = clear($("#accounts tbody"));
    list.items.forEach((a) => body.append(row(a)));
    if (!list.items.length) body.append(h("tr", {}, h("td", { colspan: "4" }, "Aucun compte d'accès.")));
    $("#count").textContent = `(${list.items.length} sur ${MAX})`;
    const full = list.items.length >= MAX;
    $("#a-submit").disabled = full;
    $("#add-error").textContent = "";
    if (full) $("#add-error").append(h("div", { class: "box warn" }, h("p", {}, "Les 5 comptes d'accès sont utilisés : supprimez-en un pour en ajouter un autre.")));
  } catch (e) { notice(problemText(e), "error"); }
}

async function urls() {
  try {
    const info = await api("GET", `/sites/${encodeURIComponent(site)}`);
    const list = clear($("#urls"));
    for (const u of info.urls) {
      list.append(h("li", {}, h("strong", {}, `${u.label} : `), h("code", {}, u.url), " ", copyButton(u.url, `Copier l'URL ${u.label}`)));
    }
    if (!info.automatic_import_available) {
      notice("Aucun import manuel n'a encore été intégré : les comptes d'accès pourront être créés après le premier import manuel.", "warn");
    } else if (info.first_import_at) {
      list.after(h("p", { class: "hint" }, `Import automatique disponible depuis le ${formatDate(info.first_import_at)}.`));
    }
  } catch (e) { notice(problemText(e), "error"); }
}

$("#add-account").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = clear($("#add-error"));
  const first = $("#a-first").value.trim();
  const last = $("#a-last").value.trim();
  if (!first || !last) {
    error.append(h("div", { class: "box error" }, h("p", {}, "Le prénom et le nom sont obligatoires.")));
    (first ? $("#a-last") : $("#a-first")).focus();
    return;
  }
  const body = { first_name: first, last_name: last, notify: $("#a-notify").checked };
  const display = $("#a-display").value.trim();
  if (display) body.display_name = display;
  try {
    const created = await api("POST", base, { json: body });
    event.target.reset();
    showCredentials(created, "created");
    await load();
  } catch (e) { showError(error, e); }
});

load();
urls();
