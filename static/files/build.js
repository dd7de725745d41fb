// The build page's log viewer and live updates. The server renders every
// line (its plain-log text and ANSI colour classes); this file only places
// them: a step's lines load when it is opened, search opens the steps that
// match, #step-N-LK links open and mark a line, and while the build runs
// the event stream (from the last event the page showed) adds steps and
// lines, follows the end, and swaps in the finished page when it is done.
(function () {
  "use strict";

  function init(root) {
    const id = root.dataset.buildId;
    const live = root.dataset.live === "true";
    const logEl = root.querySelector("#log");
    if (!logEl) return;
    const stepsBody = root.querySelector("#steps tbody");
    const statusEl = root.querySelector("#status");
    const errorEl = root.querySelector("#log-error");
    const followEl = root.querySelector("#follow");
    const steps = {}; // #N → {el, lines: shown, lastSeq, loaded, loading, buffer, touched}

    function showError(msg) {
      errorEl.textContent = msg;
      errorEl.hidden = false;
    }

    function stepOf(el) {
      const n = Number(el.dataset.number);
      if (!steps[n]) {
        const shown = el.querySelectorAll(".ln");
        steps[n] = {
          el: el, lines: shown.length, loaded: el.dataset.loaded === "true",
          lastSeq: shown.length ? Number(shown[shown.length - 1].dataset.seq) : 0,
          loading: null, buffer: [], touched: false,
        };
        el.addEventListener("toggle", function () {
          if (el.open) load(steps[n]);
        });
        el.querySelector("summary").addEventListener("click", function () { steps[n].touched = true; });
      }
      return steps[n];
    }
    logEl.querySelectorAll("details.steplog").forEach(stepOf);

    // One rendered line: its number links to itself; its text comes as
    // classed runs from the server and goes in as text, never as HTML.
    function lineEl(n, k, l) {
      const div = document.createElement("div");
      div.className = "ln";
      div.id = "step-" + n + "-L" + k;
      div.dataset.seq = String(l.seq);
      const a = document.createElement("a");
      a.className = "lno";
      a.href = "#" + div.id;
      a.setAttribute("aria-label", "line " + k);
      a.textContent = String(k);
      const text = document.createElement("span");
      text.className = "lt";
      for (const [cls, t] of l.spans || []) {
        if (cls) {
          const span = document.createElement("span");
          span.className = cls;
          span.textContent = t;
          text.append(span);
        } else {
          text.append(t);
        }
      }
      div.append(a, text);
      return div;
    }

    function append(s, l) {
      if (l.seq <= s.lastSeq) return; // shown already
      s.lines++;
      s.lastSeq = l.seq;
      s.el.querySelector(".lines").append(lineEl(Number(s.el.dataset.number), s.lines, l));
    }

    // load fetches a step's lines, page by page; live lines that arrive
    // meanwhile wait in its buffer and follow once it is loaded.
    function load(s) {
      if (s.loaded) return Promise.resolve();
      if (s.loading) return s.loading;
      const n = s.el.dataset.number;
      const page = function (after) {
        return fetch("/api/v1/builds/" + encodeURIComponent(id) + "/steps/" + n + "/log?after=" + after, { headers: { Accept: "application/json" } })
          .then(function (r) {
            if (!r.ok) throw new Error("the log of step #" + n + " could not be loaded (" + r.status + ")");
            return r.json();
          })
          .then(function (d) {
            const frag = document.createDocumentFragment();
            for (const l of d.lines) {
              if (l.seq <= s.lastSeq) continue;
              s.lines++;
              s.lastSeq = l.seq;
              frag.append(lineEl(Number(n), s.lines, l));
            }
            s.el.querySelector(".lines").append(frag);
            if (d.next) return page(d.next);
          });
      };
      s.loading = page(s.lastSeq).then(function () {
        s.loaded = true;
        s.el.dataset.loaded = "true";
        for (const l of s.buffer) append(s, l);
        s.buffer = [];
      }).catch(function (err) {
        s.loading = null;
        showError(err.message);
      });
      return s.loading;
    }

    // Search asks the server (folded steps' lines are not on the page yet),
    // then opens and loads the steps that match and marks the lines.
    let matches = [], current = -1;
    const matchesEl = root.querySelector("#log-matches");
    const prev = root.querySelector("#match-prev"), next = root.querySelector("#match-next");
    function mark(i) {
      if (!matches.length) return;
      current = (i + matches.length) % matches.length;
      logEl.querySelectorAll(".ln.current").forEach(function (e) { e.classList.remove("current"); });
      const m = matches[current];
      const el = document.getElementById(m.anchor);
      if (el) {
        el.classList.add("current");
        el.scrollIntoView({ block: "center" });
      }
      matchesEl.textContent = (current + 1) + " of " + matches.length + (total > matches.length ? " shown, " + total + " in all" : "");
    }
    let total = 0;
    root.querySelector("#log-search-form").addEventListener("submit", function (e) {
      e.preventDefault();
      const q = root.querySelector("#log-search").value.trim();
      logEl.querySelectorAll(".ln.match").forEach(function (e) { e.classList.remove("match", "current"); });
      if (!q) { matchesEl.textContent = ""; return; }
      fetch("/api/v1/builds/" + encodeURIComponent(id) + "/log/search?q=" + encodeURIComponent(q), { headers: { Accept: "application/json" } })
        .then(function (r) {
          if (!r.ok) return r.json().then(function (d) { throw new Error(d.error || "search failed (" + r.status + ")"); });
          return r.json();
        })
        .then(function (d) {
          matches = d.matches;
          total = d.count;
          prev.disabled = next.disabled = matches.length < 2;
          if (!matches.length) { matchesEl.textContent = "no line matches"; return; }
          const wanted = {};
          for (const m of matches) wanted[m.number] = true;
          return Promise.all(Object.keys(wanted).map(function (n) {
            const el = document.getElementById("step-" + n);
            if (!el) return null;
            el.open = true;
            return load(stepOf(el));
          })).then(function () {
            for (const m of matches) {
              const el = document.getElementById(m.anchor);
              if (el) el.classList.add("match");
            }
            mark(0);
          });
        })
        .catch(function (err) { showError(err.message); });
    });
    prev.addEventListener("click", function () { mark(current - 1); });
    next.addEventListener("click", function () { mark(current + 1); });

    root.querySelector("#log-expand").addEventListener("click", function () {
      logEl.querySelectorAll("details.steplog").forEach(function (el) { el.open = true; });
    });
    root.querySelector("#log-collapse").addEventListener("click", function () {
      logEl.querySelectorAll("details.steplog").forEach(function (el) { el.open = false; });
    });

    // A #step-N-LK link opens step N, loads it and marks line K.
    function followHash() {
      const m = /^#step-(\d+)-L(\d+)$/.exec(location.hash);
      if (!m) return;
      const el = document.getElementById("step-" + m[1]);
      if (!el) return;
      el.open = true;
      load(stepOf(el)).then(function () {
        const line = document.getElementById(location.hash.slice(1));
        if (!line) return;
        logEl.querySelectorAll(".ln.target").forEach(function (e) { e.classList.remove("target"); });
        line.classList.add("target");
        line.scrollIntoView({ block: "center" });
      });
    }
    window.addEventListener("hashchange", followHash);
    followHash();

    if (!live) return;

    // Follow the end while the reader is there; scrolling up stops it.
    function atEnd() { return window.innerHeight + window.scrollY >= document.body.scrollHeight - 40; }
    let scrolling = false;
    window.addEventListener("scroll", function () {
      if (!scrolling && followEl.checked && !atEnd()) followEl.checked = false;
    }, { passive: true });
    function toEnd() {
      if (!followEl.checked) return;
      scrolling = true;
      window.scrollTo(0, document.body.scrollHeight);
      requestAnimationFrame(function () { scrolling = false; });
    }
    followEl.addEventListener("change", toEnd);

    function seconds(a, b) { return ((Date.parse(b) - Date.parse(a)) / 1000).toFixed(1); }
    function state(s) {
      if (s.error) return "ERROR";
      if (s.cached) return "CACHED";
      if (s.finished_at && s.started_at) return "DONE " + seconds(s.started_at, s.finished_at) + "s";
      if (s.finished_at) return "DONE";
      return s.started_at ? "running" : "waiting";
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
      const t = s.cached ? "CACHED" : s.started_at && s.finished_at ? seconds(s.started_at, s.finished_at) + "s" : s.started_at ? "running…" : "";
      cell(tr, 3, t, s.cached ? "cached" : "");
    }
    // stepLog makes or updates a step's folder in the log: open while it
    // runs or when it failed, folded once it is done (unless the reader
    // opened it).
    function stepLog(d) {
      let el = document.getElementById("step-" + d.number);
      if (!el) {
        el = document.createElement("details");
        el.className = "steplog";
        el.id = "step-" + d.number;
        el.dataset.number = String(d.number);
        el.dataset.lines = "0";
        el.dataset.loaded = "true";
        el.dataset.testid = "step-log";
        const sum = document.createElement("summary");
        const num = document.createElement("span");
        num.className = "mono";
        num.textContent = "#" + d.number;
        const name = document.createElement("span");
        name.className = "mono step-name";
        const meta = document.createElement("span");
        meta.className = "muted step-meta";
        const count = document.createElement("span");
        count.className = "count";
        count.textContent = "0";
        const st = document.createElement("span");
        st.className = "state";
        meta.append(st, " · ", count, " lines");
        sum.append(num, " ", name, " ", meta);
        const lines = document.createElement("div");
        lines.className = "lines";
        el.append(sum, lines);
        logEl.append(el);
      }
      const s = stepOf(el);
      el.querySelector(".step-name").textContent = d.name;
      el.querySelector(".step-meta .state").textContent = state(d);
      if (d.error) {
        el.classList.add("failed");
        if (!el.querySelector(".step-error")) {
          const err = document.createElement("div");
          err.className = "step-error mono";
          err.textContent = "#" + d.number + " ERROR: " + d.error;
          el.append(err);
        }
      }
      if (!s.touched) {
        const running = d.started_at && !d.finished_at && !d.cached;
        if (running || d.error) {
          if (!el.open) { el.open = true; load(s); }
        } else if (d.finished_at || d.cached) {
          el.open = false;
        }
      }
      return s;
    }
    function setStatus(status) {
      statusEl.dataset.status = status;
      const badge = statusEl.querySelector(".badge");
      badge.className = "badge " + status;
      badge.textContent = status;
      const q = document.getElementById("queue");
      if (q && status !== "queued") q.remove();
    }

    const es = new EventSource("/api/v1/builds/" + encodeURIComponent(id) + "/events?after=" + (logEl.dataset.after || "0"));
    es.addEventListener("step", function (e) {
      const d = JSON.parse(e.data);
      stepRow(d);
      stepLog(d);
      toEnd();
    });
    es.addEventListener("log", function (e) {
      const d = JSON.parse(e.data);
      let el = document.getElementById("step-" + d.number);
      const s = el ? stepOf(el) : stepLog({ number: d.number, name: "" });
      el = s.el;
      el.dataset.lines = String(Number(el.dataset.lines) + (d.seq > s.lastSeq ? 1 : 0));
      el.querySelector(".count").textContent = el.dataset.lines;
      if (s.loaded) append(s, d);
      else if (s.loading) s.buffer.push(d);
      toEnd();
    });
    es.addEventListener("status", function (e) {
      setStatus(JSON.parse(e.data).status);
    });
    es.addEventListener("done", function () {
      es.close();
      // Swap in the finished page (digests, timeline, error excerpt) without reloading.
      fetch(location.href, { headers: { Accept: "text/html" } })
        .then(function (r) {
          if (!r.ok) throw new Error("the finished build could not be loaded (" + r.status + "); reload the page");
          return r.text();
        })
        .then(function (html) {
          const doc = new DOMParser().parseFromString(html, "text/html");
          const fresh = doc.getElementById("build");
          if (!fresh) return;
          // Keep the steps the reader opened open.
          const open = Array.from(logEl.querySelectorAll("details.steplog[open]")).map(function (el) { return el.id; });
          root.replaceWith(fresh);
          for (const sid of open) {
            const el = document.getElementById(sid);
            if (el) el.open = true;
          }
          init(fresh);
        })
        .catch(function (err) { showError(err.message); });
    });
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) showError("the live log stopped; reload the page to follow the build again");
    };
  }

  const root = document.getElementById("build");
  if (root) init(root);
})();
