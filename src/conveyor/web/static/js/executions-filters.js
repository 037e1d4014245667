// The monitor's filter form: open on wide screens (on a phone it folds away until asked,
// unless filters are applied), and empty fields stay out of the URL, so a bookmarked or
// shared view reads as what it filters (?status=failed&workflow=billing), nothing more.

const form = document.getElementById("executions-filters");
const panel = document.getElementById("filters-panel");

if (panel && !("applied" in panel.dataset) && window.matchMedia("(max-width: 700px)").matches) {
  panel.open = false;
}

form?.addEventListener("submit", () => {
  for (const field of form.querySelectorAll("input:not([type=checkbox]), select")) {
    if (!field.value) field.disabled = true;
  }
  // Back from the next page (bfcache), the fields must be usable again.
  window.addEventListener("pageshow", () => {
    for (const field of form.querySelectorAll(":disabled")) field.disabled = false;
  }, { once: true });
});
