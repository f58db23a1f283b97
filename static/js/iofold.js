// Small behaviours declared in the HTML with data attributes, so that pages carry no
// inline scripts or event handlers (the Content-Security-Policy allows neither).
// Handlers are bound once on the document, so content swapped in by htmx works too.
//
//   <form data-confirm="Delete this?">     asks before submitting, and sends confirmed=yes
//   <select data-autosubmit>               submits its form when changed
//   <input type="checkbox" data-select-all="trace">
//                                          (un)checks every input[name=trace]
//   <button data-nav-toggle>               opens and closes the phone menu (.app-header)
//   <span id="selected-count">             shows how many input[name=trace] are checked
//   <p id="request-error">                 says that an htmx request failed (base.html)
//   <article data-reveal>                  scrolled into view when htmx fills it out of sight
//   <details class="dropdown">             (Pico's menu) closes on Escape and when Tab leaves it
//   <input aria-invalid="true">            a page that comes back with a form's errors opens
//                                          on the first field to fix
//   <div id="x" data-fragment-slot>        a form fetched into it (hx-get, hx-target="#x") by
//                                          its opener (aria-controls="x") takes the focus (its
//                                          [autofocus]); Escape, a [data-slot-close] link or the
//                                          opener again empties it and focuses the opener
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

  // A refused form comes back as a new page, read from its top: the focus goes to the first
  // field to fix, whose error a screen reader then reads with it (aria-describedby).
  document.addEventListener("DOMContentLoaded", function () {
    const field = document.querySelector("main form [aria-invalid=true]");
    if (field && document.activeElement === document.body) field.focus();
  });

  // Pico's menus are plain <details>: open, one covered the page while Tab went on under it,
  // and Escape did nothing. Escape closes it, back on its summary; Tab out of it closes it.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const menu = event.target.closest && event.target.closest("details.dropdown[open]");
    if (!menu) return;
    menu.open = false;
    menu.querySelector("summary").focus();
  });
  document.addEventListener("focusout", function (event) {
    const menu = event.target.closest && event.target.closest("details.dropdown[open]");
    // Only when the focus went somewhere: a click that focuses nothing (Safari's buttons)
    // must still land on the menu's item.
    if (menu && event.relatedTarget && !menu.contains(event.relatedTarget)) menu.open = false;
  });

  document.addEventListener("submit", function (event) {
    const form = event.target;
    const message = form.dataset && form.dataset.confirm;
    if (!message) return;
    if (!window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    // The answer goes with the form: an action that asks again on a page of its own
    // when JavaScript is off sees it was answered here.
    if (!form.querySelector("input[name=confirmed]")) {
      const answer = document.createElement("input");
      answer.type = "hidden";
      answer.name = "confirmed";
      answer.value = "yes";
      form.appendChild(answer);
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

  // A form opened in place (a label's edit form in its table row): the opener says it is
  // open, htmx focuses the form's [autofocus]; closing it gives the focus back.
  function slotOpener(slot) {
    return slot.id ? document.querySelector('[aria-controls="' + slot.id + '"]') : null;
  }
  function closeSlot(slot) {
    slot.replaceChildren();
    const opener = slotOpener(slot);
    if (!opener) return;
    opener.setAttribute("aria-expanded", "false");
    opener.focus();
  }
  document.addEventListener("htmx:afterSwap", function (event) {
    const slot = event.detail.target;
    if (!slot || !slot.hasAttribute("data-fragment-slot")) return;
    const opener = slotOpener(slot);
    if (opener) opener.setAttribute("aria-expanded", "true");
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    const opener = event.detail.elt;
    if (!opener || opener.getAttribute("aria-expanded") !== "true") return;
    const slot = document.getElementById(opener.getAttribute("aria-controls"));
    if (!slot || !slot.hasAttribute("data-fragment-slot")) return;
    event.preventDefault();
    closeSlot(slot);
  });
  document.addEventListener("click", function (event) {
    const close = event.target.closest && event.target.closest("[data-slot-close]");
    const slot = close && close.closest("[data-fragment-slot]");
    if (!slot) return;
    event.preventDefault();
    closeSlot(slot);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const slot = event.target.closest && event.target.closest("[data-fragment-slot]");
    if (!slot || !slot.hasChildNodes()) return;
    event.preventDefault();
    closeSlot(slot);
  });

  // A box that a click fills out of sight (the matrix's cell detail, below the whole table
  // on a phone) comes into view; beside the table, where it already shows, nothing moves.
  document.addEventListener("htmx:afterSwap", function (event) {
    const target = event.detail.target;
    if (!target || !target.hasAttribute("data-reveal")) return;
    const box = target.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight - 48) target.scrollIntoView({ block: "start" });
  });

  // A failed htmx request (a server error, a refused action, no connection) is said at the
  // foot of the screen until the next one succeeds.
  function requestError(text) {
    const box = document.getElementById("request-error");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }
  document.addEventListener("htmx:responseError", function (event) {
    const status = event.detail.xhr.status;
    requestError("That did not work (error " + status + "). Try again, or reload the page.");
  });
  document.addEventListener("htmx:sendError", function () {
    requestError("Could not reach iofold. Check your connection, then try again.");
  });
  document.addEventListener("htmx:timeout", function () {
    requestError("iofold took too long to answer. Try again, or reload the page.");
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful) requestError("");
  });
})();
