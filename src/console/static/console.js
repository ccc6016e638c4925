// Tollgate console: the connect popup and copy buttons. No inline script anywhere (the
// Content-Security-Policy allows only this file).
"use strict";

document.addEventListener("click", (event) => {
  const popup = event.target.closest("a[data-popup]");
  if (popup) {
    const opened = window.open(popup.href, "tollgate-connect", "popup,width=560,height=720");
    if (opened) {
      event.preventDefault();
      const status = document.getElementById("connect-status");
      if (status) status.textContent = "Waiting for the provider in the popup…";
    }
    return;
  }
  const copy = event.target.closest("button[data-copy]");
  if (copy) {
    navigator.clipboard.writeText(copy.dataset.copy).then(
      () => { copy.textContent = `${copy.textContent.replace(/^Copy/, "Copied")}`; },
      () => { copy.textContent = "Copy failed: select the text"; },
    );
  }
});

// The connect flow's last page tells its opener how it ended; the page then shows it.
window.addEventListener("message", (event) => {
  if (event.origin !== window.location.origin) return;
  const data = event.data || {};
  if (data.type !== "tollgate.oauth") return;
  const status = document.getElementById("connect-status");
  if (status) status.textContent = data.status === "connected" ? `Connected to ${data.connector}.` : `Connecting ${data.connector} failed.`;
  window.setTimeout(() => window.location.reload(), 300);
});

// The template gallery narrows as you type.
document.addEventListener("input", (event) => {
  const filter = event.target.closest("input[data-filter]");
  if (!filter) return;
  const list = document.getElementById(filter.dataset.filter);
  const words = filter.value.trim().toLowerCase();
  for (const item of list ? list.querySelectorAll("li[data-name]") : []) {
    item.hidden = words !== "" && !item.dataset.name.includes(words);
  }
});
