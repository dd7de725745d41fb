// Copy buttons (button[data-copy]) on every page: digests, commands, pull lines.
// A copy that fails (no clipboard on plain HTTP, permission refused) says so on the button.
(function () {
  "use strict";
  document.addEventListener("click", function (e) {
    const b = e.target.closest("button[data-copy]");
    if (!b) return;
    const done = function (text, title) {
      b.textContent = text;
      if (title) b.title = title;
      setTimeout(function () { b.textContent = "copy"; }, 2500);
    };
    if (!navigator.clipboard) {
      done("copy failed", "This page cannot reach the clipboard (it needs HTTPS or localhost); select the text instead.");
      return;
    }
    navigator.clipboard.writeText(b.dataset.copy).then(function () {
      done("copied");
    }, function (err) {
      done("copy failed", "The clipboard refused: " + err);
    });
  });
})();
