// Small behaviours declared in the HTML with data attributes, so that pages carry no
// inline scripts or event handlers (the Content-Security-Policy allows neither).
// Handlers are bound once on the document, so content swapped in by htmx works too.
//
//   <form data-confirm="Delete this?">     asks before submitting
//   <select data-autosubmit>               submits its form when changed
//   <input type="checkbox" data-select-all="trace">
//                                          (un)checks every input[name=trace]
//   <button data-nav-toggle>               opens and closes the phone menu (.app-header)
//   <span id="selected-count">             shows how many input[name=trace] are checked
(function () {
  "use strict";

  function countSelected() {
    const el = document.getElementById("selected-count");
    if (el) el.textContent = document.querySelectorAll("input[name=trace]:checked").length;
  }

  document.addEventListener("click", function (event) {
    const toggle = event.target.closest && event.target.closest("[data-nav-toggle]");
    if (!toggle) return;
    const header = toggle.closest(".app-header");
    const open = header.classList.toggle("nav-open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });

  document.addEventListener("submit", function (event) {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener("change", function (event) {
    const target = event.target;
    if (target.matches("select[data-autosubmit]") && target.form) {
      target.form.requestSubmit();
      return;
    }
    if (target.matches("input[data-select-all]")) {
      const name = target.dataset.selectAll;
      document.querySelectorAll('input[name="' + name + '"]').forEach(function (box) {
        box.checked = target.checked;
      });
    }
    if (target.matches("input[name=trace], input[data-select-all]")) countSelected();
  });

  document.addEventListener("htmx:afterSwap", countSelected);
})();
