"""The evaluation report page: metric tables, SVG charts and image grids from `results.json`."""
from __future__ import annotations

import html
import math
from typing import Any, Mapping

from diffcamera_jax.evaluation.report.svg import bar_chart, line_chart

# (summary key, column title, better direction) in table order.
COLUMNS = (
    ("bokeh/psnr", "bokeh PSNR", "↑"), ("bokeh/ssim", "bokeh SSIM", "↑"),
    ("bokeh/focus_accuracy", "bokeh focus acc.", "↑"),
    ("deblur/psnr", "deblur PSNR", "↑"), ("deblur/ssim", "deblur SSIM", "↑"),
    ("refocus/psnr", "refocus PSNR", "↑"), ("refocus/ssim", "refocus SSIM", "↑"),
    ("refocus/focus_accuracy", "refocus focus acc.", "↑"),
    ("stacking/psnr", "stacking PSNR", "↑"), ("sweep/lvcorr", "LVCorr", "↑"),
)
# Shown only when the run computed them (--lpips-weights / --clip-weights).
OPTIONAL_COLUMNS = tuple(
    (f"{task}/{metric}", f"{task} {title}", arrow)
    for metric, title, arrow in (("lpips", "LPIPS", "↓"), ("clip_i", "CLIP-I", "↑"))
    for task in ("bokeh", "deblur", "refocus"))


def _columns(methods: Mapping[str, Any]) -> tuple:
  present = {key for result in methods.values() for key in result["summary"]}
  return COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c[0] in present)


_STYLE = """body{font-family:sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{image-rendering:pixelated;max-width:100%}
.charts svg{margin:4px}figure{margin:12px 0}figcaption{color:#555}"""


def _fmt(v: Any) -> str:
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return "–"
  return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def _table(methods: Mapping[str, Any]) -> str:
  columns = _columns(methods)
  head = "".join(f"<th>{html.escape(title)} {arrow}</th>" for _, title, arrow in columns)
  rows = []
  for name, result in methods.items():
    cells = "".join(f"<td>{_fmt(result['summary'].get(key))}</td>" for key, _, _ in columns)
    rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
  return f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def _charts(bench: Mapping[str, Any]) -> str:
  methods = bench["methods"]
  summaries = {m: r["summary"] for m, r in methods.items()}
  charts = []
  for metric, label in (("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
    tasks = ["bokeh", "deblur", "refocus"] + (["stacking"] if metric == "psnr" else [])
    charts.append(bar_chart(label + " by task", tasks,
                            {m: [s.get(f"{t}/{metric}") for t in tasks] for m, s in summaries.items()},
                            ylabel=label))
  charts.append(bar_chart("Depth-of-field behaviour", ["bokeh focus", "refocus focus", "LVCorr"],
                          {m: [s.get("bokeh/focus_accuracy"), s.get("refocus/focus_accuracy"),
                               s.get("sweep/lvcorr")] for m, s in summaries.items()}))
  charts.append(line_chart("Sharpness over the blur sweep", bench["sweep_levels"],
                           {m: s["sweep/log_lv_drop"] for m, s in summaries.items()},
                           xlabel="requested blur K (pixels)",
                           ylabel="log Laplacian variance vs K=0"))
  return '<div class="charts">' + "".join(charts) + "</div>"


def _images(bench: Mapping[str, Any]) -> str:
  parts = []
  for caption, path in bench.get("images", {}).items():
    parts.append(f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
                 f"<figcaption>{html.escape(caption)}</figcaption></figure>")
  return "".join(parts)


def render_report(results: Mapping[str, Any], title: str = "DiffCamera evaluation") -> str:
  """The full HTML page for a `results.json` dict (image paths relative to the page)."""
  sections = []
  for name, bench in results["benchmarks"].items():
    h, w = bench["size"]
    sections.append(
        f"<h2>{html.escape(name)}: {bench['num_scenes']} scenes at {h}×{w}</h2>"
        f"{_table(bench['methods'])}{_charts(bench)}{_images(bench)}")
  settings = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>"
                     for k, v in results.get("settings", {}).items())
  return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
          f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
          "<p>Tasks: <b>bokeh</b> (all-in-focus → blur K at focus A), <b>deblur</b> (defocused → "
          "all in focus), <b>refocus</b> (focused at A → focused at B, same K); <b>stacking</b>: "
          "mask-blend of the outputs at A and B vs the multi-focus image; <b>LVCorr</b>: Pearson "
          "correlation of K with −log Laplacian variance over a blur sweep (+1 = blur grows with "
          "K); <b>focus acc.</b>: the region at the requested depth is the sharper one. PSNR of "
          "exact reproductions is capped at 100 dB.</p>"
          + "".join(sections)
          + f"<h2>Settings</h2><table>{settings}</table></body></html>")
