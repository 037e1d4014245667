// The settings page's forms: a confirmation before removing a member or revoking a key
// (forms with data-confirm), and the Copy button of a new API key. Without script the forms
// post directly and the key is selected by hand.

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    const status = button.parentElement.querySelector("[data-copy-status]");
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        if (status) status.textContent = "Copied to the clipboard.";
      } catch {
        window.getSelection().selectAllChildren(source);
        if (status) status.textContent = "Copying was refused: the key is selected, copy it by hand.";
      }
    });
  }
}

confirmations();
copyButtons();
