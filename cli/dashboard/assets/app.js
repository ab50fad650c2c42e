// meshrev dashboard: follows the server's events, filters and sorts the
// namespaces, and sends the steps. No framework, no build step.
"use strict";
(function () {
  const token = document.querySelector('meta[name="meshrev-token"]').content;
  let version = document.querySelector('meta[name="meshrev-version"]').content;
  const $ = (id) => document.getElementById(id);
  const live = $("live"), liveText = $("live-text");
  const status = $("step-status"), errorBox = $("step-error"), log = $("step-log");

  function setLive(state, text) {
    live.dataset.state = state;
    liveText.textContent = text;
  }

  // --- live updates -------------------------------------------------------
  function connect() {
    const es = new EventSource("/events?token=" + encodeURIComponent(token) + "&since=" + encodeURIComponent(version));
    es.onopen = () => setLive("live", "live");
    es.onerror = () => setLive("offline", "reconnecting…");
    es.addEventListener("fragment", (e) => {
      const f = JSON.parse(e.data);
      version = String(f.version);
      document.querySelectorAll('[data-fragment="' + f.name + '"]').forEach((el) => {
        el.innerHTML = f.html;
      });
      if (f.name === "namespaces") { applySort(); applyFilter(); }
      document.body.dataset.version = version;
      setLive("live", "live · updated " + new Date().toLocaleTimeString());
    });
    // A step started from another page: say so here too (this page's own
    // step is reported by its answer, with the refusal).
    es.addEventListener("running", (e) => {
      if (busy) return;
      const r = JSON.parse(e.data);
      log.textContent = "";
      status.textContent = "Running " + r.step + " (from another page)…";
    });
    es.addEventListener("progress", (e) => {
      const p = JSON.parse(e.data);
      log.textContent += p.line + "\n";
    });
    es.addEventListener("done", (e) => {
      if (busy) return;
      const d = JSON.parse(e.data);
      status.textContent = (d.ok ? "Done: " : "Refused: ") + d.step + " (from another page)";
    });
  }
  document.body.dataset.version = version;
  connect();

  // --- namespaces: filter and sort ----------------------------------------
  const filter = $("ns-filter");
  const table = $("ns-table");
  let sortCol = 0, sortDir = 1;
  function rows() { return table ? Array.from(table.tBodies[0].rows) : []; }
  function applyFilter() {
    if (!filter) return;
    const q = filter.value.trim().toLowerCase();
    let shown = 0;
    const all = rows();
    for (const r of all) {
      const hit = q === "" || r.textContent.toLowerCase().includes(q);
      r.hidden = !hit;
      if (hit) shown++;
    }
    $("ns-count").textContent = shown + " of " + all.length + " namespaces";
  }
  function applySort() {
    if (!table) return;
    const body = table.tBodies[0];
    const key = (r) => (r.cells[sortCol] ? r.cells[sortCol].textContent.trim() : "");
    const sorted = rows().sort((a, b) => sortDir * key(a).localeCompare(key(b), undefined, { numeric: true }));
    const frag = document.createDocumentFragment();
    sorted.forEach((r) => frag.appendChild(r));
    body.appendChild(frag);
    table.querySelectorAll("thead th").forEach((th, i) => {
      if (i === sortCol) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }
  if (filter) {
    let t;
    filter.addEventListener("input", () => { clearTimeout(t); t = setTimeout(applyFilter, 80); });
    applyFilter();
  }
  if (table) {
    table.querySelector("thead").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-sort]");
      if (!b) return;
      const col = Number(b.dataset.sort);
      sortDir = col === sortCol ? -sortDir : 1;
      sortCol = col;
      applySort();
    });
  }

  // --- steps --------------------------------------------------------------
  const dialog = $("confirm");
  function confirmStep(text) {
    return new Promise((resolve) => {
      $("confirm-text").textContent = text;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });
  }

  let busy = false;
  async function run(action, button) {
    if (busy) { status.textContent = "Another step is running: wait for it to finish."; return; }
    busy = true;
    if (button) button.disabled = true;
    errorBox.hidden = true;
    errorBox.textContent = "";
    log.textContent = "";
    status.textContent = "Running " + action.step + "…";
    try {
      const resp = await fetch("/api/step", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Meshrev-Token": token },
        body: JSON.stringify(action),
      });
      let res;
      if ((resp.headers.get("Content-Type") || "").startsWith("application/json")) res = await resp.json();
      else res = { ok: false, error: (await resp.text()).trim() };
      if (res.output && log.textContent.length < res.output.length) log.textContent = res.output;
      if (res.ok) {
        status.textContent = "Done: " + action.step;
      } else {
        status.textContent = "Refused: " + action.step;
        errorBox.textContent = res.error;
        errorBox.hidden = false;
      }
    } catch (err) {
      status.textContent = "Failed: " + action.step;
      errorBox.textContent = String(err);
      errorBox.hidden = false;
    } finally {
      busy = false;
      if (button && button.isConnected) button.disabled = false;
    }
  }

  document.addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-step]");
    if (!b || b.form) return;
    const d = b.dataset;
    const action = { step: d.step };
    if (d.namespace) action.namespace = d.namespace;
    if (d.to) action.to = d.to;
    if (d.workload) action.workloads = [d.workload];
    if (d.gateways) action.gateways = true;
    if (d.confirm) {
      // Said at once, so that nothing reads the last step's outcome while
      // the dialog is open or closing.
      if (!busy) status.textContent = "Waiting for confirmation: " + d.step + "…";
      if (!(await confirmStep(d.confirm))) {
        status.textContent = "Cancelled: " + d.step;
        return;
      }
    }
    run(action, b);
  });

  document.addEventListener("submit", (e) => {
    const form = e.target.closest("form.step");
    if (!form) return;
    e.preventDefault();
    const action = { step: form.dataset.step };
    if (action.step === "canary-deploy") action.version = form.elements.version.value.trim();
    if (action.step === "dataplane-upgrade") {
      const what = e.submitter ? e.submitter.value : "all";
      action.all = what === "all";
      action.gateways = what === "gateways";
      action.batch = Number(form.elements.batch.value) || 0;
    }
    run(action, e.submitter);
  });
})();
