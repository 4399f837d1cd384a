// skiff console: live parts and copy buttons. Pages work without it.
"use strict";
// An element with data-live="URL" takes the HTML of each "panel" event
// that URL streams (server-sent events): status changes show without a
// reload. A "signin" event means the session ended.
document.querySelectorAll("[data-live]").forEach(function (el) {
  var es = new EventSource(el.dataset.live);
  es.addEventListener("panel", function (e) {
    el.innerHTML = e.data;
    el.dataset.updated = String(Date.now());
  });
  es.addEventListener("signin", function (e) {
    es.close();
    location.href = e.data;
  });
});
document.addEventListener("click", function (e) {
  var b = e.target.closest("[data-copy]");
  if (!b) return;
  var t = document.querySelector(b.dataset.copy);
  if (t && navigator.clipboard) {
    navigator.clipboard.writeText(t.textContent).then(function () { b.textContent = "Copied"; });
  }
});
