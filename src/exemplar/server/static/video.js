// The video labeling page (/video/{media_id}): a video's imported frames with a frame strip
// and slider, keyframe boxes, linear interpolation between keyframes, tracker propagation
// (the tracker's boxes are proposals) and frames marked done. Drawing is static/viewer.js
// (OpenSeadragon + Annotorious); the API is /api/v1/videos/{media_id} (routes/video.py).
//
// Every write carries an Idempotency-Key header and is retried with the same key on a
// network error or a 5xx, so it is written once and never lost. Text goes in with
// textContent only.
"use strict";
(function () {
  const API = "/api/v1";
  const csrf = document.querySelector('meta[name="exemplar-csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const mediaId = Number(document.body.dataset.mediaId);
  const VIDEO = "/videos/" + mediaId;
  const classButtons = Array.from(document.querySelectorAll("#classes button"));
  const classes = classButtons.map((b) => b.querySelector(".name").textContent);

  let video = null; // GET /videos/{id}: properties and frames
  let objects = []; // GET /videos/{id}/objects: every frame's objects
  let position = 0; // index into video.frames of the frame shown
  let opened = null; // the item id the viewer shows
  let track = null; // the selected track id (a drawn box joins it)
  let drawClass = 0;

  const viewer = window.ExemplarViewer.create($("viewer"), {
    classes,
    onSelect: (o) => {
      if (o) track = o.track_id === null || o.track_id === undefined ? o.object_id : o.track_id;
      render();
    },
    onCreate: (shape) => run(() => saveKeyframe({ label: shape.label, box: shape.box, track_id: track })),
    onUpdate: (shape) => run(() => saveKeyframe({ label: shape.label, box: shape.box, object_id: shape.object_id })),
  });
  viewer.setThreshold(0);

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

  async function refusal(response, what) {
    const body = await response.json().catch(() => ({}));
    let detail = body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
    return new Error(what + " was refused (" + response.status + ")" + (detail ? ": " + detail : ""));
  }

  async function send(path, body, what) {
    const key = newKey();
    let delay = 300;
    for (;;) {
      try {
        const response = await call("POST", path, body, { "Idempotency-Key": key });
        if (response.ok) { showError(""); return await response.json(); }
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
    return await response.json();
  }

  let chain = Promise.resolve();
  let inFlight = 0;
  function run(fn) {
    inFlight++;
    chain = chain.then(fn).catch((err) => showError(err.message)).finally(() => { inFlight--; });
    return chain;
  }

  // -- state ----------------------------------------------------------------------------------
  function say(text) { $("status").textContent = text; }
  function showError(text) { $("error").textContent = text || ""; }
  const frame = () => (video ? video.frames[position] : null);
  const frameObjects = () => objects.filter((o) => frame() && o.item_id === frame().item_id);
  const trackOf = (o) => (o.track_id === null || o.track_id === undefined ? o.object_id : o.track_id);
  const keyframes = () => (video ? video.frames.filter((f) => f.keyframe) : []);

  async function reload() {
    [video, objects] = await Promise.all([
      getJSON(VIDEO, "the video"),
      getJSON(VIDEO + "/objects", "the objects").then((r) => r.objects),
    ]);
  }

  async function viewerInfo(itemId) {
    const response = await call("GET", "/items/" + itemId + "/viewer");
    if (response.ok) return await response.json();
    if (response.status !== 404 && response.status !== 405) throw await refusal(response, "the viewer");
    return { item_id: itemId, kind: "frame", width: video.width, height: video.height, dzi_url: null,
      region: null, scale: 1, image_url: API + "/media/" + itemId, media: null };
  }

  async function show(index) {
    if (!video || !video.frames.length) return;
    position = Math.max(0, Math.min(video.frames.length - 1, index));
    const f = frame();
    if (opened !== f.item_id) {
      viewer.setTool(null);
      const info = await viewerInfo(f.item_id);
      if (!info.width) { info.width = video.width; info.height = video.height; }
      await viewer.open(info);
      opened = f.item_id;
    }
    viewer.setObjects(frameObjects());
    const mine = frameObjects().find((o) => track !== null && trackOf(o) === track);
    viewer.select(mine ? mine.object_id : null);
    render();
  }

  // -- rendering ------------------------------------------------------------------------------
  const STATUS_WORD = { proposed: "proposed", verified: "accepted", rejected: "rejected", hard_negative: "hard negative" };

  function render() {
    if (!video) return;
    const f = frame();
    const slider = $("frame-slider");
    slider.max = String(Math.max(0, video.frames.length - 1));
    slider.value = String(position);
    const label = "frame " + f.frame + " of " + video.n_frames + " · " + f.time.toFixed(2) + " s" +
      (f.keyframe ? " · keyframe" : "") + (f.labeled ? " · done" : "");
    $("frame-label").textContent = label;
    slider.setAttribute("aria-valuetext", label);
    renderStrip();
    const keys = keyframes().map((k) => k.frame);
    $("keyframe-list").textContent = keys.length ? keys.join(", ") : "none";
    $("track").textContent = track === null ? "none (a drawn box starts a new track)" : String(track);
    const list = $("objects");
    while (list.firstChild) list.removeChild(list.firstChild);
    const selected = viewer.selected();
    for (const o of frameObjects()) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = o.status + (o.object_id === selected ? " selected" : "");
      button.setAttribute("aria-pressed", String(o.object_id === selected));
      const conf = o.confidence !== null && o.confidence !== undefined ? " " + o.confidence.toFixed(2) : "";
      button.textContent = o.label + conf + " · " + (STATUS_WORD[o.status] || o.status) + " · track " +
        trackOf(o) + (o.keyframe ? " · keyframe" : "");
      button.addEventListener("click", () => { viewer.select(o.object_id); track = trackOf(o); render(); });
      li.appendChild(button);
      list.appendChild(li);
    }
    classButtons.forEach((b, i) => b.classList.toggle("selected", i === currentClass()));
  }

  function renderStrip() {
    const strip = $("strip");
    if (strip.children.length !== video.frames.length) {
      while (strip.firstChild) strip.removeChild(strip.firstChild);
      video.frames.forEach((_, i) => {
        const tick = document.createElement("div");
        tick.className = "tick";
        tick.addEventListener("click", () => run(() => show(i)));
        strip.appendChild(tick);
      });
    }
    video.frames.forEach((f, i) => {
      const tick = strip.children[i];
      tick.className = "tick" + (f.keyframe ? " keyframe" : "") + (f.n_objects ? " objects" : "") +
        (f.n_proposals ? " proposals" : "") + (f.labeled ? " labeled" : "") + (i === position ? " current" : "");
      tick.title = "frame " + f.frame + (f.keyframe ? " ◆ keyframe" : "") + (f.n_objects ? " ● " + f.n_objects + " object(s)" : "") +
        (f.n_proposals ? " ○ " + f.n_proposals + " proposal(s)" : "") + (f.labeled ? " ✓ done" : "");
    });
  }

  function currentClass() {
    const o = selectedObject();
    return o ? classes.indexOf(o.label) : drawClass;
  }

  function selectedObject() {
    const id = viewer.selected();
    return frameObjects().find((o) => o.object_id === id) || null;
  }

  // -- actions --------------------------------------------------------------------------------
  async function saveKeyframe(body) {
    const f = frame();
    const written = await send(VIDEO + "/keyframes", Object.assign({ item_id: f.item_id }, body), "the keyframe");
    track = written.track_id;
    await reload();
    await show(position);
    viewer.select(written.object_id);
    render();
    say("keyframe on frame " + f.frame + ": " + written.label + " (track " + written.track_id + ")");
    return written;
  }

  async function accept() {
    const o = selectedObject();
    if (!o) { say("Select a box first."); return; }
    await saveKeyframe({ label: o.label, box: o.box, object_id: o.object_id });
  }

  async function relabel(index) {
    if (index >= classes.length) return;
    const o = selectedObject();
    if (!o) {
      drawClass = index;
      viewer.setDrawLabel(classes[drawClass]);
      render();
      say("next box: " + classes[drawClass]);
      return;
    }
    await saveKeyframe({ label: classes[index], box: o.box, object_id: o.object_id });
  }

  async function interpolate() {
    if (track === null) { say("Select a box of the track to interpolate first."); return; }
    const done = await send(VIDEO + "/tracks/" + track + "/interpolate", undefined, "the interpolation");
    await reload();
    await show(position);
    say("track " + track + ": " + done.added.length + " box(es) interpolated, " + done.revised.length +
      " revised, " + done.unchanged + " unchanged" +
      (done.kept ? ", " + done.kept + " kept (a person's correction or decision)" : ""));
  }

  async function propagate() {
    const o = selectedObject();
    if (!o) { say("Select the box to track first."); return; }
    const body = { item_id: frame().item_id, object_id: o.object_id, method: $("method").value,
      frames: Math.max(1, Number($("track-frames").value) || 10) };
    const done = await send(VIDEO + "/tracks/propagate", body, "the tracker");
    track = done.track_id;
    await reload();
    await show(position);
    say("tracker (" + body.method + "): " + (done.added.length + done.revised.length) + " proposal(s)" +
      (done.stopped_at !== null ? ", stopped at frame " + done.stopped_at : ""));
  }

  async function finish() {
    const first = Math.max(0, Number($("done-from").value) || 0);
    const last = frame().frame;
    if (first > last) { say("“from frame” is after this frame."); return; }
    const done = await send(VIDEO + "/frames/done",
      { first_frame: first, last_frame: last, accept_proposals: $("accept-proposals").checked }, "frames done");
    await reload();
    await show(position);
    $("done-from").value = String(last + 1);
    say("frames " + first + "–" + last + " done: " + done.labeled + " newly labeled, " + done.accepted +
      " proposal(s) accepted, " + done.rejected + " rejected");
  }

  function step(delta) { return run(() => show(position + delta)); }

  function jumpKey(direction) {
    const here = frame().frame;
    const keys = keyframes().map((k) => k.frame);
    const target = direction > 0 ? keys.find((k) => k > here) : keys.reverse().find((k) => k < here);
    if (target === undefined) { say("no " + (direction > 0 ? "next" : "previous") + " keyframe"); return null; }
    return run(() => show(video.frames.findIndex((f) => f.frame === target)));
  }

  function useBox() {
    viewer.setDrawLabel(classes[drawClass]);
    viewer.setTool(viewer.tool() === "box" ? null : "box");
    say(viewer.tool() ? "drawing a keyframe box (" + classes[drawClass] + ")" +
      (track === null ? " for a new track" : " for track " + track) + "; Esc stops" : "stopped drawing");
  }

  const actions = {
    "prev-frame": () => step(-1),
    "next-frame": () => step(1),
    "prev-key": () => jumpKey(-1),
    "next-key": () => jumpKey(1),
    box: useBox,
    accept: () => run(accept),
    interpolate: () => run(interpolate),
    propagate: () => run(propagate),
    done: () => run(finish),
    "zoom-in": () => viewer.zoom(1.5),
    "zoom-out": () => viewer.zoom(1 / 1.5),
    fit: () => viewer.focusRegion(),
    help: () => { $("help").hidden = !$("help").hidden; },
  };

  document.querySelectorAll("#tools button").forEach((b) => {
    b.addEventListener("click", () => actions[b.dataset.action]());
  });
  classButtons.forEach((b, i) => b.addEventListener("click", () => run(() => relabel(i))));
  $("frame-slider").addEventListener("input", () => run(() => show(Number($("frame-slider").value))));
  $("logout").addEventListener("click", async () => {
    await call("DELETE", "/session").catch(() => null);
    window.location.assign("/login");
  });

  const KEYS = {
    ArrowLeft: "prev-frame", ",": "prev-frame", ArrowRight: "next-frame", ".": "next-frame",
    j: "prev-key", k: "next-key", b: "box", a: "accept", i: "interpolate", t: "propagate",
    d: "done", "+": "zoom-in", "=": "zoom-in", "-": "zoom-out", 0: "fit", "?": "help",
  };

  // Capture phase on window: the page's keys reach no library (OpenSeadragon has its own).
  window.addEventListener("keydown", (event) => {
    const key = event.key;
    const target = event.target;
    if (event.altKey || event.metaKey || event.ctrlKey) return;
    const inField = target && target.closest && target.closest("input, select, textarea");
    if (inField && target.id !== "frame-slider") return; // typing in a field
    if (target && target.id === "frame-slider" && (key === "ArrowLeft" || key === "ArrowRight")) return; // the slider moves itself
    if (key === "Escape") {
      if (!$("help").hidden) $("help").hidden = true;
      else if (viewer.tool()) { viewer.setTool(null); say("stopped drawing"); }
      else { viewer.select(null); track = null; render(); }
      event.stopPropagation();
      return;
    }
    if (key === "Enter") {
      if (target && target.closest && target.closest("button, a, summary")) return;
      event.preventDefault(); event.stopPropagation();
      actions.accept();
      return;
    }
    if (/^[1-9]$/.test(key)) {
      event.preventDefault(); event.stopPropagation();
      run(() => relabel(Number(key) - 1));
      return;
    }
    const action = KEYS[key];
    if (!action) return;
    if (key === " " || (target && target.closest && target.closest("button") && key === "Enter")) return;
    event.preventDefault(); event.stopPropagation();
    actions[action]();
  }, true);

  // What the browser tests read (the page's state; the page itself never uses it).
  window.exemplarVideo = {
    viewer,
    frame: () => (frame() ? frame().frame : null),
    video: () => video,
    objects: () => objects.slice(),
    track: () => track,
    idle: () => inFlight === 0,
    loaded: false,
  };

  // ?frame=N: the frame to open at (the nearest imported one); null without the parameter.
  function askedFrame() {
    const text = new URLSearchParams(window.location.search).get("frame");
    if (text === null || text === "") return null;
    if (!/^[0-9]+$/.test(text)) return NaN;
    return Number(text);
  }

  function nearestIndex(wanted) {
    let best = 0;
    video.frames.forEach((f, i) => {
      if (Math.abs(f.frame - wanted) < Math.abs(video.frames[best].frame - wanted)) best = i;
    });
    return best;
  }

  $("viewer").focus();
  run(async () => {
    await reload();
    viewer.setDrawLabel(classes[drawClass]);
    const wanted = askedFrame();
    const start = wanted === null || Number.isNaN(wanted) || !video.frames.length ? 0 : nearestIndex(wanted);
    await show(start);
    let note = "";
    if (Number.isNaN(wanted)) note = "“frame” must be a frame number; showing the first frame. ";
    else if (wanted !== null && frame() && frame().frame !== wanted) {
      note = "frame " + wanted + " was not imported; showing the nearest, frame " + frame().frame + ". ";
    }
    say(note + video.frames.length + " frame(s): draw a box on a keyframe (b), move with ← →");
  }).then(() => { window.exemplarVideo.loaded = true; });
})();
