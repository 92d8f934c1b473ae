/* mlcp web UI: local times, and live pages without a reload. No library, nothing fetched but the page itself.
 *
 * Times: every <time data-local> arrives as UTC text; it is rewritten in the viewer's zone, UTC kept in its title.
 * Live: a page whose <body> has data-poll="<ms>" fetches its own URL again on that period and swaps each element
 * marked data-live (by id) for the server's new rendering of it, so fragments come from the page's own templates.
 * A region someone is typing in is left alone until they are done; a page that stops asking for polls (a rollout
 * that ended) gets one last swap and then rests.
 */
(function () {
  "use strict";
  var pad = function (n) { return String(n).padStart(2, "0"); };

  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      var day = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
      var hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
      var style = el.getAttribute("data-local");
      el.textContent = style === "time" ? hm + ":" + pad(d.getSeconds())
        : style === "minute" ? day + " " + hm : day + " " + hm + ":" + pad(d.getSeconds());
    });
    var zone = document.getElementById("zone");
    if (zone) { zone.textContent = "times in " + Intl.DateTimeFormat().resolvedOptions().timeZone + " (hover: UTC)"; }
  }

  function busy(region) {
    var active = document.activeElement;
    if (active && region.contains(active) && active.matches("input, textarea, select, button")) { return true; }
    return Array.prototype.some.call(region.querySelectorAll("input[type=text], textarea"),
      function (field) { return field.value !== ""; });
  }

  var seen = {};  // id -> the server's last HTML for that region, so an unchanged region is not redrawn
  document.querySelectorAll("[data-live][id]").forEach(function (el) { seen[el.id] = el.outerHTML; });

  function swap(doc) {
    document.querySelectorAll("[data-live][id]").forEach(function (old) {
      var fresh = doc.getElementById(old.id);
      if (!fresh || fresh.outerHTML === seen[old.id] || busy(old)) { return; }
      seen[old.id] = fresh.outerHTML;
      var open = Array.prototype.map.call(old.querySelectorAll("details"), function (d) { return d.open; });
      var node = document.importNode(fresh, true);
      node.querySelectorAll("details").forEach(function (d, i) { if (open[i]) { d.open = true; } });
      old.replaceWith(node);
      localTimes(node);
    });
  }

  function poll(every) {
    var status = document.getElementById("live-status");
    fetch(window.location.href, {cache: "no-store", credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        swap(doc);
        var next = Number(doc.body.getAttribute("data-poll") || 0);
        document.body.setAttribute("data-live-updated", new Date().toISOString());
        if (status) { status.textContent = next ? "live · updated " + new Date().toLocaleTimeString() : "ended · not updating"; }
        if (next) { window.setTimeout(function () { poll(next); }, next); }
      })
      .catch(function () {
        if (status) { status.textContent = "live updates paused (cannot reach the server) · retrying"; }
        window.setTimeout(function () { poll(every); }, every * 2);
      });
  }

  localTimes(document);
  var every = Number(document.body.getAttribute("data-poll") || 0);
  if (every) { window.setTimeout(function () { poll(every); }, every); }
}());
