// Conveyor dashboard: live regions, relative times, confirmations.
// Pages are complete without this script; it only keeps them current.
//
// Live updates poll the page's own address and swap in the regions marked
// data-live. A poll starts only after the previous one ended (never two at
// once, however slow the server), and none runs while the tab is hidden.
(function () {
  "use strict";

  var PERIOD_MS = 2000;
  var TIMEOUT_MS = 10000;
  var timer = null;
  var lastOk = Date.now();
  // Server time minus this browser's time, so "3 s ago" counts from the
  // database's clock, not from a skewed laptop clock.
  var skewMs = 0;

  function status(text) {
    var el = document.getElementById("live-status");
    if (el && el.textContent !== text) el.textContent = text;
  }

  function readSkew(doc) {
    var now = Date.parse(doc.body.getAttribute("data-now") || "");
    if (!isNaN(now)) skewMs = now - Date.now();
  }

  // The same words the server writes (layout.rs, `age`).
  function age(secs) {
    if (secs < 60) return secs + " s";
    if (secs < 3600) return Math.floor(secs / 60) + " min";
    if (secs < 172800) return Math.floor(secs / 3600) + " h";
    return Math.floor(secs / 86400) + " d";
  }

  function renderTimes(root) {
    var now = Date.now() + skewMs;
    var times = root.querySelectorAll("time[data-rel]");
    for (var i = 0; i < times.length; i++) {
      var at = Date.parse(times[i].getAttribute("datetime"));
      if (isNaN(at)) continue;
      var secs = Math.round((now - at) / 1000);
      var text = secs >= 0 ? age(secs) + " ago" : "in " + age(-secs);
      if (times[i].textContent !== text) times[i].textContent = text;
    }
  }

  function swap(doc) {
    var regions = document.querySelectorAll("[data-live]");
    var focusedId = document.activeElement && document.activeElement.id;
    for (var i = 0; i < regions.length; i++) {
      var fresh = doc.getElementById(regions[i].id);
      if (fresh && fresh.innerHTML !== regions[i].innerHTML) {
        regions[i].innerHTML = fresh.innerHTML;
      }
    }
    // Keyboard users keep their place: focus returns to the same control.
    if (focusedId && document.activeElement === document.body) {
      var again = document.getElementById(focusedId);
      if (again) again.focus();
    }
    renderTimes(document);
  }

  async function poll() {
    var controller = new AbortController();
    var abort = setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    try {
      var response = await fetch(location.href, {
        headers: { "X-Conveyor-Live": "1" },
        credentials: "same-origin",
        cache: "no-store",
        redirect: "manual",
        signal: controller.signal,
      });
      if (response.type === "opaqueredirect" || response.status === 401) {
        status("Signed out: reload to log in");
        return false;
      }
      if (!response.ok) {
        status("Server answered " + response.status + "; retrying");
        return true;
      }
      var doc = new DOMParser().parseFromString(await response.text(), "text/html");
      readSkew(doc);
      swap(doc);
      lastOk = Date.now();
      status("Live");
      return true;
    } catch (err) {
      var secs = Math.round((Date.now() - lastOk) / 1000);
      status("Unreachable for " + age(secs) + "; retrying");
      return true;
    } finally {
      clearTimeout(abort);
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!document.hidden) timer = setTimeout(loop, PERIOD_MS);
  }

  var busy = false;

  async function loop() {
    timer = null;
    if (busy || document.hidden) return;
    busy = true;
    var again = false;
    try {
      again = await poll();
    } finally {
      busy = false;
    }
    if (again) schedule();
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
      status("Paused while hidden");
    } else if (timer === null && !busy) {
      loop();
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  readSkew(document);
  renderTimes(document);
  setInterval(function () { if (!document.hidden) renderTimes(document); }, 1000);
  if (document.querySelector("[data-live]")) schedule();
})();
