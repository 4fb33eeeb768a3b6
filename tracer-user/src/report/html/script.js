// Opens the trace a link points at, and shows a span's details on a click.
(function () {
  function openFromHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (id.indexOf("trace-") !== 0) return;
    var trace = document.getElementById(id);
    if (trace) {
      trace.open = true;
      trace.scrollIntoView();
    }
  }
  window.addEventListener("hashchange", openFromHash);
  openFromHash();
  function toggle(span) {
    var detail = span.nextElementSibling;
    if (detail && detail.classList.contains("span-detail")) {
      detail.hidden = !detail.hidden;
    }
  }
  document.querySelectorAll(".waterfall .span").forEach(function (span) {
    span.addEventListener("click", function () { toggle(span); });
    span.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(span); }
    });
  });
  // The slowest trace is open from the start.
  var first = document.querySelector("details.trace");
  if (first && !location.hash) first.open = true;
})();
