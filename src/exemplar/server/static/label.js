// The labeling page: drives the JSON API (/api/v1). Every piece of item or label text is
// inserted with textContent, never as HTML, so hostile text renders inert.
"use strict";
(function () {
  const API = "/api/v1";
  const csrf = document.querySelector('meta[name="exemplar-csrf"]').content;
  // A stream project's queue never ends: when it is empty, wait for asked items.
  const feedMeta = document.querySelector('meta[name="exemplar-feed"]');
  const feed = Boolean(feedMeta && feedMeta.content);
  const FEED_POLL_MS = 3000;
  let polling = null;
  const $ = (id) => document.getElementById(id);
  const buttons = Array.from(document.querySelectorAll("#classes button"));
  // Key -> class index, as rendered by the server (data-key): the class name itself when
  // every class is one character (digits), otherwise 1-9 and 0.
  const keyToIndex = new Map(
    buttons.filter((b) => b.dataset.key).map((b) => [b.dataset.key, Number(b.dataset.index)])
  );
  let current = null; // the item shown
  let prefetched = null; // the next item, already leased
  let selected = null; // index of the pre-selected / picked class
  let busy = false;
  // Labeling time of the shown item (sent as `seconds`): from render to answer, less the
  // time the page was hidden (another tab, a locked screen).
  let shownAt = performance.now(), hiddenFor = 0, hiddenSince = null;
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) hiddenSince = performance.now();
    else if (hiddenSince !== null) { hiddenFor += performance.now() - hiddenSince; hiddenSince = null; }
  });
  function secondsSpent() {
    const hidden = hiddenFor + (hiddenSince !== null ? performance.now() - hiddenSince : 0);
    const s = (performance.now() - shownAt - hidden) / 1000;
    return s > 0 && s <= 86400 ? Math.round(s * 1000) / 1000 : undefined;
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + "-" + Math.random().toString(36).slice(2, 12);
  }

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

  // Send until the server answers: network errors and 5xx are retried with the same
  // idempotency key, so a label is written once and never lost.
  async function sendLabel(payload) {
    let delay = 500;
    for (;;) {
      try {
        const response = await call("POST", "/labels", payload);
        if (response.ok) return await response.json();
        if (response.status < 500) {
          const detail = await response.json().catch(() => ({}));
          throw new Error(detail.detail || "the label was refused (" + response.status + ")");
        }
      } catch (err) {
        if (!(err instanceof TypeError)) throw err; // TypeError: network failure
      }
      showError("Connection problem; retrying…");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  function showError(text) { $("error").textContent = text || ""; }

  function select(index) {
    selected = index;
    buttons.forEach((b, i) => b.classList.toggle("selected", i === index));
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function render(item) {
    current = item;
    shownAt = performance.now(); hiddenFor = 0;
    hiddenSince = document.hidden ? shownAt : null;
    showError("");
    const media = $("media"), text = $("text"), table = $("features");
    media.hidden = text.hidden = table.hidden = true;
    clear($("why")); clear($("proposal"));
    if (!item) {
      select(null);
      if (feed) {
        $("message").textContent = "Waiting for the stream to ask for new items…";
        if (polling === null) polling = setTimeout(poll, FEED_POLL_MS);
        return;
      }
      $("message").textContent = "The queue is empty: nothing to label right now.";
      return;
    }
    $("message").textContent = "";
    const d = item.display;
    if (d.text !== undefined) { text.textContent = d.text; text.hidden = false; }
    else if (d.media_url) { media.src = d.media_url; media.hidden = false; }
    else if (d.features) {
      const body = table.tBodies[0]; clear(body);
      const row = body.insertRow();
      d.features.values.forEach((v) => { row.insertCell().textContent = String(v); });
      if (d.features.truncated) row.insertCell().textContent = "… (" + d.features.dim + ")";
      table.hidden = false;
    }
    const why = [];
    if (item.strategy) why.push("chosen by " + item.strategy);
    if (item.score !== null && item.score !== undefined) why.push("score " + item.score.toFixed(3));
    $("why").textContent = why.join(", ");
    if (item.proposal) {
      $("proposal").textContent = "Model proposes " + item.proposal.label + " (" +
        (100 * item.proposal.confidence).toFixed(1) + "%)";
      select(item.classes.indexOf(item.proposal.label));
    } else {
      select(null);
    }
  }

  // The feed: ask again for an item while the page shows none (and nothing is in flight).
  async function poll() {
    polling = null;
    if (current || busy) return;
    try { await advance(); } catch (err) {
      showError(err.message);
      if (polling === null) polling = setTimeout(poll, FEED_POLL_MS);
    }
  }

  async function fetchNext(after) {
    const response = await call("GET", "/items/next" + (after ? "?after=" + after : ""));
    if (response.status === 204) return null;
    if (!response.ok) throw new Error("could not load the next item (" + response.status + ")");
    return await response.json();
  }

  function prefetch() {
    prefetched = null;
    if (!current) return;
    const after = current.entry_id;
    fetchNext(after).then((item) => {
      if (current && current.entry_id === after) {
        prefetched = item;
        if (item && item.display.media_url) new Image().src = item.display.media_url;
      }
    }).catch(() => { prefetched = null; });
  }

  async function advance() {
    const next = prefetched && current && prefetched.entry_id !== current.entry_id ? prefetched : null;
    render(next || await fetchNext());
    prefetch();
  }

  async function act(payload) {
    if (busy || !current) return;
    busy = true;
    try {
      const timed = { entry_id: current.entry_id, idempotency_key: newKey(), seconds: secondsSpent() };
      await sendLabel(Object.assign(timed, payload));
      await advance();
    } catch (err) { showError(err.message); } finally { busy = false; }
  }

  async function skip() {
    if (busy || !current) return;
    busy = true;
    try {
      const response = await call("POST", "/items/" + current.entry_id + "/skip");
      if (!response.ok) throw new Error("skip failed (" + response.status + ")");
      await advance();
    } catch (err) { showError(err.message); } finally { busy = false; }
  }

  async function undo() {
    if (busy) return;
    busy = true;
    try {
      const response = await call("POST", "/labels/undo");
      if (response.status === 409) { showError("Nothing to undo."); return; }
      if (!response.ok) throw new Error("undo failed (" + response.status + ")");
      prefetched = null;
      render(await fetchNext());
      prefetch();
    } catch (err) { showError(err.message); } finally { busy = false; }
  }

  function pick(index) {
    if (!current || index >= current.classes.length) return;
    select(index);
    act({ action: "label", label: current.classes[index] });
  }

  buttons.forEach((b, i) => b.addEventListener("click", () => pick(i)));
  $("logout").addEventListener("click", async () => {
    await call("DELETE", "/session").catch(() => null);
    window.location.assign("/login");
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (keyToIndex.has(key)) { pick(keyToIndex.get(key)); }
    else if (key === "Enter") {
      if (current && current.proposal && selected === current.classes.indexOf(current.proposal.label)) {
        act({ action: "accept" });
      } else if (selected !== null) { pick(selected); }
    } else if (key === "x") { if (current && current.proposal) act({ action: "reject" }); }
    else if (key === "s") { skip(); }
    else if (key === "u") { undo(); }
    else if (key === "?") { $("help").hidden = !$("help").hidden; }
    else return;
    event.preventDefault();
  });

  advance().catch((err) => showError(err.message));
})();
