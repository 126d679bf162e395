// The review page: labels ordered by risk, each accepted, corrected or rejected through the
// JSON API, with the mouse or the keyboard. Every label, annotator, reason and item text is
// inserted with textContent, never as HTML.
"use strict";
(function () {
  const API = "/api/v1";
  const csrf = document.querySelector('meta[name="exemplar-csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const options = $("class-options");
  // Key -> class, as rendered by the server (data-key): the class name itself when every
  // class is one character (digits), else 1-9 and 0 for the first ten classes.
  const keyToClass = new Map(
    [...options.content.querySelectorAll("option")]
      .filter((o) => o.dataset.key)
      .map((o) => [o.dataset.key, o.value]),
  );
  // Characters of a text item shown before "more".
  const CLIP = 120;
  let rows = [];  // [{item, tr, select, done}]
  let focused = -1;

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

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
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

  // What was labeled: a small lazy thumbnail for an image, the (clipped) text for a text.
  function content(item) {
    const td = document.createElement("td");
    td.className = "content";
    if (item.kind === "image") {
      const img = document.createElement("img");
      img.className = "thumb";
      img.loading = "lazy";
      img.width = 64;
      img.height = 64;
      img.alt = "item " + item.item_id;
      img.src = API + "/media/" + encodeURIComponent(item.item_id);
      td.appendChild(img);
    } else if (item.kind === "text" && item.text != null) {
      if (item.text.length <= CLIP) {
        const span = document.createElement("span");
        span.className = "item-text";
        span.textContent = item.text;
        td.appendChild(span);
      } else {
        const details = document.createElement("details");
        const summary = document.createElement("summary");
        summary.className = "item-text";
        summary.textContent = item.text.slice(0, CLIP) + "…";
        const full = document.createElement("p");
        full.className = "item-text full";
        full.textContent = item.text;
        details.append(summary, full);
        td.appendChild(details);
      }
    } else {
      td.textContent = item.kind || "";
    }
    return td;
  }

  // The classes a disputed item's annotators chose (a reviewer may accept one of them).
  function voted(item) {
    return [...new Set(item.votes.filter((v) => v.verdict === "verified").map((v) => v.label))];
  }

  async function decide(row, action, label) {
    if (row.done) return;
    $("error").textContent = "";
    const body = { action };
    if (label !== undefined) body.label = label;
    try {
      const response = await call("POST", "/review/" + encodeURIComponent(row.item.item_id), body);
      if (!response.ok) {
        const detail = await response.json().catch(() => ({}));
        $("error").textContent = "Could not save: " + (detail.detail || response.status);
        return;
      }
      const written = await response.json();
      row.done = true;
      row.tr.classList.add("reviewed");
      row.tr.lastChild.textContent = written.status + (written.label != null ? " · " + written.label : "");
      const index = rows.indexOf(row);
      if (index === focused && index + 1 < rows.length) focus(index + 1);
      else if (index === focused) row.tr.focus();
    } catch (err) {
      $("error").textContent = "Network error: " + err.message;
    }
  }

  // Decide ``row`` as class ``name``: accept when it is the label (or one of a disputed
  // item's votes), correct to it otherwise.
  function decideAs(row, name) {
    const item = row.item;
    if (item.status === "disputed") {
      return voted(item).includes(name) ? decide(row, "accept", name) : decide(row, "correct", name);
    }
    return name === item.label ? decide(row, "accept") : decide(row, "correct", name);
  }

  // "alice: 3 · bob: rejected 3": each overlap annotator's label of a disputed item.
  function votesText(votes) {
    return votes.map((v) => v.annotator + ": " + (v.verdict === "verified" ? v.label : v.verdict + " " + v.label)).join(" · ");
  }

  function focus(index) {
    if (!rows.length) return;
    focused = Math.max(0, Math.min(index, rows.length - 1));
    rows.forEach((r, i) => { r.tr.tabIndex = i === focused ? 0 : -1; });
    const tr = rows[focused].tr;
    tr.focus();
    tr.scrollIntoView({ block: "nearest" });
  }

  function render(items) {
    const tbody = document.querySelector("#review tbody");
    tbody.replaceChildren();
    rows = [];
    for (const item of items) {
      const disputed = item.status === "disputed";
      const tr = document.createElement("tr");
      tr.tabIndex = -1;
      tr.dataset.itemId = String(item.item_id);
      if (disputed) tr.classList.add("disputed");
      const row = { item, tr, select: null, done: false };
      cell(tr, item.item_id);
      tr.appendChild(content(item));
      // An image of objects (detection, segmentation): its objects are corrected one by one
      // through the Objects API; here the reviewer accepts or rejects the whole image.
      const objects = item.objects != null;
      cell(tr, disputed ? "disputed" : objects ? item.objects.verified + " objects" : item.label);
      cell(tr, disputed ? votesText(item.votes) : item.annotator || item.source);
      cell(tr, item.created_at ? new Date(item.created_at).toLocaleString() : "");
      if (objects) cell(tr, item.proposal ? item.proposal.boxes + " confident boxes (" + item.proposal.model_version + ")" : "—");
      else cell(tr, item.proposal ? item.proposal.label + " (" + item.proposal.confidence.toFixed(2) + ")" : "—");
      cell(tr, item.risk.toFixed(3));
      cell(tr, item.reasons.join(", "));
      const td = cell(tr, "");
      if (objects) {
        td.append(button("accept", () => decide(row, "accept")), button("reject", () => decide(row, "reject")));
        tr.addEventListener("focusin", () => {
          focused = rows.indexOf(row);
          rows.forEach((r, i) => { r.tr.tabIndex = i === focused ? 0 : -1; });
        });
        tbody.appendChild(tr);
        rows.push(row);
        continue;
      }
      const select = document.createElement("select");
      select.setAttribute("aria-label", "corrected class");
      select.appendChild(options.content.cloneNode(true));
      const fallback = disputed && item.votes.length ? item.votes[0].label : item.label;
      select.value = item.proposal && item.proposal.label !== item.label ? item.proposal.label : fallback;
      row.select = select;
      if (disputed) {
        // A disputed item has no label to accept: accept one annotator's class instead.
        for (const label of voted(item)) td.append(button("accept " + label, () => decide(row, "accept", label)));
      } else {
        td.append(button("accept", () => decide(row, "accept")));
      }
      td.append(
        select,
        button("correct", () => decide(row, "correct", select.value)),
        button("reject", () => decide(row, "reject")),
      );
      tr.addEventListener("focusin", () => {
        focused = rows.indexOf(row);
        rows.forEach((r, i) => { r.tr.tabIndex = i === focused ? 0 : -1; });
      });
      tbody.appendChild(tr);
      rows.push(row);
    }
    if (rows.length) rows[0].tr.tabIndex = 0;
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const key = event.key;
    // Keys in the class list keep their meaning (arrows, type-ahead), and so do Enter and
    // Space on a button (they press it) and on a text's summary (they open the full text).
    if (target instanceof HTMLSelectElement && key !== "?" && key !== "Escape") return;
    const native = target instanceof HTMLButtonElement || target.tagName === "SUMMARY";
    if (native && (key === "Enter" || key === " ")) return;
    const row = focused >= 0 ? rows[focused] : null;
    if (key === "j" || key === "ArrowDown") { focus(focused + 1); }
    else if (key === "k" || key === "ArrowUp") { focus(focused < 0 ? 0 : focused - 1); }
    else if (key === "?") { $("help").hidden = !$("help").hidden; }
    else if (key === "Escape") { $("help").hidden = true; if (row) row.tr.focus(); }
    else if (!row) { if (keyToClass.has(key) || key === "Enter" || key === "x") focus(0); else return; }
    else if (!row.select && key === "Enter") { decide(row, "accept"); }
    else if (!row.select && keyToClass.has(key)) { return; }
    else if (keyToClass.has(key)) { decideAs(row, keyToClass.get(key)); }
    else if (key === "Enter") { decideAs(row, row.select.value); }
    else if (key === "x") { decide(row, "reject"); }
    else return;
    event.preventDefault();
  });

  async function load() {
    try {
      const response = await call("GET", "/review?limit=50");
      if (!response.ok) {
        $("message").textContent = "Could not load the review list (" + response.status + ").";
        return;
      }
      const data = await response.json();
      const disputes = data.items.filter((i) => i.status === "disputed").length;
      $("message").textContent = data.items.length
        ? data.items.length + " labels, riskiest first"
          + (disputes ? " (" + disputes + " disputed: the annotators disagree)." : ".")
        : "Nothing to review.";
      render(data.items);
      if (rows.length) focus(0);
    } catch (err) {
      $("message").textContent = "Network error: " + err.message;
    }
  }

  load();
})();
