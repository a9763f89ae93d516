(function () {
  "use strict";
  // Live regions: <div data-live="name" data-every="5000"> is re-fetched from the same URL with the
  // X-Live-Fragment header; the view answers with just that part, which replaces the region's content.
  function stamp(el, text, stale) {
    var id = el.getAttribute("data-status");
    var target = id ? document.getElementById(id) : null;
    if (!target) { return; }
    target.textContent = text;
    target.classList.toggle("stale", !!stale);
  }
  function refresh(el) {
    if (document.hidden || el.getAttribute("data-paused") === "1") { return; }
    fetch(window.location.href, {
      headers: { "X-Live-Fragment": el.getAttribute("data-live") },
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      if (response.redirected || response.status === 401 || response.status === 403) {
        stamp(el, "Session ended: reload the page", true);
        el.setAttribute("data-paused", "1");
        return null;
      }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      if (html === null) { return; }
      el.innerHTML = html;
      stamp(el, "Updated " + new Date().toLocaleTimeString(), false);
    }).catch(function (err) {
      stamp(el, "Update failed (" + err.message + "), retrying", true);
    });
  }
  // Filter panels start open on wide screens and folded on phones.
  if (window.matchMedia("(min-width: 700px)").matches) {
    document.querySelectorAll("details[data-open-wide]").forEach(function (el) { el.open = true; });
  }
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var every = parseInt(el.getAttribute("data-every") || "5000", 10);
    window.setInterval(function () { refresh(el); }, Math.max(every, 1000));
  });
})();
