// Sign in: check the token against the API, keep it in this tab only, go where the person was going.
import { $, clear, h, session } from "../lib.js";

const form = $("#signin");
const error = $("#signin-error");
const params = new URLSearchParams(location.search);
if (params.get("expired")) {
  error.append(h("div", { class: "box warn" }, h("p", {}, "Votre session a expiré ou le jeton n'est plus valable : reconnectez-vous.")));
}

function siteOfToken(token) {
  const parts = token.split(".");
  if (parts.length !== 4 || parts[0] !== "edts") return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    return decodeURIComponent(escape(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4))));
  } catch { return null; }
}

async function status(path, token) {
  const r = await fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } });
  return r.status;
}

function fail(message) {
  clear(error).append(h("div", { class: "box error" }, h("p", {}, message)));
  $("#token").focus();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("#token").value.trim();
  const user = $("#user").value.trim();
  let site = $("#site").value.trim();
  clear(error);
  if (!token) { fail("Saisissez un jeton d'accès."); return; }
  const tokenSite = siteOfToken(token);
  const admin = !tokenSite && (await status("/ops/queues", token)) === 200;
  if (!admin && !tokenSite) { fail("Jeton d'accès invalide."); return; }
  if (tokenSite) site = site || tokenSite;
  if (site) {
    const code = await status(`/sites/${encodeURIComponent(site)}`, token);
    if (code === 401) { fail("Jeton d'accès invalide ou révoqué."); return; }
    if (code === 404) { fail(`Site ${site} inconnu pour ce jeton.`); return; }
    if (code !== 200) { fail(`Le serveur a répondu ${code} : réessayez dans un instant.`); return; }
  }
  session.save({ token, site, user, admin });
  const next = params.get("next");
  if (next && next.startsWith("/console/") && !next.startsWith("/console//")) location.assign(next);
  else location.assign(site ? `/console/sites/${encodeURIComponent(site)}/imports` : "/console/ops");
});
