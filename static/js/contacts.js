/* The contacts pages: "select all on this page", a confirmation before a bulk delete, and
   before submitting any form marked data-confirm="question".
   Delegated from the document, so a table swapped in by htmx works too; no inline script,
   so it runs under the Content-Security-Policy. */
(function () {
  "use strict";

  document.addEventListener("change", function (event) {
    if (event.target.id !== "select-page") {
      return;
    }
    var form = event.target.closest("form");
    form.querySelectorAll('input[name="ids"]').forEach(function (box) {
      box.checked = event.target.checked;
    });
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    if (form.id !== "bulk-form") {
      return;
    }
    var action = form.querySelector('[name="action"]');
    var button = form.querySelector("[data-confirm-delete]");
    if (action && action.value === "delete" && button &&
        !window.confirm(button.getAttribute("data-confirm-delete"))) {
      event.preventDefault();
    }
  });
})();
