// Conveyor dashboard: live regions, relative times, confirmations.
// Pages are complete without this script; it only keeps them current.
//
// Live updates poll the page's own address and swap in the regions marked
// data-live. A poll starts only after the previous one ended (never two at
// once, however slow the server), and none runs while the tab is hidden.
(function () {
  "use strict";

  var PERIOD_MS = 2000;
  // After failed polls the period doubles, up to this: an outage is not
  // met by every open tab asking every two seconds.
  var MAX_PERIOD_MS = 30000;
  var TIMEOUT_MS = 10000;
  var timer = null;
  var period = PERIOD_MS;
  // Set when polling cannot help (signed out, the page is gone).
  var stopped = false;
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

  // A region is left alone while someone is using it: the pointer on one
  // of its links or buttons, focus inside it, or a press in the last
  // moment. A button must not move (or become another row's) between
  // aiming and clicking; reading a page with the pointer resting on it
  // does not stop it updating.
  var lastPress = 0;
  document.addEventListener("pointerdown", function () { lastPress = Date.now(); }, true);

  function inUse(region) {
    return region.querySelector("a:hover, button:hover, input:hover, select:hover") !== null ||
      region.contains(document.activeElement) ||
      Date.now() - lastPress < 1500;
  }

  function swap(doc) {
    // The fresh copy's times are written as this page's are, so a region
    // whose only change is "3 s ago" becoming "4 s ago" is not replaced.
    renderTimes(doc);
    var regions = document.querySelectorAll("[data-live]");
    for (var i = 0; i < regions.length; i++) {
      var fresh = doc.getElementById(regions[i].id);
      if (fresh && fresh.innerHTML !== regions[i].innerHTML && !inUse(regions[i])) {
        regions[i].innerHTML = fresh.innerHTML;
      }
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
      if (response.status === 404) {
        status("This page is gone (deleted?): reload");
        return false;
      }
      if (!response.ok) {
        period = Math.min(period * 2, MAX_PERIOD_MS);
        status("Server answered " + response.status + "; retrying");
        return true;
      }
      var doc = new DOMParser().parseFromString(await response.text(), "text/html");
      readSkew(doc);
      swap(doc);
      lastOk = Date.now();
      period = PERIOD_MS;
      if (!document.hidden) status("Live");
      return true;
    } catch (err) {
      period = Math.min(period * 2, MAX_PERIOD_MS);
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
    if (!document.hidden && !stopped) timer = setTimeout(loop, period);
  }

  var busy = false;

  async function loop() {
    timer = null;
    if (busy || document.hidden || stopped) return;
    busy = true;
    var again = false;
    try {
      again = await poll();
    } finally {
      busy = false;
    }
    if (again) schedule();
    else stopped = true;
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
      status("Paused while hidden");
    } else if (timer === null && !busy && !stopped) {
      loop();
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // What an action did is said once: reloading the page, or the live
  // refresh, must not say it again.
  if (/[?&]done=/.test(location.search)) {
    var url = new URL(location.href);
    url.searchParams.delete("done");
    url.searchParams.delete("n");
    url.searchParams.delete("m");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }

  readSkew(document);
  renderTimes(document);
  setInterval(function () { if (!document.hidden) renderTimes(document); }, 1000);
  if (document.querySelector("[data-live]")) schedule();
})();
