// The dashboard's own script: the live indicator, confirmations, the log's scroll and the download link.
// It never writes HTML: job data reaches the page only as server-rendered, escaped markup (htmx swaps).
(function () {
  "use strict";
  function setLive(state, text) {
    var el = document.getElementById("live");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
  }
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  document.addEventListener("htmx:afterRequest", function (evt) {
    var xhr = evt.detail.xhr;
    if (evt.detail.successful) {
      var t = new Date();
      setLive("ok", "● Live · updated " + pad(t.getHours()) + ":" + pad(t.getMinutes()) + ":" + pad(t.getSeconds()));
    } else if (xhr && xhr.status === 401) {
      setLive("error", "○ Signed out: reload to log in");
    } else {
      setLive("error", "○ Offline: retrying");
    }
  });
  document.addEventListener("htmx:sendError", function () { setLive("error", "○ Offline: retrying"); });
  document.addEventListener("htmx:configRequest", function (evt) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) evt.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
  });
  document.addEventListener("submit", function (evt) {
    var message = evt.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) evt.preventDefault();
  });
  // the log follows new lines while the reader is at its end
  var stick = true;
  document.addEventListener("htmx:beforeSwap", function () {
    var log = document.getElementById("log");
    if (log) stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  });
  document.addEventListener("htmx:afterSettle", function () {
    var log = document.getElementById("log");
    if (log && stick) log.scrollTop = log.scrollHeight;
  });
  document.addEventListener("change", function (evt) {
    if (evt.target.id !== "log-section") return;
    var link = document.getElementById("log-download");
    var value = evt.target.value;
    if (link) link.href = link.pathname + (/^[0-9]+$/.test(value) ? "?section=" + value : "");
  });
  document.addEventListener("DOMContentLoaded", function () {
    if (!document.querySelector("[data-live]")) setLive("idle", "");
  });
})();
