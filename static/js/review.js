// Keyboard-first labelling (review card and trace page): 1/→ good, 2/← bad, 3/↓ neutral, n note, s skip, u undo;
// the arrows on the review card only: on the trace page they scroll.
// Touch: swipe right for good, left for bad. The card is swapped by htmx, so handlers are
// bound once on the document and look the current card up at event time.
// Forms marked data-labelling (rate, skip, undo on the review card) are the flow's own
// requests: while one is in flight the keys wait; any other request (comments) does not.
// Loaded without defer, in the head: only the document exists yet, which is all this binds
// to, and a key pressed as soon as the page shows is heard. Before htmx has arrived, the
// clicked button posts its form plainly and the page reloads with the next card.
(function () {
  "use strict";
  let pending = null; // the labelling request in flight, if any

  function click(selector) {
    const el = document.querySelector(selector);
    if (!el || pending) return false;
    // Before htmx, the click posts the form and the page goes: no second post meanwhile.
    if (!window.htmx) pending = "page";
    el.click();
    return true;
  }

  function rate(rating) {
    return click('#rate-form button[name="rating"][value="' + rating + '"]');
  }

  function typing(target) {
    // A select takes its own keys too: arrows change its option, letters and digits jump to one.
    return target && (["TEXTAREA", "INPUT", "SELECT"].includes(target.tagName) || target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    // The review card and the trace page both carry the one keyed #rate-form; the review's
    // "all caught up" card has none, only its Undo, which u still presses.
    if (!document.getElementById("rate-form") && !document.querySelector('[data-testid="undo"]')) return;
    if (event.metaKey || event.ctrlKey || event.altKey) {
      return;
    }
    if (typing(event.target)) {
      // Out of the note, back to the card the keys label (not to nowhere: the page's top).
      if (event.key === "Escape") {
        const card = document.getElementById("review-card");
        if (card && card.contains(event.target)) card.focus({ preventScroll: true });
        else event.target.blur();
      }
      return;
    }
    // Arrows label on the review card only: on the trace page they scroll it (and its wide JSON).
    if (event.key.startsWith("Arrow") && !document.getElementById("review-card")) return;
    const actions = {
      "1": () => rate("positive"), ArrowRight: () => rate("positive"),
      "2": () => rate("negative"), ArrowLeft: () => rate("negative"),
      "3": () => rate("neutral"), ArrowDown: () => rate("neutral"),
      n: () => { const note = document.getElementById("note"); if (note) note.focus(); return !!note; },
      s: () => click('[data-testid="skip"]'),
      u: () => click('[data-testid="undo"]'),
    };
    const action = actions[event.key];
    if (action && action()) event.preventDefault();
  });

  // One labelling request at a time: a double press or a held-down key must not label the
  // next card unseen. The card's comments, a turn's steps and the like must not swallow a key.
  document.addEventListener("htmx:beforeSend", function (event) {
    const elt = event.detail.elt;
    if (!elt || !elt.closest || !elt.closest("[data-labelling]")) return;
    const xhr = event.detail.xhr;
    pending = xhr;
    // Heard on the request itself: the form that sent it is swapped out by the answer, and
    // what htmx fires on a detached form never reaches the document. loadend follows the
    // load (after the swap), an error, an abort and a timeout alike: never stuck.
    xhr.addEventListener("loadend", function () { if (pending === xhr) pending = null; });
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    // Say what the request did (Labelled good.) in the page's live region: the card's own
    // notice arrived with the swap, too late to be a live region a screen reader listens to.
    const said = document.getElementById("review-status");
    if (said && event.detail.target && event.detail.target.id === "review") {
      const notice = document.querySelector('#review [data-testid="notice"]');
      said.textContent = "";
      // Emptied first and filled a moment later: the same words twice in a row are heard twice.
      if (notice) setTimeout(function () { said.textContent = notice.textContent; }, 100);
    }
    // After the last label, the box that says so takes the focus the card had.
    const card = document.getElementById("review-card") || document.getElementById("review-done");
    // A reviewer who opened the note (n) as the card arrived keeps typing in it.
    if (card && !typing(document.activeElement)) card.focus({ preventScroll: true });
  });

  let startX = null, startY = null;
  document.addEventListener("touchstart", function (event) {
    const card = event.target.closest && event.target.closest("#review-card");
    if (!card || typing(event.target)) return;
    startX = event.touches[0].clientX;
    startY = event.touches[0].clientY;
  }, { passive: true });
  document.addEventListener("touchmove", function (event) {
    const card = document.getElementById("review-card");
    if (startX === null || !card) return;
    const dx = event.touches[0].clientX - startX;
    card.style.transform = "translateX(" + dx / 3 + "px) rotate(" + dx / 60 + "deg)";
    card.classList.toggle("swipe-right", dx > 80);
    card.classList.toggle("swipe-left", dx < -80);
  }, { passive: true });
  document.addEventListener("touchend", function (event) {
    const card = document.getElementById("review-card");
    if (startX === null || !card) return;
    const dx = event.changedTouches[0].clientX - startX;
    const dy = event.changedTouches[0].clientY - startY;
    startX = startY = null;
    card.style.transform = "";
    card.classList.remove("swipe-right", "swipe-left");
    // Mostly-horizontal and long enough: a scroll is never taken for a label.
    if (Math.abs(dx) > 100 && Math.abs(dx) > 2 * Math.abs(dy)) rate(dx > 0 ? "positive" : "negative");
  });
})();
