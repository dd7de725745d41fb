// Copy buttons (button[data-copy]) on every page: digests, commands, pull lines.
(function () {
  "use strict";
  document.addEventListener("click", function (e) {
    const b = e.target.closest("button[data-copy]");
    if (!b || !navigator.clipboard) return;
    navigator.clipboard.writeText(b.dataset.copy).then(function () {
      b.textContent = "copied";
      setTimeout(function () { b.textContent = "copy"; }, 1500);
    });
  });
})();
