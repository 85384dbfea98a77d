// Import manuel: upload the export (REST), then follow it on its page — the wizard when review is asked.
import { $, api, clear, establishments, fillEstablishments, h, notice, problemText, requireSession, showError } from "../lib.js";

const { site } = await requireSession();
const form = $("#manual");
const review = $("#m-review");
const dryRun = $("#m-dry-run");

dryRun.addEventListener("change", () => { review.disabled = dryRun.checked; });

(async () => {
  try {
    const info = await establishments(site);
    const select = $("#m-establishment");
    fillEstablishments(select, info);
    if (info.establishments.length === 1) select.value = info.establishments[0].id;
  } catch (e) { notice(problemText(e), "error"); }
})();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = clear($("#manual-error"));
  const file = $("#m-file").files[0];
  if (!file) { error.append(h("div", { class: "box error" }, h("p", {}, "Choisissez le fichier à importer."))); $("#m-file").focus(); return; }
  const est = $("#m-establishment").value;
  const data = new FormData();
  data.append("file", file, file.name);
  data.append("mode", "manual");
  data.append("dry_run", dryRun.checked ? "true" : "false");
  data.append("review", !dryRun.checked && review.checked ? "true" : "false");
  const path = est === "*" ? `/sites/${encodeURIComponent(site)}/deposits`
    : `/sites/${encodeURIComponent(site)}/establishments/${encodeURIComponent(est)}/imports`;
  const button = $("#m-submit");
  button.disabled = true;
  button.textContent = "Envoi du fichier…";
  try {
    const accepted = await api("POST", path, { body: data });
    location.assign(`/console/sites/${encodeURIComponent(site)}/imports/${encodeURIComponent(accepted.import_id)}`);
  } catch (e) {
    showError(error, e);
    button.disabled = false;
    button.textContent = "Importer";
  }
});
