// Intercity's JavaScript glue: open timeline rows stay open while they poll, copy buttons.
// (CSRF reaches htmx through the body's hx-headers; error answers are htmx's responseHandling, in base.html.)
// A pending timeline row polls and is replaced whole: keep its details open if the person opened them,
// both in the response (the request says so) and when they toggle while the request is in flight.
document.addEventListener("htmx:configRequest", function (event) {
  var row = event.detail.elt;
  var details = row.matches && row.matches("li.tl-entry") ? row.querySelector("details") : null;
  if (details && details.open) { event.detail.parameters.open = "1"; }
});
document.addEventListener("htmx:beforeSwap", function (event) {
  var row = event.detail.target;
  var details = row && row.matches && row.matches("li.tl-entry") ? row.querySelector("details") : null;
  if (details) { row.setAttribute("data-was-open", details.open ? "1" : "0"); }
});
document.addEventListener("htmx:afterSwap", function (event) {
  var row = event.target, old = event.detail.target;
  if (!(row.matches && row.matches("li.tl-entry")) || !old || !old.hasAttribute("data-was-open")) { return; }
  var details = row.querySelector("details");
  if (details) { details.open = old.getAttribute("data-was-open") === "1"; }
});
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) { return; }
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (source && navigator.clipboard) {
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  }
});
