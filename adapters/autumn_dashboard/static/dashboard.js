// The dashboard works without this file; it only adds conveniences (the CSP forbids inline script).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons next to email, ID and fingerprint.
  for (const b of document.querySelectorAll("button[data-copy]")) {
    b.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(b.dataset.copy);
        b.textContent = "Copied";
      } catch (_e) {
        b.textContent = "Select to copy";
      }
      setTimeout(() => { b.textContent = "Copy"; }, 1500);
    });
  }
  // A page-size change reloads the list.
  for (const s of document.querySelectorAll("select.autosubmit")) {
    s.addEventListener("change", () => s.form.submit());
  }
  // Create Customer stays disabled until an ID or an email is filled (the server refuses too).
  for (const btn of document.querySelectorAll("button[data-needs-one]")) {
    const form = document.querySelector(btn.dataset.needsOne);
    const inputs = form.querySelectorAll("input.needs-one");
    const update = () => {
      btn.disabled = ![...inputs].some((i) => i.value.trim() !== "");
    };
    for (const i of inputs) i.addEventListener("input", update);
    update();
  }
});
