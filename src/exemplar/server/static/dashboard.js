// The dashboard: class coverage, learning curves (Chart.js, vendored under /static/vendor),
// throughput, cycle, model and stopping status. Text goes in with textContent only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);

  function text(id, value) {
    $(id).textContent = value == null || value === "" ? "—" : String(value);
  }

  // One chart per canvas: a refresh replaces it (Chart.js refuses to reuse a canvas).
  const charts = {};
  function draw(id, config) {
    if (charts[id]) charts[id].destroy();
    charts[id] = new window.Chart($(id), config);
  }

  function perClassChart(data) {
    const names = Object.keys(data.labels_per_class);
    const counts = names.map((n) => data.labels_per_class[n]);
    const rare = new Set(data.rare_classes);
    draw("per-class", {
      type: "bar",
      data: {
        labels: names,
        datasets: [{
          label: data.per_class_counts === "objects" ? "verified objects" : "verified labels",
          data: counts,
          backgroundColor: names.map((n) => (rare.has(n) ? "#d9534f" : "#1a73e8")),
        }],
      },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
    });
  }

  // A metric's name in words: accuracy for classification, the Model Selector's mAP for
  // detection and segmentation (the dashboard names it in data.metric).
  const METRIC_NAMES = { accuracy: "accuracy", map50: "mAP@0.5", map: "mAP@[.5:.95]" };

  function curveChart(data) {
    const datasets = [];
    const points = (rows, metric) => rows
      .filter((r) => r[metric] != null && r.n_labels != null)
      .map((r) => ({ x: r.n_labels, y: r[metric] }));
    const metric = data.metric || "accuracy";
    const vs = data.learning_curve_vs_random;
    const gold = vs.metric || "accuracy";
    const objects = data.per_class_counts === "objects";
    datasets.push({ label: "validation " + METRIC_NAMES[metric] + " (selected model)", data: points(data.learning_curve, metric), borderColor: "#888" });
    if (vs.active.length) datasets.push({ label: "gold " + METRIC_NAMES[gold] + " · active learning", data: points(vs.active, gold), borderColor: "#1a73e8" });
    if (vs.random.length) datasets.push({ label: "gold " + METRIC_NAMES[gold] + " · random control", data: points(vs.random, gold), borderColor: "#d9534f" });
    draw("curve", {
      type: "line",
      data: { datasets },
      options: {
        scales: {
          x: { type: "linear", title: { display: true, text: objects ? "labeled images" : "labels" } },
          y: { min: 0, max: 1, title: { display: true, text: objects ? "mAP" : "accuracy" } },
        },
      },
    });
    const note = [];
    if (vs.gold_size) {
      note.push("gold set: " + vs.gold_size + (objects ? " images, " + vs.gold_objects + " objects" : " items"));
    }
    if (vs.note) note.push(vs.note);
    $("curve-note").textContent = note.join(" · ");
  }

  function throughputTable(rows) {
    const tbody = document.querySelector("#throughput tbody");
    tbody.replaceChildren();
    for (const r of rows) {
      const tr = document.createElement("tr");
      // Detection and segmentation: images, with the objects confirmed or drawn beside them.
      const both = (images, objects) => (objects == null ? images : images + " (" + objects + " objects)");
      for (const v of [
        r.annotator,
        both(r.labels, r.objects),
        both(r.labels_24h, r.objects_24h),
        both(r.per_hour_24h, r.objects_per_hour_24h),
        both(r.per_hour_overall, r.objects_per_hour_overall),
      ]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }

  // One readable line per stopping criterion ("label budget: 120 of 200 labels"); a
  // combinator's children are indented under it, and a criterion that was met is marked.
  function stoppingList(progress) {
    const list = $("stopping-criteria");
    list.replaceChildren();
    for (const c of progress) {
      const li = document.createElement("li");
      li.textContent = c.text;
      if (c.depth) li.classList.add("depth-" + Math.min(c.depth, 3));
      if (c.met) li.classList.add("met");
      list.appendChild(li);
    }
  }

  // Admins: ask the background learner to run the next cycle now.
  async function retrain() {
    const csrf = document.querySelector('meta[name="exemplar-csrf"]').content;
    const response = await fetch("/api/v1/retrain", {
      method: "POST", credentials: "same-origin", headers: { "X-Exemplar-CSRF": csrf },
    });
    $("retrain-status").textContent = response.status === 202
      ? "retraining requested; the dashboard refreshes when it is done"
      : "could not request retraining (" + response.status + ")";
    if (response.status === 202) setTimeout(load, 5000);
  }

  async function load() {
    try {
      const response = await fetch("/api/v1/dashboard", { credentials: "same-origin" });
      if (response.status === 401) { window.location.assign("/login"); return; }
      if (!response.ok) { $("error").textContent = "Could not load the dashboard (" + response.status + ")."; return; }
      const data = await response.json();
      text("cycle", data.cycle == null ? null : data.cycle + " (" + data.cycle_state + ")");
      text("model", data.model_version);
      text("labels", data.labels_total + " verified"
        + (data.objects_total != null ? " images · " + data.objects_total + " objects" : "")
        + (data.labels_disputed ? " · " + data.labels_disputed + " disputed (waiting for review)" : ""));
      const s = data.stopping;
      text("stopping", s.stopped ? "stopped: " + (s.stop_reason || "") : "running: the loop stops when any criterion below is met");
      stoppingList(s.progress);
      $("rare").textContent = data.rare_classes.length
        ? "Rare classes (fewer than " + data.rare_rule.fewer_than + " labels or under "
          + Math.round(data.rare_rule.or_fraction_of_mean * 100) + "% of the mean): "
          + data.rare_classes.join(", ")
        : "";
      throughputTable(data.throughput);
      if (window.Chart) {
        perClassChart(data);
        curveChart(data);
      } else {
        $("error").textContent = "The chart library did not load.";
      }
    } catch (err) {
      $("error").textContent = "Network error: " + err.message;
    }
  }

  const button = $("retrain");
  if (button) button.addEventListener("click", retrain);
  load();
})();
