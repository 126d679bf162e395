// The curation page: the verification queue (one key per proposal) and, for reviewers, the
// curation operations (find label errors or redundant items, split or merge a class; accept
// or decline candidates, apply, dismiss, undo). Everything goes through /api/v1/curation.
// Every label, reason and item text is inserted with textContent, never as HTML.
"use strict";
(function () {
  const API = "/api/v1";
  const CUR = "/curation";
  const csrf = document.querySelector('meta[name="exemplar-csrf"]').content;
  const reviewer = document.querySelector('meta[name="exemplar-reviewer"]').content === "yes";
  const $ = (id) => document.getElementById(id);
  const thumb = window.exemplarThumbs.thumb;
  const options = $("class-options");
  const keyToClass = new Map(
    [...options.content.querySelectorAll("option")]
      .filter((o) => o.dataset.key)
      .map((o) => [o.dataset.key, o.value]),
  );
  const PAGE = 50;
  let offset = 0;
  let total = 0;
  let rows = [];  // [{p, tr, select, done}]
  let focused = -1;
  let current = null;  // the operation opened: its detail

  async function call(method, path, body) {
    const init = { method, headers: { "X-Exemplar-CSRF": csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
    return response;
  }

  // The JSON body of a successful call, or null after showing the server's detail.
  async function json(method, path, body) {
    $("error").textContent = "";
    try {
      const response = await call(method, path, body);
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || response.status);
        $("error").textContent = "Could not " + method.toLowerCase() + " " + path + ": " + detail;
        return null;
      }
      return data;
    } catch (err) {
      $("error").textContent = "Network error: " + err.message;
      return null;
    }
  }

  function cell(tr, content) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content == null ? "" : String(content);
    tr.appendChild(td);
    return td;
  }

  function button(text, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  function classSelect(value, extra) {
    const select = document.createElement("select");
    select.setAttribute("aria-label", "class");
    select.appendChild(options.content.cloneNode(true));
    for (const name of extra || []) {
      if (![...select.options].some((o) => o.value === name)) {
        const o = document.createElement("option");
        o.value = o.textContent = name;
        select.appendChild(o);
      }
    }
    if (value != null) select.value = value;
    return select;
  }

  // -- the verification queue ---------------------------------------------------------------

  function filters() {
    const q = new URLSearchParams({ order: $("order").value, limit: String(PAGE), offset: String(offset) });
    if ($("filter-label").value) q.set("label", $("filter-label").value);
    const lo = Number($("min-confidence").value), hi = Number($("max-confidence").value);
    if (lo > 0) q.set("min_confidence", String(Math.min(1, lo)));
    if (hi < 1) q.set("max_confidence", String(Math.max(0, hi)));
    return q;
  }

  async function loadQueue() {
    const data = await json("GET", CUR + "/verification?" + filters());
    if (data === null) return;
    total = data.total;
    $("queue-message").textContent = data.total
      ? data.total + " open proposals; showing " + (offset + 1) + "–" + (offset + data.items.length) + "."
      : "No open proposals match.";
    renderQueue(data.items);
    $("queue-prev").disabled = offset === 0;
    $("queue-next").disabled = offset + PAGE >= total;
    if (rows.length) focusRow(0, false);
  }

  function renderQueue(items) {
    const tbody = document.querySelector("#queue tbody");
    tbody.replaceChildren();
    rows = [];
    focused = -1;
    for (const p of items) {
      const tr = document.createElement("tr");
      tr.tabIndex = -1;
      tr.dataset.kind = p.kind;
      tr.dataset.id = String(p.id);
      tr.dataset.itemId = String(p.item_id);
      const row = { p, tr, select: classSelect(p.label), done: false };
      cell(tr, p.item_id);
      cell(tr, thumb(p, 64));
      cell(tr, p.label + (p.kind === "object" ? " (box)" : ""));
      const conf = cell(tr, p.confidence == null ? "—" : p.confidence.toFixed(3));
      conf.className = "confidence";
      cell(tr, p.model_version);
      cell(tr, row.select);
      const td = cell(tr, "");
      td.className = "decision";
      td.append(button("accept", () => decide(row, "verify")), button("reject", () => decide(row, "reject")));
      tr.addEventListener("focusin", () => { focusRow(rows.indexOf(row), false); });
      tbody.appendChild(tr);
      rows.push(row);
    }
  }

  function focusRow(index, move = true) {
    if (!rows.length) return;
    focused = Math.max(0, Math.min(index, rows.length - 1));
    rows.forEach((r, i) => { r.tr.tabIndex = i === focused ? 0 : -1; r.tr.classList.toggle("focused", i === focused); });
    if (move) {
      rows[focused].tr.focus();
      rows[focused].tr.scrollIntoView({ block: "nearest" });
    }
  }

  async function decide(row, action, label) {
    if (row.done) return;
    const chosen = label !== undefined ? label : row.select.value;
    const body = action === "verify" && chosen !== row.p.label ? { label: chosen } : undefined;
    row.done = true;  // one decision per row, even with keys pressed quickly
    const data = await json("POST", CUR + "/verification/" + row.p.kind + "/" + row.p.id + "/" + action, body);
    if (data === null) { row.done = false; return; }
    row.tr.classList.add("decided", action === "verify" ? "accepted" : "rejected");
    row.tr.querySelector("td.decision").textContent =
      action === "verify" ? "accepted" + (body ? " as " + chosen : "") : "rejected";
    const index = rows.indexOf(row);
    const next = rows.findIndex((r, i) => i > index && !r.done);
    if (next >= 0) focusRow(next);
    else if (rows.every((r) => r.done)) {
      // the decided proposals left the queue: the same offset shows the next ones
      const left = total - rows.length;
      if (offset >= left) offset = Math.max(0, left - PAGE);
      loadQueue();
    }
  }

  function syncRange(range, number) {
    range.addEventListener("input", () => { number.value = range.value; });
    range.addEventListener("change", () => { offset = 0; loadQueue(); });
    number.addEventListener("change", () => { range.value = number.value; offset = 0; loadQueue(); });
  }
  syncRange($("min-range"), $("min-confidence"));
  syncRange($("max-range"), $("max-confidence"));
  for (const id of ["order", "filter-label"]) $(id).addEventListener("change", () => { offset = 0; loadQueue(); });
  $("queue-filters").addEventListener("submit", (event) => { event.preventDefault(); offset = 0; loadQueue(); });
  $("queue-prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadQueue(); });
  $("queue-next").addEventListener("click", () => { offset += PAGE; loadQueue(); });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const key = event.key;
    if (key === "?" && !(target instanceof HTMLInputElement)) { $("help").hidden = !$("help").hidden; event.preventDefault(); return; }
    if (key === "Escape") { $("help").hidden = true; return; }
    // Form fields, buttons and the operations' tables keep their own keys.
    if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement) return;
    if (target instanceof HTMLButtonElement && (key === "Enter" || key === " ")) return;
    if (target !== document.body && !target.closest("#queue")) return;
    if (!rows.length) return;
    if (focused < 0) focusRow(0);
    const row = rows[focused];
    if (key === "j" || key === "ArrowDown") focusRow(focused + 1);
    else if (key === "k" || key === "ArrowUp") focusRow(focused - 1);
    else if (key === "Enter" || key === "a") decide(row, "verify");
    else if (key === "r" || key === "x") decide(row, "reject");
    else if (keyToClass.has(key)) { row.select.value = keyToClass.get(key); decide(row, "verify", keyToClass.get(key)); }
    else return;
    event.preventDefault();
  });

  // -- curation operations (reviewers and admins) ----------------------------------------------

  function counts(c) {
    return Object.entries(c).map(([k, v]) => v + " " + k).join(", ") || "none";
  }

  async function loadOperations() {
    const ops = await json("GET", CUR + "/operations");
    if (ops === null) return;
    const tbody = document.querySelector("#operations tbody");
    tbody.replaceChildren();
    for (const op of ops) {
      const tr = document.createElement("tr");
      tr.dataset.operationId = String(op.id);
      tr.dataset.status = op.status;
      cell(tr, op.id);
      cell(tr, op.kind);
      cell(tr, op.status);
      cell(tr, op.summary);
      cell(tr, counts(op.candidates));
      cell(tr, op.created_by || "loop");
      cell(tr, new Date(op.created_at).toLocaleString());
      cell(tr, button("open", () => openOperation(op.id)));
      tbody.appendChild(tr);
    }
  }

  function suggestedCell(op, c) {
    if (op.kind === "prune") return document.createTextNode("remove from training");
    if (op.status !== "proposed") return document.createTextNode(c.suggested_label || "");
    return classSelect(c.suggested_label, op.classes);
  }

  async function openOperation(id) {
    const op = await json("GET", CUR + "/operations/" + id + "?limit=200");
    if (op === null) return;
    current = op;
    $("operation").hidden = false;
    $("operation-title").textContent = "Operation " + op.id + ": " + op.kind + " (" + op.status + ")";
    const n = Object.values(op.candidates).reduce((a, b) => a + b, 0);
    $("operation-summary").textContent = (op.summary || "") + " · " + counts(op.candidates)
      + (n > op.items.length ? " · showing the first " + op.items.length + " of " + n : "");
    const open = op.status === "proposed";
    $("accept-shown").hidden = $("apply").hidden = $("dismiss").hidden = !open;
    $("undo").hidden = op.status !== "applied";
    const tbody = document.querySelector("#candidates tbody");
    tbody.replaceChildren();
    for (const c of op.items) {
      const tr = document.createElement("tr");
      tr.dataset.candidateId = String(c.id);
      cell(tr, c.item_id + (c.object_id != null ? " · object " + c.object_id : ""));
      cell(tr, thumb(c, 64));
      cell(tr, c.reason);
      cell(tr, c.score == null ? "" : c.score.toFixed(3));
      cell(tr, c.current_label);
      const suggested = suggestedCell(op, c);
      cell(tr, suggested);
      const decision = cell(tr, c.decision);
      decision.className = "decision";
      const buttons = cell(tr, "");
      if (open) {
        const send = async (value) => {
          const body = { decisions: { [c.id]: value } };
          if (suggested instanceof HTMLSelectElement && suggested.value !== c.suggested_label) body.labels = { [c.id]: suggested.value };
          if (await json("POST", CUR + "/operations/" + op.id + "/decisions", body) !== null) {
            decision.textContent = value;
            tr.className = value;
          }
        };
        buttons.append(button("accept", () => send("accepted")), button("decline", () => send("declined")));
      }
      tr.className = c.decision;
      tbody.appendChild(tr);
    }
  }

  async function acceptShown() {
    if (!current) return;
    const body = { decisions: {}, labels: {} };
    for (const tr of document.querySelectorAll("#candidates tbody tr")) {
      const c = current.items.find((x) => String(x.id) === tr.dataset.candidateId);
      if (!c || tr.classList.contains("declined")) continue;
      body.decisions[c.id] = "accepted";
      const select = tr.querySelector("select");
      if (select && select.value !== c.suggested_label) body.labels[c.id] = select.value;
    }
    if (await json("POST", CUR + "/operations/" + current.id + "/decisions", body) !== null) {
      await openOperation(current.id);
      loadOperations();
    }
  }

  async function operationAction(action, body) {
    if (!current) return;
    const data = await json("POST", CUR + "/operations/" + current.id + "/" + action, body);
    if (data === null) return;
    $("ops-status").textContent = action === "dismiss"
      ? "Operation " + current.id + " dismissed."
      : "Operation " + current.id + " " + data.status + ": " + data.written + " labels written"
        + (data.skipped.length ? ", " + data.skipped.length + " skipped (changed since)" : "") + ".";
    await openOperation(current.id);
    loadOperations();
    loadQueue();
  }

  async function find(steps) {
    $("ops-status").textContent = "Searching…";
    const found = await json("POST", CUR + "/find", { steps });
    if (found === null) { $("ops-status").textContent = ""; return; }
    $("ops-status").textContent = found.length
      ? "Recorded " + found.map((op) => "operation " + op.id + " (" + op.kind + ", " + counts(op.candidates) + ")").join("; ") + "."
      : "Nothing found.";
    await loadOperations();
    if (found.length) openOperation(found[0].id);
  }

  function names(text) {
    return text.split(",").map((s) => s.trim()).filter((s) => s);
  }

  if (reviewer) {
    $("find-errors").addEventListener("click", () => find(["label_errors"]));
    $("find-prune").addEventListener("click", () => find(["prune"]));
    $("propose").addEventListener("click", async () => {
      const data = await json("POST", CUR + "/propose", {});
      if (data === null) return;
      $("ops-status").textContent = "Model " + data.model_version + " proposed " + data.proposed + " labels.";
      offset = 0;
      loadQueue();
    });
    $("accept-shown").addEventListener("click", acceptShown);
    $("apply").addEventListener("click", () => operationAction("apply", { all_pending: false }));
    $("dismiss").addEventListener("click", () => operationAction("dismiss"));
    $("undo").addEventListener("click", () => operationAction("undo"));
    $("close-operation").addEventListener("click", () => { $("operation").hidden = true; current = null; });
    $("split-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      const body = { class: form.elements["class"].value };
      const into = names(form.elements["into"].value);
      if (into.length) body.into = into;
      if (form.elements["n"].value) body.n = Number(form.elements["n"].value);
      const op = await json("POST", CUR + "/classes/split", body);
      if (op !== null) { await loadOperations(); openOperation(op.id); }
    });
    $("merge-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      const body = { classes: names(form.elements["classes"].value), into: form.elements["into"].value.trim() };
      const op = await json("POST", CUR + "/classes/merge", body);
      if (op !== null) { await loadOperations(); openOperation(op.id); }
    });
    loadOperations();
    const wanted = new URLSearchParams(window.location.search).get("operation");
    if (wanted) openOperation(Number(wanted));
  }

  loadQueue();
})();
