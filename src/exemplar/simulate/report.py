"""Write a simulation's ``results.csv``, ``summary.json`` and self-contained ``report.html``."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from exemplar.simulate.runner import RESULT_COLUMNS, SimulationResult
from exemplar.simulate.summary import curve_table, diff_text

__all__ = ["PAGE_STYLE", "png_base64", "win_tie_loss_rows", "write_files", "write_outputs"]

#: The ``<style>`` of every simulation report page.
PAGE_STYLE = """<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:0 1em 1em 0}
img{max-width:520px}.verdict{background:#f3f6ff;border-left:4px solid #3557c4;padding:.8em 1em}
.win{background:#d9f2d9}.loss{background:#f6d5d5}.small{color:#666;font-size:.9em}
</style>"""


def write_outputs(
    result: SimulationResult, summary: dict[str, Any], out_dir: Path
) -> dict[str, Path]:
    """Write the three output files atomically and return their paths."""
    return write_files(out_dir, result.rows, RESULT_COLUMNS, summary, render_html(result, summary))


def write_files(
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    summary: dict[str, Any],
    page: str,
) -> dict[str, Path]:
    """A simulation's ``results.csv`` (``rows`` in ``columns``), ``summary.json`` and
    ``report.html`` (``page``), each written atomically; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out_dir / "results.csv",
        "summary": out_dir / "summary.json",
        "report": out_dir / "report.html",
    }
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(paths["results"], buf.getvalue())
    _atomic_write(paths["summary"], json.dumps(summary, indent=2) + "\n")
    _atomic_write(paths["report"], page)
    return paths


def win_tie_loss_rows(wtl: dict[str, dict[str, str]]) -> str:
    """The rows of the pairwise table: one per arm, its win/tie/loss against each other arm."""
    esc = html.escape
    names = list(wtl)
    return "".join(
        f"<tr><th>{esc(a)}</th>"
        + "".join(f'<td class="{esc(wtl[a][b])}">{esc(wtl[a][b])}</td>' for b in names)
        + "</tr>"
        for a in names
    )


def render_html(result: SimulationResult, summary: dict[str, Any]) -> str:
    """A single HTML page with embedded PNG plots: opens offline, no external assets."""
    cfg = result.config
    esc = html.escape
    plots = "".join(
        f'<figure><img alt="{esc(label)} learning curve" src="data:image/png;base64,'
        f'{_plot(result, summary, metric, label)}"><figcaption>{esc(label)}: mean ± 1 std over '
        f"{cfg.seeds} seeds</figcaption></figure>"
        for metric, label in (("accuracy", "Test accuracy"), ("macro_f1", "Test macro-F1"))
    )
    rows = []
    for name, s in summary["strategies"].items():
        gain = diff_text(s.get("diff_vs_random") if name != "random" else None)
        reach = s["labels_to_target"]
        reach_txt = (
            f"{reach['mean']:.0f} ({reach['seeds_reached']}/{cfg.seeds} seeds)"
            if reach["mean"] is not None
            else f"not reached (0/{cfg.seeds})"
        )
        cov = s["class_coverage"]["mean_batch_coverage"]
        alias = f" → {s['resolves_to']}" if s["resolves_to"] != name else ""
        rows.append(
            "<tr>"
            f"<td>{esc(name + alias)}</td><td>{s['aulc_mean']:.3f} ± {s['aulc_std']:.3f}</td>"
            f"<td>{esc(gain)}</td><td>{s['final_accuracy_mean']:.3f}</td><td>{esc(reach_txt)}</td>"
            f"<td>{'—' if cov is None else f'{cov:.2f}'}</td>"
            f"<td>{s['query_seconds_mean'] * 1000:.1f}</td><td>{s['fit_seconds_mean'] * 1000:.1f}</td>"
            "</tr>"
        )
    names = list(summary["win_tie_loss"])
    wtl_rows = win_tie_loss_rows(summary["win_tie_loss"])
    cost = summary.get("cost")
    cost_html = (
        f"<h2>Does it pay?</h2><p>{esc(cost['explanation'])}</p>"
        f"<p class=small>Label cost {cost['label_cost']:,.2f}, engineering cost "
        f"{cost['engineering_cost']:,.2f}, target accuracy {cost['target_accuracy']:.3f}. "
        "Break-even assumes the labels needed grow in proportion to the pool.</p>"
        if cost
        else ""
    )
    config_txt = esc(json.dumps(summary["config"], indent=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>exemplar simulation: {esc(cfg.dataset)}</title>
{PAGE_STYLE}</head><body>
<h1>Active learning vs random on {esc(cfg.dataset)}</h1>
<p class="verdict" id="verdict">{esc(summary["verdict"])}</p>
{plots}
<h2>Strategies</h2>
<table id="strategies"><tr><th>strategy</th><th>normalized AULC</th><th>gain vs random [95% CI]</th>
<th>final accuracy</th><th>labels to {summary["target_accuracy"]:.3f} accuracy</th>
<th>batch class coverage</th><th>query ms</th><th>fit ms</th></tr>
{"".join(rows)}</table>
<p class=small>Full-data accuracy {summary["full_data_accuracy"]:.3f} (pool {result.n_pool},
test {result.n_test}); the target is 95% of it. Gains are paired over seeds.</p>
<h2>Pairwise (paired t-test on AULC, α = 0.05)</h2>
<table id="wtl"><tr><th>row vs column</th>{"".join(f"<th>{esc(n)}</th>" for n in names)}</tr>{wtl_rows}</table>
{cost_html}
<h2>Configuration</h2><pre>{config_txt}</pre>
</body></html>
"""


def _plot(result: SimulationResult, summary: dict[str, Any], metric: str, label: str) -> str:
    curves = curve_table(result, metric)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, c in curves.items():
        style = "--" if name == "random" else "-"
        resolved = result.resolved.get(name, name)
        legend = f"{name} ({resolved})" if resolved != name else name
        (line,) = ax.plot(c["n_labels"], c["mean"], style, label=legend, linewidth=1.6)
        lo = [m - s for m, s in zip(c["mean"], c["std"], strict=True)]
        hi = [m + s for m, s in zip(c["mean"], c["std"], strict=True)]
        ax.fill_between(c["n_labels"], lo, hi, color=line.get_color(), alpha=0.15)
    if metric == "accuracy":
        ax.axhline(
            summary["target_accuracy"],
            color="grey",
            linestyle=":",
            linewidth=1,
            label="95% of full-data accuracy",
        )
    ax.set_xlabel("labels")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return png_base64(fig)


def png_base64(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG for an ``<img src="data:...">`` (then closed)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
