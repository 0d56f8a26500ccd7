/* The pages' own glue around htmx (loaded as a file: the CSP forbids inline script). */
"use strict";
(function () {
  var offline = function () { return document.getElementById("offline"); };
  // The live stream (htmx's SSE extension): a banner while the server cannot be reached.
  document.addEventListener("htmx:sseError", function () {
    var banner = offline();
    if (banner) banner.hidden = false;
  });
  document.addEventListener("htmx:sseOpen", function () {
    var banner = offline();
    if (banner) banner.hidden = true;
  });
  // A write refused by the server (4xx/5xx) shows its message instead of nothing at all.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = "HTTP " + xhr.status;
    try { text = JSON.parse(xhr.responseText).error || text; } catch (e) { /* not JSON */ }
    var box = document.getElementById("notice");
    if (box) box.textContent = text;
  });
})();
(function () {
  // After htmx swaps in an answer, keyboard focus goes to its message (marked data-focus),
  // so a keyboard or screen-reader user is not left on a button that no longer exists.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    var focus = target && target.querySelector ? target.querySelector("[data-focus]") : null;
    if (focus) focus.focus();
  });
})();
