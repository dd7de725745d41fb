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

  function flush() {
    flushQueued = false;
    if (!pending) return;
    const atBottom = logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
    logEl.append(pending);
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
