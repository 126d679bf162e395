// The object labeling page (/annotate): boxes, polygons and brush masks on images and slide
// regions, the model's proposals to accept or reject, and verification mode (the proposals
// one object at a time). Drawing is static/viewer.js (OpenSeadragon + Annotorious).
//
// Every action is written at once as an object history row through the objects API, with an
// Idempotency-Key header; network errors and 5xx are retried with the same key, so an
// action is written once and never lost. All item and class text goes in with textContent.
"use strict";
(function () {
  const API = "/api/v1";
  const csrf = document.querySelector('meta[name="exemplar-csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const classButtons = Array.from(document.querySelectorAll("#classes button"));
  const classes = classButtons.map((b) => b.querySelector(".name").textContent);

  let mode = "queue"; // or "verify"
  let leased = null; // GET /items/next payload
  let info = null; // GET /items/{id}/viewer (or its fallback)
  let objects = []; // ObjectOut list of the item shown
  let drawClass = 0; // index of the class given to the next drawn object
  let threshold = Number($("threshold").value);
  const verification = { list: [], passed: new Set(), current: null, box: null };

  const viewer = window.ExemplarViewer.create($("viewer"), {
    classes,
    onSelect: () => renderObjects(),
    onCreate: (shape) => run(() => draw(shape)),
    onUpdate: (shape) => run(() => (mode === "verify" ? correctBox(shape) : reshape(shape))),
  });
  viewer.setThreshold(threshold);

  // -- requests -------------------------------------------------------------------------------
  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + "-" + Math.random().toString(36).slice(2, 12);
  }

  async function call(method, path, body, headers) {
    const init = { method, headers: Object.assign({ "X-Exemplar-CSRF": csrf }, headers || {}), credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
    return response;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function refusal(response, what) {
    const body = await response.json().catch(() => ({}));
    let detail = body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
    const error = new ApiError(response.status, what + " was refused (" + response.status + ")" + (detail ? ": " + detail : ""));
    error.detail = detail || "";
    return error;
  }

  // A write: one idempotency key, retried until the server answers (network error or 5xx).
  async function send(method, path, body, what) {
    const key = newKey();
    let delay = 300;
    for (;;) {
      try {
        const response = await call(method, path, body, { "Idempotency-Key": key });
        if (response.ok) { showError(""); return response.status === 204 ? null : await response.json(); }
        if (response.status < 500) throw await refusal(response, what);
      } catch (err) {
        if (!(err instanceof TypeError)) throw err; // TypeError: the network failed
      }
      showError("Connection problem; retrying…");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }

  async function getJSON(path, what) {
    const response = await call("GET", path);
    if (!response.ok) throw await refusal(response, what);
    return response.status === 204 ? null : await response.json();
  }

  // Actions run one after another, in the order of the key presses.
  let chain = Promise.resolve();
  let inFlight = 0;
  function run(fn) {
    inFlight++;
    chain = chain.then(fn).catch((err) => showError(err.message)).finally(() => { inFlight--; });
    return chain;
  }

  // -- what the page shows --------------------------------------------------------------------
  function say(text) { $("status").textContent = text; }
  function showError(text) { $("error").textContent = text || ""; }
  const conf = (o) => (o.confidence !== null && o.confidence !== undefined ? " " + o.confidence.toFixed(2) : "");
  const STATUS_WORD = { proposed: "proposed", verified: "accepted", rejected: "rejected", hard_negative: "hard negative" };

  function renderObjects() {
    const list = $("objects");
    while (list.firstChild) list.removeChild(list.firstChild);
    const selected = viewer.selected();
    for (const o of viewer.visibleObjects()) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.objectId = String(o.object_id);
      button.className = o.status + (o.object_id === selected ? " selected" : "");
      button.setAttribute("aria-pressed", String(o.object_id === selected));
      button.textContent = o.label + conf(o) + " · " + (STATUS_WORD[o.status] || o.status) + " · " + o.geometry;
      button.addEventListener("click", () => { selectObject(o.object_id); });
      li.appendChild(button);
      list.appendChild(li);
    }
    classButtons.forEach((b, i) => b.classList.toggle("selected", i === currentClassIndex()));
  }

  function currentClassIndex() {
    const o = selectedObject();
    return o ? classes.indexOf(o.label) : drawClass;
  }

  function selectedObject() {
    const id = viewer.selected();
    return id === null ? null : objects.find((o) => o.object_id === id) || null;
  }

  function setObjects(list) {
    objects = list.filter((o) => o.status !== "deleted");
    viewer.setObjects(objects);
    renderObjects();
  }

  function replaceObject(o) {
    const rest = objects.filter((x) => x.object_id !== o.object_id);
    setObjects(o.status === "deleted" ? rest : rest.concat([o]));
  }

  function selectObject(id, pan) {
    viewer.select(id);
    if (id !== null && pan !== false) viewer.focusObject(id);
    renderObjects();
  }

  // -- queue mode -----------------------------------------------------------------------------
  async function viewerInfo(itemId, mediaUrl) {
    const response = await call("GET", "/items/" + itemId + "/viewer");
    if (response.ok) return await response.json();
    if (response.status !== 404 && response.status !== 405) throw await refusal(response, "the viewer");
    // a server without the viewer route: the item's own image
    return { item_id: itemId, kind: "image", width: null, height: null, dzi_url: null, region: null,
      scale: 1, image_url: mediaUrl || API + "/media/" + itemId, media: null };
  }

  // A video frame: the button (and key o) that opens the frame in its video's page.
  function videoLink(view) {
    if (!view || view.kind !== "frame" || !view.media || view.media.frame === null || view.media.frame === undefined) return null;
    return "/video/" + encodeURIComponent(String(view.media.id)) + "?frame=" + encodeURIComponent(String(view.media.frame));
  }

  function showVideoLink() {
    const link = videoLink(info);
    $("open-video").hidden = link === null;
    $("open-video-frame").textContent = link === null ? "frame" : "frame " + info.media.frame;
  }

  function openVideo() {
    const link = videoLink(info);
    if (link === null) { say("This item is not a video frame."); return; }
    window.location.assign(link);
  }

  function describe(view) {
    if (!view) return "";
    if (view.kind === "region" && view.region) {
      return "region at " + view.region.x + ", " + view.region.y + " of slide " + (view.media ? view.media.id : "");
    }
    if (view.kind === "frame" && view.media) return "frame " + view.media.frame;
    return "item " + view.item_id;
  }

  async function loadNext() {
    viewer.setTool(null);
    const item = await getJSON("/items/next", "the next item");
    leased = item;
    if (!item) {
      info = null;
      viewer.close();
      setObjects([]);
      $("where").textContent = "";
      showVideoLink();
      say("The queue is empty: nothing to annotate right now.");
      return;
    }
    const found = await getJSON("/items/" + item.item_id + "/objects", "the objects");
    info = await viewerInfo(item.item_id, item.display && item.display.media_url);
    if (!info.width && found.width) { info.width = found.width; info.height = found.height; }
    await viewer.open(info);
    setObjects(found.objects);
    $("where").textContent = describe(info);
    showVideoLink();
    const first = pendingProposals()[0];
    if (first) selectObject(first.object_id, false); // selected, the whole item in view
    const open = found.objects.filter((o) => o.status === "proposed").length;
    say("Item " + item.item_id + ": " + open + " proposal" + (open === 1 ? "" : "s") + " to check.");
  }

  function pendingProposals() { return viewer.visibleObjects().filter((o) => o.status === "proposed"); }

  function nextPending(after) {
    const pending = pendingProposals();
    const visible = viewer.visibleObjects();
    const pos = visible.findIndex((o) => o.object_id === after);
    return pending.find((o) => visible.indexOf(o) > pos) || pending[0] || null;
  }

  async function decide(kind) {
    if (mode === "verify") return verifyDecide(kind);
    const o = selectedObject();
    if (!leased || !o) { say("Select an object first (n / p)."); return; }
    const path = { accept: "verify", reject: "reject", hard: "hard-negative" }[kind];
    const done = await send("POST", "/objects/" + o.object_id + "/" + path, undefined, "the " + path);
    replaceObject(done);
    const word = { accept: "accepted", reject: "rejected", hard: "hard negative" }[kind];
    say(word + " " + done.label + conf(o));
    const next = nextPending(o.object_id);
    if (next) selectObject(next.object_id); else selectObject(o.object_id, false);
  }

  async function draw(shape) {
    if (mode === "verify" || !leased) return;
    const body = { label: shape.label || classes[drawClass], box: shape.box, geometry: shape.geometry };
    if (shape.polygons) body.polygons = shape.polygons;
    if (shape.rle) body.rle = shape.rle;
    const done = await send("POST", "/items/" + leased.item_id + "/objects", body, "the new object");
    replaceObject(done);
    selectObject(done.object_id, false);
    say("drew " + (shape.geometry === "mask" ? "mask" : shape.geometry) + " " + done.label);
    updateBrushInfo();
  }

  async function reshape(shape) {
    const body = { box: shape.box };
    if (shape.polygons) body.polygons = shape.polygons;
    if (shape.rle) body.rle = shape.rle;
    const done = await send("PATCH", "/objects/" + shape.object_id, body, "the change");
    replaceObject(done);
    selectObject(done.object_id, false);
    say((shape.geometry === "box" ? "moved " : "reshaped ") + done.label);
    updateBrushInfo();
  }

  async function relabel(index) {
    if (index >= classes.length) return;
    const o = selectedObject();
    if (!o || mode === "verify") {
      drawClass = index;
      viewer.setDrawLabel(classes[index]);
      if (mode === "verify" && verification.current) {
        verification.label = classes[index];
        say("accept as " + classes[index] + " (a / Enter)");
      } else {
        say("next drawn object: " + classes[index]);
      }
      renderObjects();
      return;
    }
    const done = await send("PATCH", "/objects/" + o.object_id, { label: classes[index] }, "the class change");
    replaceObject(done);
    selectObject(done.object_id, false);
    say("class of object " + done.object_id + " is now " + done.label);
  }

  async function remove() {
    const o = selectedObject();
    if (!o || mode === "verify") return;
    const done = await send("DELETE", "/objects/" + o.object_id, undefined, "the delete");
    replaceObject(Object.assign({}, done, { status: "deleted" }));
    say("deleted " + o.label);
    const next = nextPending(o.object_id);
    if (next) selectObject(next.object_id);
  }

  async function undo() {
    if (mode === "verify") return;
    let done;
    try {
      // only actions on the item on screen: never a change to an item already finished
      if (!leased) { say("Nothing to undo here."); return; }
      done = await send("POST", "/objects/undo?item_id=" + encodeURIComponent(leased.item_id), undefined, "the undo");
    } catch (err) {
      if (err.status === 409) { say("Nothing undone: " + err.message); return; }
      throw err;
    }
    if (leased && done.item_id === leased.item_id) {
      replaceObject(done);
      if (done.status !== "deleted") selectObject(done.object_id);
    }
    say("undone: " + done.label + " is " + (done.status === "deleted" ? "gone" : STATUS_WORD[done.status] || done.status));
  }

  async function finish() {
    if (mode === "verify" || !leased) return;
    viewer.setTool(null);
    const set = objects.map((o) => {
      let status = o.status;
      if (status === "proposed") {
        status = o.confidence === null || o.confidence === undefined || o.confidence >= threshold ? "verified" : "rejected";
      }
      const out = { object_id: o.object_id, label: o.label, box: o.box, geometry: o.geometry, status };
      if (o.shape && o.shape.polygons) out.polygons = o.shape.polygons;
      if (o.shape && o.shape.rle) out.rle = o.shape.rle;
      return out;
    });
    const done = await send("POST", "/queue/" + leased.entry_id + "/objects", { objects: set }, "the finished item");
    const summary = "finished item " + done.item_id + ": " + done.verified + " accepted, " + done.drawn + " drawn, " +
      done.rejected + " rejected, " + done.hard_negative + " hard negative";
    await loadNext();
    say(summary);
  }

  async function skip() {
    if (mode === "verify" || !leased) return;
    const response = await call("POST", "/items/" + leased.entry_id + "/skip");
    if (!response.ok) throw await refusal(response, "the skip");
    const skipped = leased.item_id;
    await loadNext();
    say("skipped item " + skipped);
  }

  // -- verification mode ----------------------------------------------------------------------
  const infoCache = new Map();
  async function infoFor(itemId) {
    if (!infoCache.has(itemId)) infoCache.set(itemId, await viewerInfo(itemId, null));
    return infoCache.get(itemId);
  }

  async function loadVerification() {
    const page = await getJSON("/curation/verification?order=uncertain&limit=50", "the verification queue");
    verification.list = page.items.filter((p) => p.kind === "object" && p.box && !verification.passed.has(p.id));
    if (!verification.list.length && verification.passed.size) {
      verification.passed.clear(); // went round once: show the passed ones again
      verification.list = page.items.filter((p) => p.kind === "object" && p.box);
    }
    await showProposal();
  }

  async function showProposal() {
    const p = verification.list[0] || null;
    verification.current = p;
    verification.box = null;
    verification.label = null;
    if (!p) {
      info = null;
      viewer.close();
      setObjects([]);
      $("where").textContent = "";
      showVideoLink();
      say("No object proposals to verify.");
      return;
    }
    const view = await infoFor(p.item_id);
    if (!info || info !== view) { info = view; await viewer.open(view); }
    viewer.setThreshold(0);
    setObjects([{ object_id: p.id, annotation_id: -p.id, item_id: p.item_id, label: p.label, box: p.box,
      geometry: "box", shape: null, status: "proposed", source: "model", confidence: p.confidence }]);
    viewer.select(p.id);
    viewer.focusObject(p.id);
    renderObjects();
    $("where").textContent = describe(view) + " · " + verification.list.length + " in this page";
    showVideoLink();
    say("verify: " + p.label + conf(p) + " (a accept, x reject, n pass)");
    const after = verification.list[1];
    if (after) infoFor(after.item_id).then((v) => { if (!v.dzi_url && v.image_url) new Image().src = v.image_url; }).catch(() => null);
  }

  async function correctBox(shape) {
    if (verification.current && shape.object_id === verification.current.id) {
      verification.box = shape.box;
      say("box corrected; a / Enter accepts it");
    }
  }

  async function verifyDecide(kind) {
    const p = verification.current;
    if (!p) return;
    if (kind === "hard") return;
    const path = kind === "accept" ? "verify" : "reject";
    const body = {};
    if (kind === "accept" && verification.label) body.label = verification.label;
    if (kind === "accept" && verification.box) body.box = verification.box;
    await send("POST", "/curation/verification/object/" + p.id + "/" + path, kind === "accept" ? body : undefined, "the " + path);
    verification.list.shift();
    const word = kind === "accept" ? "accepted " : "rejected ";
    if (!verification.list.length) await loadVerification(); else await showProposal();
    say(word + (body.label || p.label) + conf(p));
  }

  async function pass(step) {
    const list = verification.list;
    if (!list.length) return;
    if (step > 0) { const p = list.shift(); verification.passed.add(p.id); list.push(p); }
    else list.unshift(list.pop());
    await showProposal();
  }

  async function toggleMode() {
    viewer.setTool(null);
    mode = mode === "queue" ? "verify" : "queue";
    document.body.classList.toggle("verify-mode", mode === "verify");
    $("mode").textContent = mode === "verify" ? "verification mode" : "queue";
    info = null;
    if (mode === "verify") {
      await loadVerification();
    } else {
      viewer.setThreshold(threshold);
      await loadNext();
    }
  }

  // -- tools ----------------------------------------------------------------------------------
  function updateBrushInfo() {
    const on = viewer.tool() === "brush";
    $("brush-info").hidden = !on;
    if (on) $("brush-size").textContent = String(viewer.brushSize(0));
  }

  function useTool(name) {
    if (mode === "verify" || !leased) return;
    if (name === "brush" && viewer.tool() === "brush") { finishBrush(); return; }
    viewer.setDrawLabel(classes[drawClass]);
    viewer.setTool(viewer.tool() === name ? null : name);
    updateBrushInfo();
    say(viewer.tool() ? "drawing: " + name + " (" + classes[drawClass] + "); Esc stops" : "stopped drawing");
  }

  function finishBrush() {
    if (!viewer.finishBrush()) say("nothing painted");
    updateBrushInfo();
  }

  function step(delta) {
    if (mode === "verify") return run(() => pass(delta));
    const visible = viewer.visibleObjects();
    if (!visible.length) return;
    const pos = visible.findIndex((o) => o.object_id === viewer.selected());
    const next = visible[(pos + delta + visible.length) % visible.length] || visible[0];
    selectObject(next.object_id);
    say(next.label + conf(next) + " · " + (STATUS_WORD[next.status] || next.status));
  }

  // -- keys and buttons -----------------------------------------------------------------------
  const actions = {
    accept: () => run(() => decide("accept")),
    reject: () => run(() => decide("reject")),
    hard: () => run(() => decide("hard")),
    next: () => step(1),
    prev: () => step(-1),
    box: () => useTool("box"),
    polygon: () => useTool("polygon"),
    brush: () => useTool("brush"),
    delete: () => run(remove),
    undo: () => run(undo),
    finish: () => run(finish),
    skip: () => run(skip),
    "open-video": () => run(openVideo),
    "verify-mode": () => run(toggleMode),
    "zoom-in": () => viewer.zoom(1.5),
    "zoom-out": () => viewer.zoom(1 / 1.5),
    fit: () => viewer.focusRegion(),
    help: () => { $("help").hidden = !$("help").hidden; },
  };

  document.querySelectorAll("#tools button").forEach((b) => {
    b.addEventListener("click", () => actions[b.dataset.action]());
  });
  classButtons.forEach((b, i) => b.addEventListener("click", () => run(() => relabel(i))));
  $("threshold").addEventListener("input", () => {
    threshold = Number($("threshold").value);
    $("threshold-value").textContent = threshold.toFixed(2);
    if (mode === "queue") viewer.setThreshold(threshold);
    renderObjects();
    say("showing proposals at or above " + threshold.toFixed(2));
  });
  $("logout").addEventListener("click", async () => {
    await call("DELETE", "/session").catch(() => null);
    window.location.assign("/login");
  });

  const KEYS = {
    a: "accept", x: "reject", h: "hard", n: "next", p: "prev", b: "box", g: "polygon", m: "brush",
    Delete: "delete", Backspace: "delete", u: "undo", f: "finish", s: "skip", o: "open-video", v: "verify-mode",
    "+": "zoom-in", "=": "zoom-in", "-": "zoom-out", 0: "fit", "?": "help",
  };

  // Capture phase on window: the page's keys reach no library (Annotorious has its own
  // Ctrl+Z, OpenSeadragon its own letters).
  window.addEventListener("keydown", (event) => {
    const key = event.key;
    const target = event.target;
    const onControl = target && target.closest && target.closest("button, a, input, select, textarea, summary");
    if (event.altKey || event.metaKey) return;
    if (event.ctrlKey) {
      if (key === "z" || key === "Z") { event.preventDefault(); event.stopPropagation(); actions.undo(); }
      return;
    }
    if (key === "Escape") {
      if (!$("help").hidden) $("help").hidden = true;
      else if (viewer.tool()) { viewer.setTool(null); updateBrushInfo(); say("stopped drawing"); }
      else { selectObject(null); }
      event.stopPropagation();
      return;
    }
    if (viewer.tool() === "brush") {
      if (key === "[" || key === "]") {
        $("brush-size").textContent = String(viewer.brushSize(key === "]" ? 2 : -2));
        event.preventDefault(); event.stopPropagation();
        return;
      }
      if (key === "Enter") { event.preventDefault(); event.stopPropagation(); finishBrush(); return; }
    }
    if (key === "Tab" && target === $("viewer")) {
      // Tab walks the objects on the image, and leaves it after the last one (no trap).
      const visible = viewer.visibleObjects();
      const pos = visible.findIndex((o) => o.object_id === viewer.selected());
      const atEnd = event.shiftKey ? pos <= 0 : pos === visible.length - 1;
      if (visible.length && !atEnd) {
        event.preventDefault(); event.stopPropagation();
        step(event.shiftKey ? -1 : 1);
      }
      return;
    }
    if (key === "Enter") {
      if (onControl && target.tagName !== "INPUT") return; // Enter on a button presses it
      event.preventDefault(); event.stopPropagation();
      if (event.shiftKey) actions.finish(); else actions.accept();
      return;
    }
    if (key === " " && onControl) return;
    if (/^[1-9]$/.test(key)) {
      event.preventDefault(); event.stopPropagation();
      run(() => relabel(Number(key) - 1));
      return;
    }
    const action = KEYS[key];
    if (!action) return;
    if (target && target.tagName === "INPUT" && (key === "Backspace" || key === "Delete")) return;
    event.preventDefault(); event.stopPropagation();
    actions[action]();
  }, true);

  // What the browser tests read (the page's state, never used by the page itself).
  window.exemplarAnnotate = {
    viewer,
    mode: () => mode,
    item: () => leased,
    objects: () => objects.slice(),
    proposal: () => verification.current,
    idle: () => inFlight === 0,
    loaded: false,
  };

  $("viewer").focus();
  run(loadNext).then(() => { window.exemplarAnnotate.loaded = true; });
})();
