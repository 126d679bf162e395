// exemplar's image viewer: deep zoom (OpenSeadragon), box and polygon drawing and editing
// (Annotorious), a brush for masks, and the objects of an item drawn with their status.
//
// Needs the vendored globals `OpenSeadragon` (static/vendor/openseadragon.min.js) and
// `AnnotoriousOSD` (static/vendor/annotorious-openseadragon.js + .css), loaded first.
//
//   const viewer = ExemplarViewer.create(element, {classes, onSelect, onCreate, onUpdate, onDelete});
//   await viewer.open(info);      // info: GET /api/v1/items/{item_id}/viewer
//   viewer.setObjects(objects);   // ObjectOut list (GET /api/v1/items/{item_id}/objects), item px
//
// Methods:
//   open(info) -> Promise        open the item: a DZI (`info.dzi_url`) or the item's own image
//                                (`{type: "image", url: info.image_url}`), then fit the region
//                                (`info.region`, with the slide around it; the region is outlined)
//   setObjects(objects)          draw these objects (replaces the previous set)
//   close()                      show nothing (an empty queue)
//   setThreshold(t)              hide proposals whose confidence is below t (0..1)
//   select(objectId | null)      select an object (boxes and polygons get resize handles)
//   selected() -> objectId|null  the selected object
//   setTool("box"|"polygon"|"brush"|null)   draw a new object with the mouse (or stop)
//   setDrawLabel(name)           the class given to the next drawn object
//   focusObject(objectId)        pan and zoom to an object with its surroundings
//   focusRegion()                fit the item (a region: the region with the slide around it)
//   zoom(factor)                 zoom in (>1) or out (<1) around the centre
//   brushSize(delta) -> px       grow or shrink the brush (item px); returns the new size
//   finishBrush() -> bool        turn the painted mask into an object (onCreate, or onUpdate when
//                                a mask object was being repainted); false when nothing is painted
//   visibleObjects() -> list     the objects drawn now (not hidden by the threshold), reading order
//   toScreen(x, y) -> {x, y}     page (client) px of an item point (for tests and tooltips)
//   tool() -> name|null          the active drawing tool
//   destroy()
//
// Callbacks get `{object_id?, label, box, geometry, polygons?, rle?}` in item px:
//   onCreate(shape)      a new object was drawn (no object_id; label from setDrawLabel)
//   onUpdate(shape)      an object was moved, resized or reshaped (with object_id)
//   onSelect(object|null) the selection changed (an ObjectOut, or null)
//   onDelete(objectId)   reserved for a delete done inside the viewer (the page deletes by key)
//
// Coordinates: item px (x, y) -> image px of the opened DZI or image:
//   X = region.x + x * scale, Y = region.y + y * scale (no region: X = x * scale, usually 1).
// Drawn shapes are clipped to the item (a region's objects stay in the region).
//
// Styles (colour is never the only signal): proposals are dashed with "class 0.87"; verified
// objects solid with "class ✓"; rejected ones crossed out with "class ✗ rejected"; hard
// negatives hatched with "class ⊘ hard negative". The selected object is drawn thicker
// and its text starts with "▶".
//
// Masks are COCO run-length encoded (`{size: [h, w], counts}`, column-major, the compressed
// string of pycocotools): `ExemplarViewer.rle.encode(mask, h, w)` and `.decode(rle)`.
"use strict";
(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Okabe-Ito colours (distinguishable with colour-vision deficiencies), one per class.
  const PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#999999", "#000000", "#FFFFFF"];
  const MARK = { proposed: "", verified: " ✓", rejected: " ✗ rejected", hard_negative: " ⊘ hard negative" };
  const EDITABLE_STATUSES = new Set(["proposed", "verified"]);

  // -- COCO run-length encoding ---------------------------------------------------------------

  /** Column-major runs of a 0/1 mask (`mask[y * w + x]`), starting with a run of zeros. */
  function runs(mask, h, w) {
    const counts = [];
    let value = 0, run = 0;
    for (let x = 0; x < w; x++) {
      for (let y = 0; y < h; y++) {
        const v = mask[y * w + x] ? 1 : 0;
        if (v !== value) { counts.push(run); run = 0; value = v; }
        run++;
      }
    }
    counts.push(run);
    return counts;
  }

  /** pycocotools' compressed string of run counts (rleToString in maskApi.c). */
  function countsToString(counts) {
    let out = "";
    for (let i = 0; i < counts.length; i++) {
      let x = counts[i];
      if (i > 2) x -= counts[i - 2];
      let more = true;
      while (more) {
        let c = x & 0x1f;
        x >>= 5;
        more = (c & 0x10) ? x !== -1 : x !== 0;
        if (more) c |= 0x20;
        out += String.fromCharCode(c + 48);
      }
    }
    return out;
  }

  /** The run counts of a compressed string (rleFrString in maskApi.c). */
  function stringToCounts(s) {
    const counts = [];
    let p = 0;
    while (p < s.length) {
      let x = 0, k = 0, more = true, c = 0;
      while (more) {
        c = s.charCodeAt(p) - 48;
        x |= (c & 0x1f) << (5 * k);
        more = (c & 0x20) !== 0;
        p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }

  function encode(mask, h, w) { return { size: [h, w], counts: countsToString(runs(mask, h, w)) }; }

  /** A Uint8Array mask (row-major, `mask[y * w + x]`) of a COCO RLE. */
  function decode(rle) {
    const [h, w] = rle.size;
    const mask = new Uint8Array(h * w);
    const counts = typeof rle.counts === "string" ? stringToCounts(rle.counts) : rle.counts;
    let pos = 0, value = 0;
    for (const n of counts) {
      if (value) {
        for (let k = pos; k < pos + n && k < h * w; k++) mask[(k % h) * w + Math.floor(k / h)] = 1;
      }
      pos += n; value = 1 - value;
    }
    return mask;
  }

  // -- helpers --------------------------------------------------------------------------------

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function clamp(v, lo, hi) { return Math.min(Math.max(v, lo), hi); }

  function round2(v) { return Math.round(v * 100) / 100; }

  function create(element, options) {
    const opts = Object.assign({ classes: [] }, options || {});
    const OSD = window.OpenSeadragon;
    element.classList.add("exemplar-viewer");
    const host = document.createElement("div");
    host.className = "exemplar-viewer-osd";
    element.appendChild(host);

    const osd = OSD({
      element: host,
      showNavigationControl: false,
      animationTime: 0.3,
      maxZoomPixelRatio: 8,
      visibilityRatio: 0.2,
      gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: false },
      imageSmoothingEnabled: false,
      crossOriginPolicy: false,
    });
    // One focus stop for the image: the page's element (OpenSeadragon's canvas would be a second).
    osd.canvas.tabIndex = -1;
    // The page owns the keyboard: OpenSeadragon's own keys (w/a/s/d, r, f, 0, +, -) are off.
    osd.addHandler("canvas-key", (e) => { e.preventDefaultAction = true; });

    // Our drawing of every object: an SVG over the canvas, below Annotorious' editing layer.
    const overlay = svg("svg", { class: "exemplar-overlay", "aria-hidden": "true" }, osd.element);
    const defs = svg("defs", {}, overlay);
    const hatch = svg("pattern", { id: "exemplar-hatch-" + Math.random().toString(36).slice(2),
      width: 8, height: 8, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" }, defs);
    svg("line", { x1: 0, y1: 0, x2: 0, y2: 8, stroke: "#fff", "stroke-width": 3, "stroke-opacity": 0.8 }, hatch);
    svg("line", { x1: 4, y1: 0, x2: 4, y2: 8, stroke: "#000", "stroke-width": 2, "stroke-opacity": 0.6 }, hatch);
    const shapes = svg("g", { class: "shapes" }, overlay);
    const labels = svg("g", { class: "labels" }, overlay);
    const brushCanvas = document.createElement("canvas");
    brushCanvas.className = "exemplar-brush";
    brushCanvas.hidden = true;
    osd.element.appendChild(brushCanvas);

    const anno = window.AnnotoriousOSD.createOSDAnnotator(osd, {
      drawingEnabled: false,
      drawingMode: "drag",
      autoSave: false,
      // Annotorious draws nothing itself (the SVG above does): it keeps the shapes for
      // hit-testing, selection and the editing handles.
      style: (a, state) => ({
        fill: "#ffffff", fillOpacity: state && state.hovered ? 0.15 : 0,
        stroke: "#ffffff", strokeOpacity: 0, strokeWidth: 1,
      }),
    });

    // One focus stop for the image (the page's element): the libraries' layers leave the tab order.
    // Annotorious' editing handles come and go with the selection, so this watches for them.
    const untab = () => osd.element.querySelectorAll("[tabindex]").forEach((el) => {
      if (el.getAttribute("tabindex") !== "-1") el.setAttribute("tabindex", "-1");
    });
    untab();
    const tabWatch = new MutationObserver(untab);
    tabWatch.observe(osd.element, { subtree: true, childList: true, attributes: true, attributeFilter: ["tabindex"] });

    let info = null;
    let region = { x: 0, y: 0 };
    let scale = 1;
    let size = { width: 0, height: 0 }; // item px
    let objects = [];
    const byId = new Map();
    const live = new Map(); // object id -> geometry being edited (image px)
    let threshold = 0;
    let selectedId = null;
    let tool = null;
    let drawLabel = opts.classes[0] || null;
    let regionOutline = null;
    const masks = new Map(); // annotation_id -> {url, mask}
    // brush state
    let brush = null; // {mask: Uint8Array, objectId: number|null}
    let brushRadius = 6;
    let brushCursor = null;
    let suppressSelect = false;

    // -- coordinates --------------------------------------------------------------------------
    const toImage = (x, y) => [region.x + x * scale, region.y + y * scale];
    const toItem = (X, Y) => [(X - region.x) / scale, (Y - region.y) / scale];
    const classIndex = (label) => Math.max(0, opts.classes.indexOf(label));
    const colour = (label) => PALETTE[classIndex(label) % PALETTE.length];

    function screenTransform() {
      const item = osd.world.getItemAt(0);
      if (!item) return null;
      const p0 = item.imageToViewerElementCoordinates(new OSD.Point(0, 0));
      const p1 = item.imageToViewerElementCoordinates(new OSD.Point(1000, 0));
      return { x: p0.x, y: p0.y, s: (p1.x - p0.x) / 1000 };
    }

    function isShown(o) {
      if (o.status === "deleted") return false;
      if (o.status === "proposed" && o.confidence !== null && o.confidence !== undefined) {
        return o.confidence >= threshold;
      }
      return true;
    }

    function editable(o) {
      return EDITABLE_STATUSES.has(o.status) && (o.geometry === "box" ||
        (o.geometry === "polygon" && o.shape && o.shape.polygons && o.shape.polygons.length === 1));
    }

    // -- Annotorious <-> objects --------------------------------------------------------------
    function bounds(points) {
      const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
      return { minX: Math.min(...xs), minY: Math.min(...ys), maxX: Math.max(...xs), maxY: Math.max(...ys) };
    }

    function toAnnotation(o) {
      const id = String(o.object_id);
      let selector;
      if (o.geometry === "polygon") {
        const flat = o.shape.polygons[0];
        const points = [];
        for (let i = 0; i + 1 < flat.length; i += 2) points.push(toImage(flat[i], flat[i + 1]));
        selector = { type: "POLYGON", geometry: { points, bounds: bounds(points) } };
      } else {
        const [x0, y0] = toImage(o.box[0], o.box[1]);
        const [x1, y1] = toImage(o.box[2], o.box[3]);
        selector = { type: "RECTANGLE", geometry: { x: x0, y: y0, w: x1 - x0, h: y1 - y0,
          bounds: { minX: x0, minY: y0, maxX: x1, maxY: y1 } } };
      }
      return { id, bodies: [], target: { annotation: id, selector } };
    }

    // An Annotorious shape as our object fields (item px, clipped to the item).
    function fromSelector(selector) {
      const cx = (v) => round2(clamp(v, 0, size.width || Infinity));
      const cy = (v) => round2(clamp(v, 0, size.height || Infinity));
      if (selector.type === "POLYGON") {
        const flat = [];
        for (const [X, Y] of selector.geometry.points) {
          const [x, y] = toItem(X, Y);
          flat.push(cx(x), cy(y));
        }
        const xs = flat.filter((_, i) => i % 2 === 0), ys = flat.filter((_, i) => i % 2 === 1);
        return { geometry: "polygon", polygons: [flat],
          box: [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)] };
      }
      const g = selector.geometry;
      const [x0, y0] = toItem(g.x, g.y);
      const [x1, y1] = toItem(g.x + g.w, g.y + g.h);
      return { geometry: "box", box: [cx(Math.min(x0, x1)), cy(Math.min(y0, y1)), cx(Math.max(x0, x1)), cy(Math.max(y0, y1))] };
    }

    function syncAnnotorious() {
      suppressSelect = true;
      try {
        anno.setAnnotations(objects.filter((o) => editable(o)).map(toAnnotation), true);
        anno.setFilter((a) => { const o = byId.get(Number(a.id)); return !!o && isShown(o); });
        if (selectedId !== null && byId.has(selectedId) && editable(byId.get(selectedId)) &&
            isShown(byId.get(selectedId)) && !tool) {
          anno.setSelected(String(selectedId));
        }
      } finally { suppressSelect = false; }
    }

    anno.on("createAnnotation", (a) => {
      const shape = fromSelector(a.target.selector);
      setTimeout(() => { try { anno.removeAnnotation(a.id); } catch (_e) { /* already gone */ } }, 0);
      // one shape per tool choice: the new object is selected for editing (b draws another)
      setTimeout(() => api.setTool(null), 0);
      const tooSmall = shape.box[2] - shape.box[0] < 1 || shape.box[3] - shape.box[1] < 1;
      if (!tooSmall && opts.onCreate) opts.onCreate(Object.assign({ label: drawLabel }, shape));
    });

    anno.on("selectionChanged", (list) => {
      if (suppressSelect) return;
      const id = list && list.length ? Number(list[0].id) : null;
      if (id === selectedId) return;
      selectedId = id;
      render();
      if (opts.onSelect) opts.onSelect(id === null ? null : byId.get(id) || null);
    });

    // A move or resize is written when the mouse button comes up (not only on deselect).
    const pending = new Map();
    anno.state.store.observe((event) => {
      for (const u of event.changes.updated || []) {
        if (!u.targetUpdated) continue;
        const id = Number(u.newValue.id);
        pending.set(id, u.newValue.target.selector);
        live.set(id, u.newValue.target.selector);
      }
      if (pending.size) render();
    }, { origin: "LOCAL" });
    function flushEdits() {
      if (!pending.size) return;
      const edits = Array.from(pending.entries());
      pending.clear();
      for (const [id, selector] of edits) {
        const o = byId.get(id);
        if (!o) continue;
        const shape = fromSelector(selector);
        if (shape.box[2] - shape.box[0] < 1 || shape.box[3] - shape.box[1] < 1) continue;
        if (opts.onUpdate) opts.onUpdate(Object.assign({ object_id: id, label: o.label }, shape));
      }
    }
    const onPointerUp = () => setTimeout(flushEdits, 0);
    window.addEventListener("pointerup", onPointerUp, true);

    // -- drawing our overlay ------------------------------------------------------------------
    function maskImage(o) {
      const key = o.annotation_id;
      if (masks.has(key)) return masks.get(key);
      const rle = o.shape && o.shape.rle;
      if (!rle) return null;
      const [h, w] = rle.size;
      const mask = decode(rle);
      const canvas = document.createElement("canvas");
      canvas.width = w; canvas.height = h;
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(w, h);
      const hex = colour(o.label);
      const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
      for (let k = 0; k < mask.length; k++) {
        if (!mask[k]) continue;
        img.data[4 * k] = rgb[0]; img.data[4 * k + 1] = rgb[1]; img.data[4 * k + 2] = rgb[2];
        img.data[4 * k + 3] = 110;
      }
      ctx.putImageData(img, 0, 0);
      const entry = { url: canvas.toDataURL(), mask };
      masks.set(key, entry);
      return entry;
    }

    function outlinePoints(o) {
      const sel = live.get(o.object_id);
      if (sel && sel.type === "POLYGON") return sel.geometry.points;
      if (sel) {
        const g = sel.geometry;
        return [[g.x, g.y], [g.x + g.w, g.y], [g.x + g.w, g.y + g.h], [g.x, g.y + g.h]];
      }
      if (o.geometry === "polygon" && o.shape && o.shape.polygons) return null; // rings below
      const [x0, y0] = toImage(o.box[0], o.box[1]);
      const [x1, y1] = toImage(o.box[2], o.box[3]);
      return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
    }

    function render() {
      const t = screenTransform();
      while (shapes.firstChild) shapes.removeChild(shapes.firstChild);
      while (labels.firstChild) labels.removeChild(labels.firstChild);
      if (!t) return;
      shapes.setAttribute("transform", `translate(${t.x} ${t.y}) scale(${t.s})`);
      if (regionOutline && info && info.region) {
        const r = info.region;
        for (const [cls, width] of [["region-halo", 5], ["region", 2]]) {
          svg("rect", { class: cls, x: r.x, y: r.y, width: r.width, height: r.height,
            "vector-effect": "non-scaling-stroke", "stroke-width": width }, shapes);
        }
      }
      for (const o of objects) {
        if (!isShown(o)) continue;
        const selected = o.object_id === selectedId;
        const g = svg("g", { class: `object ${o.status}${selected ? " selected" : ""}`,
          "data-object-id": o.object_id, "data-status": o.status, "data-label": o.label }, shapes);
        const stroke = colour(o.label);
        const width = selected ? 4 : 2;
        const common = { fill: "none", stroke, "stroke-width": width, "vector-effect": "non-scaling-stroke" };
        if (o.status === "proposed") common["stroke-dasharray"] = "6 4";
        const [bx0, by0] = toImage(o.box[0], o.box[1]);
        const [bx1, by1] = toImage(o.box[2], o.box[3]);
        if (o.geometry === "mask") {
          const m = maskImage(o);
          if (m) {
            const [h, w] = o.shape.rle.size;
            const [ix, iy] = toImage(0, 0);
            svg("image", { href: m.url, x: ix, y: iy, width: w * scale, height: h * scale,
              preserveAspectRatio: "none", class: "mask" }, g);
          }
        }
        const pts = outlinePoints(o);
        const rings = pts ? [pts] : o.shape.polygons.map((flat) => {
          const ring = [];
          for (let i = 0; i + 1 < flat.length; i += 2) ring.push(toImage(flat[i], flat[i + 1]));
          return ring;
        });
        // a dark halo under every outline keeps it visible on light and dark images
        for (const ring of rings) {
          const d = ring.map((p) => p.join(",")).join(" ");
          if (!(selected && editable(o) && !tool)) {
            svg("polygon", Object.assign({}, common, { points: d, stroke: "#000", "stroke-opacity": 0.5,
              "stroke-width": width + 2, "stroke-dasharray": "none" }), g);
            svg("polygon", Object.assign({}, common, { points: d }), g);
          }
          if (o.status === "hard_negative") {
            svg("polygon", { points: d, fill: `url(#${hatch.id})`, stroke: "none" }, g);
          }
        }
        if (o.status === "rejected") {
          for (const [a, b] of [[[bx0, by0], [bx1, by1]], [[bx1, by0], [bx0, by1]]]) {
            svg("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke, "stroke-width": 2,
              "vector-effect": "non-scaling-stroke" }, g);
          }
        }
        // the label text, in screen px so it keeps its size at every zoom
        const top = rings.flat().reduce((best, p) => (p[1] < best[1] ? p : best), [bx0, by0]);
        const left = Math.min(...rings.flat().map((p) => p[0]));
        const sx = t.x + left * t.s, sy = t.y + top[1] * t.s;
        const conf = o.status === "proposed" && o.confidence !== null && o.confidence !== undefined
          ? " " + o.confidence.toFixed(2) : "";
        const text = (selected ? "▶ " : "") + o.label + conf + (MARK[o.status] || "");
        const label = svg("text", { x: sx + 2, y: Math.max(12, sy - 4), class: `object-label ${o.status}`,
          "data-object-id": o.object_id, fill: "#fff", stroke: "#000", "stroke-width": 3,
          "paint-order": "stroke", "font-weight": selected ? "bold" : "normal" }, labels);
        label.textContent = text;
      }
      drawBrush(t);
    }

    osd.addHandler("update-viewport", render);
    osd.addHandler("resize", render);

    // -- the brush ------------------------------------------------------------------------------
    function drawBrush(t) {
      if (!brush) return;
      const rect = osd.element.getBoundingClientRect();
      if (brushCanvas.width !== Math.round(rect.width) || brushCanvas.height !== Math.round(rect.height)) {
        brushCanvas.width = Math.round(rect.width); brushCanvas.height = Math.round(rect.height);
      }
      const ctx = brushCanvas.getContext("2d");
      ctx.clearRect(0, 0, brushCanvas.width, brushCanvas.height);
      if (!brush.canvas) return;
      ctx.imageSmoothingEnabled = false;
      ctx.setTransform(t.s * scale, 0, 0, t.s * scale, t.x + region.x * t.s, t.y + region.y * t.s);
      ctx.drawImage(brush.canvas, 0, 0);
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      if (brushCursor) {
        ctx.beginPath();
        ctx.arc(brushCursor[0], brushCursor[1], brushRadius * scale * t.s, 0, 2 * Math.PI);
        ctx.strokeStyle = "#000"; ctx.lineWidth = 3; ctx.stroke();
        ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.stroke();
      }
    }

    function startBrush() {
      const w = size.width, h = size.height;
      const sel = selectedId !== null ? byId.get(selectedId) : null;
      const repaint = sel && sel.geometry === "mask" && sel.shape && sel.shape.rle;
      const mask = repaint ? decode(sel.shape.rle) : new Uint8Array(w * h);
      const canvas = document.createElement("canvas");
      canvas.width = w; canvas.height = h;
      brush = { mask, objectId: repaint ? sel.object_id : null, canvas, image: canvas.getContext("2d").createImageData(w, h) };
      for (let k = 0; k < mask.length; k++) if (mask[k]) paintPixel(k, 1);
      canvas.getContext("2d").putImageData(brush.image, 0, 0);
      brushCanvas.hidden = false;
      render();
    }

    function paintPixel(k, v) {
      const d = brush.image.data;
      brush.mask[k] = v;
      d[4 * k] = 255; d[4 * k + 1] = 0; d[4 * k + 2] = 255; d[4 * k + 3] = v ? 140 : 0;
    }

    function dab(screen, erase) {
      const item = osd.world.getItemAt(0);
      if (!brush || !item) return;
      const p = item.viewerElementToImageCoordinates(new OSD.Point(screen.x, screen.y));
      const [cx, cy] = toItem(p.x, p.y);
      const r = brushRadius, w = size.width, h = size.height;
      for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(h - 1, Math.ceil(cy + r)); y++) {
        for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(w - 1, Math.ceil(cx + r)); x++) {
          if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r) paintPixel(y * w + x, erase ? 0 : 1);
        }
      }
      brush.canvas.getContext("2d").putImageData(brush.image, 0, 0);
      brushCursor = [screen.x, screen.y];
      render();
    }

    osd.addHandler("canvas-press", (e) => {
      if (tool !== "brush") return;
      e.preventDefaultAction = true;
      dab(e.position, e.originalEvent && e.originalEvent.shiftKey);
    });
    osd.addHandler("canvas-drag", (e) => {
      if (tool !== "brush") return;
      e.preventDefaultAction = true;
      dab(e.position, e.originalEvent && e.originalEvent.shiftKey);
    });
    osd.addHandler("canvas-click", (e) => {
      if (tool === "brush") { e.preventDefaultAction = true; return; }
      // masks are not Annotorious shapes: select one by clicking on its pixels
      const item = osd.world.getItemAt(0);
      if (!item || !e.quick) return;
      const p = item.viewerElementToImageCoordinates(e.position);
      const [x, y] = toItem(p.x, p.y).map(Math.floor);
      for (const o of objects) {
        if (o.geometry !== "mask" || !isShown(o)) continue;
        const m = maskImage(o);
        if (m && x >= 0 && y >= 0 && x < size.width && y < size.height && m.mask[y * size.width + x]) {
          api.select(o.object_id);
          if (opts.onSelect) opts.onSelect(o);
          return;
        }
      }
    });

    function finishBrush() {
      if (!brush) return false;
      const { mask, objectId } = brush;
      const w = size.width, h = size.height;
      let x0 = w, y0 = h, x1 = -1, y1 = -1;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          if (!mask[y * w + x]) continue;
          if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
        }
      }
      api.setTool(null);
      if (x1 < 0) return false;
      const shape = { geometry: "mask", box: [x0, y0, x1 + 1, y1 + 1], rle: encode(mask, h, w) };
      if (objectId !== null) {
        const o = byId.get(objectId);
        if (opts.onUpdate) opts.onUpdate(Object.assign({ object_id: objectId, label: o ? o.label : drawLabel }, shape));
      } else if (opts.onCreate) {
        opts.onCreate(Object.assign({ label: drawLabel }, shape));
      }
      return true;
    }

    // -- the public API -------------------------------------------------------------------------
    function imageRect(x0, y0, x1, y1) {
      const [X0, Y0] = toImage(x0, y0);
      const [X1, Y1] = toImage(x1, y1);
      return osd.viewport.imageToViewportRectangle(X0, Y0, X1 - X0, Y1 - Y0);
    }

    const api = {
      osd, anno,
      open(viewerInfo) {
        info = viewerInfo;
        region = info.region ? { x: info.region.x, y: info.region.y } : { x: 0, y: 0 };
        scale = info.scale || 1;
        size = { width: info.width || 0, height: info.height || 0 };
        regionOutline = !!info.region;
        objects = []; byId.clear(); masks.clear(); live.clear(); selectedId = null;
        api.setTool(null);
        const source = info.dzi_url ? info.dzi_url : { type: "image", url: info.image_url };
        return new Promise((resolve, reject) => {
          const ok = () => { osd.removeHandler("open-failed", bad); resolve(); };
          const bad = (e) => { osd.removeHandler("open", opened); reject(new Error("could not open the image: " + (e.message || "failed"))); };
          const opened = () => {
            osd.removeHandler("open-failed", bad);
            const item = osd.world.getItemAt(0);
            if (!size.width && item) {
              const d = item.source.dimensions;
              size = { width: Math.round(d.x / scale), height: Math.round(d.y / scale) };
            }
            api.focusRegion(true);
            untab();
            render();
            ok();
          };
          osd.addOnceHandler("open", opened);
          osd.addOnceHandler("open-failed", bad);
          osd.open(source);
        });
      },
      close() {
        api.setTool(null);
        objects = []; byId.clear(); masks.clear(); live.clear(); selectedId = null;
        info = null; regionOutline = false;
        anno.setAnnotations([], true);
        osd.close();
        render();
      },
      setObjects(list) {
        objects = (list || []).filter((o) => o.status !== "deleted").slice();
        byId.clear();
        for (const o of objects) byId.set(o.object_id, o);
        live.clear();
        if (selectedId !== null && !byId.has(selectedId)) selectedId = null;
        syncAnnotorious();
        render();
      },
      setThreshold(t) {
        threshold = Number(t) || 0;
        if (selectedId !== null && byId.has(selectedId) && !isShown(byId.get(selectedId))) api.select(null);
        syncAnnotorious();
        render();
      },
      select(objectId) {
        selectedId = objectId === null || objectId === undefined ? null : Number(objectId);
        suppressSelect = true;
        try {
          const o = selectedId !== null ? byId.get(selectedId) : null;
          if (o && editable(o) && isShown(o) && !tool) anno.setSelected(String(selectedId));
          else anno.cancelSelected();
        } finally { suppressSelect = false; }
        render();
      },
      selected() { return selectedId; },
      setTool(name) {
        if (tool === "brush" && name !== "brush") { brush = null; brushCursor = null; brushCanvas.hidden = true; }
        tool = name || null;
        if (tool === "box" || tool === "polygon") {
          anno.cancelSelected();
          anno.setDrawingTool(tool === "box" ? "rectangle" : "polygon");
          // boxes: press and drag; polygons: click each corner, click the first to close
          anno.setDrawingMode(tool === "box" ? "drag" : "click");
          anno.setDrawingEnabled(true);
        } else {
          anno.setDrawingEnabled(false);
          if (anno.cancelDrawing) anno.cancelDrawing();
        }
        if (tool === "brush") { anno.cancelSelected(); startBrush(); }
        render();
      },
      tool() { return tool; },
      setDrawLabel(name) { drawLabel = name; },
      focusObject(objectId) {
        const o = byId.get(Number(objectId));
        if (!o) return;
        const [x0, y0, x1, y1] = o.box;
        const pad = Math.max(x1 - x0, y1 - y0, 24 / scale) * 1.5;
        osd.viewport.fitBoundsWithConstraints(imageRect(x0 - pad, y0 - pad, x1 + pad, y1 + pad));
      },
      focusRegion(immediately) {
        if (info && info.region) {
          const r = info.region;
          const m = Math.max(r.width, r.height) * 0.15;
          osd.viewport.fitBounds(osd.viewport.imageToViewportRectangle(r.x - m, r.y - m, r.width + 2 * m, r.height + 2 * m), !!immediately);
        } else {
          osd.viewport.goHome(!!immediately);
        }
      },
      toScreen(x, y) {
        const item = osd.world.getItemAt(0);
        const [X, Y] = toImage(x, y);
        const p = item.imageToViewerElementCoordinates(new OSD.Point(X, Y));
        const rect = osd.element.getBoundingClientRect();
        return { x: rect.left + p.x, y: rect.top + p.y };
      },
      zoom(factor) { osd.viewport.zoomBy(factor); osd.viewport.applyConstraints(); },
      brushSize(delta) { brushRadius = clamp(brushRadius + delta, 1, 200); render(); return brushRadius; },
      finishBrush,
      visibleObjects() {
        return objects.filter(isShown).slice().sort((a, b) => (a.box[1] - b.box[1]) || (a.box[0] - b.box[0]));
      },
      destroy() {
        window.removeEventListener("pointerup", onPointerUp, true);
        tabWatch.disconnect();
        anno.destroy();
        osd.destroy();
        element.removeChild(host);
      },
    };
    return api;
  }

  window.ExemplarViewer = { create, rle: { encode, decode, countsToString, stringToCounts } };
})();
