/* Copy buttons: <button class="copy-button" data-copy-from="ID"> copies the text (or the
   value, for inputs and textareas) of the element with that id. Delegated from the
   document, so buttons in fragments swapped in by htmx work too; no inline script, so it
   runs under the Content-Security-Policy. The button gets the class "copied" for a moment
   and an element with id "copy-status" (an aria-live region), if the page has one, says so. */
(function () {
  "use strict";

  function textOf(source) {
    return "value" in source && typeof source.value === "string" ? source.value : source.textContent;
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try {
      done = document.execCommand("copy");
    } catch (error) {
      done = false;
    }
    document.body.removeChild(area);
    return done;
  }

  function report(button, done) {
    var status = document.getElementById("copy-status");
    if (status) {
      status.textContent = done ? "Copied." : "Copying failed: select the text and press Ctrl+C.";
    }
    if (done) {
      button.classList.add("copied");
      window.setTimeout(function () { button.classList.remove("copied"); }, 2000);
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-from]");
    if (!button) {
      return;
    }
    var source = document.getElementById(button.getAttribute("data-copy-from"));
    if (!source) {
      return;
    }
    var text = textOf(source);
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { report(button, true); },
        function () { report(button, fallbackCopy(text)); }
      );
    } else {
      report(button, fallbackCopy(text));
    }
  });
})();
