// Follows a running build over Server-Sent Events: steps, log lines and status
// arrive without a reload. The log is written the way builds.PlainLog writes it
// on the server, so the finished page reads the same.
(function () {
  "use strict";
  const root = document.getElementById("build");
  if (!root || root.dataset.live !== "true") return;
  const id = root.dataset.buildId;
  const logEl = document.getElementById("log");
  const stepsBody = document.querySelector("#steps tbody");
  const statusEl = document.getElementById("status");

  // Rebuild the log from events: the server already rendered what it had, and
  // the stream replays from the start, so start from an empty log.
  logEl.textContent = "";
  const steps = {};
  let current = 0;
  let pending = "";
  let flushQueued = false;

  // ANSI colour codes become classed spans (as templates.ANSISegments does);
  // other escapes and control bytes are dropped. Text goes in as text, never HTML.
  let fg = 0, bold = false;
  function appendANSI(frag, text) {
    const re = /\x1b\[([0-9;]*)([A-Za-z])/g;
    let last = 0, m;
    function emit(s) {
      s = s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
      if (!s) return;
      if (!fg && !bold) { frag.append(s); return; }
      const span = document.createElement("span");
      span.className = [fg ? "ansi-" + fg : "", bold ? "ansi-bold" : ""].join(" ").trim();
      span.textContent = s;
      frag.append(span);
    }
    while ((m = re.exec(text)) !== null) {
      emit(text.slice(last, m.index));
      last = re.lastIndex;
      if (m[2] !== "m") continue;
      for (const p of (m[1] || "0").split(";")) {
        const n = parseInt(p || "0", 10);
        if (n === 0) { fg = 0; bold = false; }
        else if (n === 1) bold = true;
        else if (n === 22) bold = false;
        else if (n === 39) fg = 0;
        else if ((n >= 30 && n <= 37) || (n >= 90 && n <= 97)) fg = n;
      }
    }
    emit(text.slice(last));
  }
  function flush() {
    flushQueued = false;
    if (!pending) return;
    const atBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const l of pending.split("\n").slice(0, -1)) {
      fg = 0; bold = false;
      appendANSI(frag, l);
      frag.append("\n");
    }
    logEl.append(frag);
    pending = "";
    if (atBottom) logEl.scrollTop = logEl.scrollHeight;
  }
  function line(text) {
    pending += text + "\n";
    if (!flushQueued) {
      flushQueued = true;
      requestAnimationFrame(flush);
    }
  }
  // head makes s the current step: a blank line when the output switches
  // steps, then the step's "#N name" line the first time.
  function head(s) {
    if (current !== s.number) {
      if (current !== 0) line("");
      current = s.number;
    }
    if (!s.headed) {
      s.headed = true;
      line("#" + s.number + " " + s.name);
    }
  }
  function seconds(a, b) {
    return ((Date.parse(b) - Date.parse(a)) / 1000).toFixed(1);
  }
  function cell(tr, i, text, cls) {
    const td = tr.children[i];
    td.textContent = text;
    if (cls) td.className = cls;
  }
  function stepRow(s) {
    let tr = stepsBody.querySelector('tr[data-step="' + CSS.escape(s.digest) + '"]');
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.step = s.digest;
      tr.dataset.testid = "step-row";
      for (let i = 0; i < 4; i++) tr.appendChild(document.createElement("td"));
      stepsBody.appendChild(tr);
    }
    cell(tr, 0, String(s.number), "mono");
    cell(tr, 1, s.name, "mono");
    if (s.error) {
      const div = document.createElement("div");
      div.className = "step-error";
      div.textContent = s.error;
      tr.children[1].appendChild(div);
      tr.classList.add("failed");
    }
    cell(tr, 2, s.platform || "", "mono");
    if (s.node) {
      const span = document.createElement("span");
      span.className = "muted node";
      span.dataset.testid = "step-node";
      span.textContent = " · " + s.node;
      tr.children[2].appendChild(span);
    }
    let time = "";
    if (s.cached) time = "CACHED";
    else if (s.started_at && s.finished_at) time = seconds(s.started_at, s.finished_at) + "s";
    else if (s.started_at) time = "running…";
    cell(tr, 3, time, s.cached ? "cached" : "");
  }
  function setStatus(status) {
    statusEl.dataset.status = status;
    const badge = statusEl.querySelector(".badge");
    badge.className = "badge " + status;
    badge.textContent = status;
    const q = document.getElementById("queue");
    if (q && status !== "queued") q.remove();
  }

  const es = new EventSource("/api/v1/builds/" + encodeURIComponent(id) + "/events");
  es.addEventListener("step", function (e) {
    const d = JSON.parse(e.data);
    const s = steps[d.digest] || (steps[d.digest] = {});
    Object.assign(s, d);
    stepRow(s);
    if (!s.finished_at && !s.cached) {
      if (s.started_at && !s.headed) head(s);
      return;
    }
    if (s.ended) return;
    head(s);
    s.ended = true;
    if (s.error) line("#" + s.number + " ERROR: " + s.error);
    else if (s.cached) line("#" + s.number + " CACHED");
    else if (s.started_at) line("#" + s.number + " DONE " + seconds(s.started_at, s.finished_at) + "s");
    else line("#" + s.number + " DONE");
  });
  es.addEventListener("log", function (e) {
    const d = JSON.parse(e.data);
    const s = steps[d.step] || (steps[d.step] = { digest: d.step, number: d.number, name: "" });
    head(s);
    if (d.elapsed >= 0 && d.stream !== 0) line("#" + d.number + " " + d.elapsed.toFixed(3) + " " + d.text);
    else line("#" + d.number + " " + d.text);
  });
  es.addEventListener("warning", function (e) {
    const d = JSON.parse(e.data);
    line("");
    line("WARNING: " + d.short.trim() + (d.line ? " (line " + d.line + ")" : ""));
    current = 0;
  });
  es.addEventListener("status", function (e) {
    const d = JSON.parse(e.data);
    setStatus(d.status);
    if (["failed", "canceled", "interrupted"].indexOf(d.status) >= 0) {
      if (current !== 0) line("");
      current = 0;
      line(d.status.toUpperCase() + ": " + (d.error || ""));
    }
  });
  es.addEventListener("done", function () {
    es.close();
    flush();
    // Swap in the finished page (digests, error excerpt) without reloading.
    fetch(location.href, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.getElementById("build");
        if (fresh) root.replaceWith(fresh);
      })
      .catch(function () {});
  });
})();

