// The review page: labels ordered by risk, each accepted, corrected or rejected through the
// JSON API. Every label, annotator and reason is inserted with textContent, never as HTML.
"use strict";
(function () {
  const API = "/api/v1";
  const csrf = document.querySelector('meta[name="exemplar-csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const options = $("class-options");

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

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function button(text, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  async function decide(item, row, action, label) {
    $("error").textContent = "";
    const body = { action };
    if (label !== undefined) body.label = label;
    try {
      const response = await call("POST", "/review/" + encodeURIComponent(item.item_id), body);
      if (!response.ok) {
        const detail = await response.json().catch(() => ({}));
        $("error").textContent = "Could not save: " + (detail.detail || response.status);
        return;
      }
      const written = await response.json();
      row.classList.add("reviewed");
      row.lastChild.textContent = written.status + (written.label != null ? " · " + written.label : "");
    } catch (err) {
      $("error").textContent = "Network error: " + err.message;
    }
  }

  // "alice: 3 · bob: rejected 3": each overlap annotator's label of a disputed item.
  function votesText(votes) {
    return votes.map((v) => v.annotator + ": " + (v.verdict === "verified" ? v.label : v.verdict + " " + v.label)).join(" · ");
  }

  function render(items) {
    const tbody = document.querySelector("#review tbody");
    tbody.replaceChildren();
    for (const item of items) {
      const disputed = item.status === "disputed";
      const tr = document.createElement("tr");
      if (disputed) tr.classList.add("disputed");
      cell(tr, item.item_id);
      cell(tr, disputed ? "disputed" : item.label);
      cell(tr, disputed ? votesText(item.votes) : item.annotator || item.source);
      cell(tr, item.created_at ? new Date(item.created_at).toLocaleString() : "");
      cell(tr, item.proposal ? item.proposal.label + " (" + item.proposal.confidence.toFixed(2) + ")" : "—");
      cell(tr, item.risk.toFixed(3));
      cell(tr, item.reasons.join(", "));
      const td = cell(tr, "");
      const select = document.createElement("select");
      select.setAttribute("aria-label", "corrected class");
      select.appendChild(options.content.cloneNode(true));
      const fallback = disputed && item.votes.length ? item.votes[0].label : item.label;
      select.value = item.proposal && item.proposal.label !== item.label ? item.proposal.label : fallback;
      if (disputed) {
        // A disputed item has no label to accept: accept one annotator's class instead.
        const chosen = [...new Set(item.votes.filter((v) => v.verdict === "verified").map((v) => v.label))];
        for (const label of chosen) td.append(button("accept " + label, () => decide(item, tr, "accept", label)));
      } else {
        td.append(button("accept", () => decide(item, tr, "accept")));
      }
      td.append(
        select,
        button("correct", () => decide(item, tr, "correct", select.value)),
        button("reject", () => decide(item, tr, "reject")),
      );
      tbody.appendChild(tr);
    }
  }

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
    } catch (err) {
      $("message").textContent = "Network error: " + err.message;
    }
  }

  load();
})();
