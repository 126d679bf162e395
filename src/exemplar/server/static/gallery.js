// The gallery: one class's verified exemplars as thumbnails (object crops for detection),
// riskiest first, 200 per page. A reviewer moves with the keys, flags wrong labels with one
// key and sends them: a suspect of an open label-error operation is accepted there (with the
// chosen class), any other flagged label is corrected (or rejected) through the review and
// objects APIs. Labels, reasons and texts are inserted with textContent, never as HTML.
"use strict";
(function () {
  const API = "/api/v1";
  const PAGE = 200;
  const csrf = document.querySelector('meta[name="exemplar-csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const thumb = window.exemplarThumbs.thumb;
  const grid = $("gallery");
  const label = grid.dataset.label;
  let offset = Number(new URLSearchParams(window.location.search).get("offset")) || 0;
  let total = 0;
  let tiles = [];  // [{e, el, flagged, done}]
  let focused = -1;

  async function call(method, path, body) {
    const init = { method, headers: { "X-Exemplar-CSRF": csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(typeof data.detail === "string" ? data.detail : "HTTP " + response.status);
    }
    return data;
  }


  function columns() {
    if (tiles.length < 2) return 1;
    const top = tiles[0].el.offsetTop;
    const n = tiles.findIndex((t) => t.el.offsetTop !== top);
    return n < 0 ? tiles.length : n;
  }

  function focusTile(index) {
    if (!tiles.length) return;
    focused = Math.max(0, Math.min(index, tiles.length - 1));
    tiles.forEach((t, i) => { t.el.tabIndex = i === focused ? 0 : -1; });
    tiles[focused].el.focus();
    tiles[focused].el.scrollIntoView({ block: "nearest" });
  }

  function showCount() {
    const n = tiles.filter((t) => t.flagged && !t.done).length;
    $("flag-count").textContent = n ? n + " flagged" : "";
  }

  function toggle(tile) {
    if (tile.done) return;
    tile.flagged = !tile.flagged;
    tile.el.classList.toggle("flagged", tile.flagged);
    tile.el.setAttribute("aria-selected", tile.flagged ? "true" : "false");
    showCount();
  }

  function render(items) {
    grid.replaceChildren();
    tiles = [];
    for (const e of items) {
      const el = document.createElement("figure");
      el.className = "tile" + (e.suspect ? " suspect" : "");
      el.tabIndex = -1;
      el.setAttribute("role", "gridcell");
      el.setAttribute("aria-selected", "false");
      el.dataset.itemId = String(e.item_id);
      if (e.object_id != null) el.dataset.objectId = String(e.object_id);
      el.dataset.risk = String(e.risk);
      el.appendChild(thumb(e, 96));
      const caption = document.createElement("figcaption");
      const risk = document.createElement("span");
      risk.className = "risk";
      risk.textContent = "risk " + e.risk.toFixed(2);
      caption.appendChild(risk);
      if (e.suspect) {
        const why = document.createElement("span");
        why.className = "why";
        why.textContent = e.suspect.reason + (e.suspect.suggested_label ? " → " + e.suspect.suggested_label : "");
        caption.appendChild(why);
      }
      el.title = "item " + e.item_id + (e.object_id != null ? ", object " + e.object_id : "");
      el.appendChild(caption);
      const tile = { e, el, flagged: false, done: false };
      el.addEventListener("click", () => { focusTile(tiles.indexOf(tile)); toggle(tile); });
      el.addEventListener("focus", () => { focused = tiles.indexOf(tile); });
      grid.appendChild(el);
      tiles.push(tile);
    }
  }

  async function load() {
    $("error").textContent = "";
    try {
      const data = await call("GET", "/curation/gallery/" + encodeURIComponent(label) + "?limit=" + PAGE + "&offset=" + offset);
      total = data.total;
      const pages = Math.max(1, Math.ceil(total / PAGE));
      const suspects = data.items.filter((e) => e.suspect).length;
      $("message").textContent = total
        ? total + " exemplars of " + label + ", riskiest first · page " + (Math.floor(offset / PAGE) + 1) + " of " + pages
          + (suspects ? " · " + suspects + " suspected on this page" : "")
        : "No verified exemplars of " + label + ".";
      render(data.items);
      $("prev").disabled = offset === 0;
      $("next").disabled = offset + PAGE >= total;
      showCount();
      if (tiles.length) focusTile(0);
    } catch (err) {
      $("message").textContent = "";
      $("error").textContent = "Could not load the gallery: " + err.message;
    }
  }

  function page(delta) {
    const next = offset + delta * PAGE;
    if (next < 0 || next >= total) return;
    offset = next;
    const url = new URL(window.location.href);
    url.searchParams.set("offset", String(offset));
    window.history.replaceState(null, "", url);
    load();
  }

  // Send one flagged tile; a short text of what happened.
  async function sendOne(tile, choice) {
    const e = tile.e;
    const suspect = e.suspect && e.suspect.kind === "label_errors" ? e.suspect : null;
    if (suspect && choice !== "__reject") {
      const id = suspect.candidate_id;
      const body = { decisions: { [id]: "accepted" } };
      if (choice && choice !== suspect.suggested_label) body.labels = { [id]: choice };
      await call("POST", "/curation/operations/" + suspect.operation_id + "/decisions", body);
      return "accepted in operation " + suspect.operation_id;
    }
    if (!choice) throw new Error("item " + e.item_id + " is not a suspect: choose the class it becomes");
    if (e.object_id != null) {
      if (choice === "__reject") await call("POST", "/objects/" + e.object_id + "/reject");
      else await call("PATCH", "/objects/" + e.object_id, { label: choice });
    } else if (choice === "__reject") {
      await call("POST", "/review/" + e.item_id, { action: "reject" });
    } else {
      await call("POST", "/review/" + e.item_id, { action: "correct", label: choice });
    }
    return choice === "__reject" ? "rejected" : "now " + choice;
  }

  async function send() {
    const flagged = tiles.filter((t) => t.flagged && !t.done);
    if (!flagged.length) { $("message").textContent = "Nothing flagged: press f (or Space) on a wrong label first."; return; }
    const choice = $("relabel").value;
    const problems = [];
    const operations = new Set();
    let sent = 0;
    for (const tile of flagged) {
      try {
        const what = await sendOne(tile, choice);
        if (what.startsWith("accepted in operation")) operations.add(tile.e.suspect.operation_id);
        tile.done = true;
        tile.flagged = false;
        tile.el.classList.remove("flagged");
        tile.el.classList.add("sent");
        tile.el.querySelector("figcaption").append(Object.assign(document.createElement("span"), { className: "sent-note", textContent: what }));
        sent += 1;
      } catch (err) {
        problems.push(err.message);
      }
    }
    $("message").textContent = "Sent " + sent + " of " + flagged.length + "."
      + (operations.size ? " Apply operation " + [...operations].join(", ") + " on the curate page to relabel the suspects." : "");
    $("error").textContent = problems.join(" · ");
    showCount();
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLSelectElement || target instanceof HTMLInputElement) return;
    if (target instanceof HTMLButtonElement && (event.key === "Enter" || event.key === " ")) return;
    const key = event.key;
    const cols = columns();
    if (key === "?") $("help").hidden = !$("help").hidden;
    else if (key === "Escape") $("help").hidden = true;
    else if (key === "ArrowRight" || key === "l") focusTile(focused + 1);
    else if (key === "ArrowLeft" || key === "h") focusTile(focused - 1);
    else if (key === "ArrowDown" || key === "j") focusTile(focused + cols);
    else if (key === "ArrowUp" || key === "k") focusTile(focused - cols);
    else if ((key === "f" || key === " ") && focused >= 0) toggle(tiles[focused]);
    else if (key === "s") send();
    else if (key === "n" || key === "PageDown") page(1);
    else if (key === "p" || key === "PageUp") page(-1);
    else return;
    event.preventDefault();
  });

  $("gallery-label").addEventListener("change", () => { window.location.assign("/gallery?label=" + encodeURIComponent($("gallery-label").value)); });
  $("send").addEventListener("click", send);
  $("prev").addEventListener("click", () => page(-1));
  $("next").addEventListener("click", () => page(1));
  load();
})();
