// pubsub-jobs dashboard: live refresh, and nothing else. Pages work without it.
// Every N seconds the page is fetched again and its #live part swapped in; the choice is kept
// per browser. A refresh is skipped while the page is hidden or focus is inside #live (someone
// is typing or about to press a button).
(function () {
  "use strict";
  var KEY = "pj-refresh";
  var select = document.getElementById("refresh");
  var timer = null;
  if (!select) return;
  var saved = null;
  try { saved = window.localStorage.getItem(KEY); } catch (e) { saved = null; }
  if (saved !== null && select.querySelector('option[value="' + saved + '"]')) select.value = saved;

  function busy() {
    var live = document.getElementById("live");
    var active = document.activeElement;
    return document.hidden || (live && active && active !== document.body && live.contains(active));
  }

  function refresh() {
    if (busy()) return;
    fetch(window.location.href, { headers: { "X-Requested-With": "pj-live" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || busy()) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var live = document.getElementById("live");
        if (fresh && live) live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
      })
      .catch(function () { /* the next tick tries again */ });
  }

  function apply() {
    if (timer) { clearInterval(timer); timer = null; }
    var s = parseInt(select.value, 10);
    if (s > 0) timer = setInterval(refresh, s * 1000);
  }

  select.addEventListener("change", function () {
    try { window.localStorage.setItem(KEY, select.value); } catch (e) { /* private mode */ }
    apply();
  });
  apply();
})();
