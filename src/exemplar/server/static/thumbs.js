// Thumbnails shared by the curation pages (curate.js, gallery.js): an item's image, the crop
// of one object's box from its image (drawn on a canvas), a text's first characters, or the
// item id for a feature row. Text goes in with textContent, never as HTML.
"use strict";
window.exemplarThumbs = (function () {
  const API = "/api/v1";
  const CLIP = 120;
  const images = new Map();  // item id -> Promise<HTMLImageElement>, one load per image

  function image(itemId) {
    if (!images.has(itemId)) {
      images.set(itemId, new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve(img);
        img.onerror = () => reject(new Error("no image for item " + itemId));
        img.src = API + "/media/" + encodeURIComponent(itemId);
      }));
    }
    return images.get(itemId);
  }

  // ``entry``: {item_id, item_kind, text, box}; ``size``: the thumbnail's side in pixels.
  function thumb(entry, size) {
    if (entry.item_kind === "image" && entry.box) {
      const canvas = document.createElement("canvas");
      canvas.className = "thumb crop";
      canvas.width = size;
      canvas.height = size;
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", "object of item " + entry.item_id);
      image(entry.item_id).then((img) => {
        const [x0, y0, x1, y1] = entry.box;
        const w = Math.max(1, x1 - x0), h = Math.max(1, y1 - y0);
        const scale = size / Math.max(w, h);
        const ctx = canvas.getContext("2d");
        ctx.imageSmoothingEnabled = scale < 1;
        ctx.drawImage(img, x0, y0, w, h, (size - w * scale) / 2, (size - h * scale) / 2, w * scale, h * scale);
      }).catch(() => { canvas.classList.add("missing"); });
      return canvas;
    }
    if (entry.item_kind === "image") {
      const img = document.createElement("img");
      img.className = "thumb";
      img.loading = "lazy";
      img.width = size;
      img.height = size;
      img.alt = "item " + entry.item_id;
      img.src = API + "/media/" + encodeURIComponent(entry.item_id);
      return img;
    }
    const span = document.createElement("span");
    span.className = "thumb item-text";
    if (entry.item_kind === "text" && entry.text != null) {
      span.textContent = entry.text.length <= CLIP ? entry.text : entry.text.slice(0, CLIP) + "…";
      span.title = entry.text;
    } else {
      span.textContent = "item " + entry.item_id;
    }
    return span;
  }

  return { thumb };
})();
