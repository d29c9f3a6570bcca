"""Small SVG charts as strings (no plotting library needed to read the report anywhere)."""
from __future__ import annotations

import html
import math
from typing import Mapping, Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f")
_W, _H, _LEFT, _BOTTOM, _TOP = 560, 260, 56, 48, 28


def _finite(values: Sequence[float]) -> list[float]:
  return [v for v in values if v is not None and math.isfinite(v)]


def _axis_range(values: Sequence[float]) -> tuple[float, float]:
  vals = _finite(values) or [0.0, 1.0]
  lo, hi = min(0.0, min(vals)), max(vals)
  return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _frame(title: str, ylabel: str, lo: float, hi: float, body: list[str],
           legend: Sequence[str]) -> str:
  """Axes, horizontal grid lines with values, title, legend around the plotted `body`."""
  plot_h = _H - _BOTTOM - _TOP
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>']
  for i in range(5):
    v = lo + (hi - lo) * i / 4
    y = _TOP + plot_h * (1 - i / 4)
    parts.append(f'<line x1="{_LEFT}" x2="{_W - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                 f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{v:.3g}</text>')
  parts.append(f'<text transform="translate(12,{_TOP + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">{html.escape(ylabel)}</text>')
  parts += body
  for i, name in enumerate(legend):
    x = _LEFT + i * ((_W - _LEFT) / max(1, len(legend)))
    parts.append(f'<rect x="{x:.1f}" y="{_H - 14}" width="10" height="10" '
                 f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{x + 14:.1f}" y="{_H - 5}">'
                 f'{html.escape(name)}</text>')
  parts.append("</svg>")
  return "".join(parts)


def bar_chart(title: str, groups: Sequence[str], series: Mapping[str, Sequence[float]],
              ylabel: str = "") -> str:
  """Grouped bars: one group per entry of `groups`, one bar per series (non-finite: no bar)."""
  for name, values in series.items():
    if len(values) != len(groups):
      raise ValueError(f"series {name!r} has {len(values)} values for {len(groups)} groups")
  lo, hi = _axis_range([v for vs in series.values() for v in vs])
  plot_w, plot_h = _W - _LEFT - 8, _H - _BOTTOM - _TOP
  group_w = plot_w / max(1, len(groups))
  bar_w = group_w * 0.8 / max(1, len(series))
  y_of = lambda v: _TOP + plot_h * (1 - (v - lo) / (hi - lo))
  body = []
  for g, group in enumerate(groups):
    x0 = _LEFT + g * group_w + group_w * 0.1
    body.append(f'<text x="{_LEFT + (g + 0.5) * group_w:.1f}" y="{_H - _BOTTOM + 14}" '
                f'text-anchor="middle">{html.escape(group)}</text>')
    for s, values in enumerate(series.values()):
      v = values[g]
      if v is None or not math.isfinite(v):
        continue
      top, base = sorted((y_of(v), y_of(0.0)))
      body.append(f'<rect x="{x0 + s * bar_w:.1f}" y="{top:.1f}" width="{bar_w * 0.95:.1f}" '
                  f'height="{max(base - top, 0.5):.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                  f'<title>{html.escape(list(series)[s])}: {v:.4g}</title></rect>')
  return _frame(title, ylabel, lo, hi, body, list(series))


def line_chart(title: str, x: Sequence[float], series: Mapping[str, Sequence[float]],
               xlabel: str = "", ylabel: str = "") -> str:
  """One polyline with markers per series over shared x values."""
  if len(x) < 2:
    raise ValueError(f"line_chart needs at least 2 x values, got {len(x)}")
  for name, values in series.items():
    if len(values) != len(x):
      raise ValueError(f"series {name!r} has {len(values)} values for {len(x)} x values")
  ys = [v for vs in series.values() for v in vs]
  vals = _finite(ys) or [0.0, 1.0]
  lo, hi = min(vals), max(vals)
  lo, hi = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
  plot_w, plot_h = _W - _LEFT - 8, _H - _BOTTOM - _TOP
  x_lo, x_hi = min(x), max(x)
  px = lambda v: _LEFT + plot_w * (v - x_lo) / ((x_hi - x_lo) or 1.0)
  py = lambda v: _TOP + plot_h * (1 - (v - lo) / (hi - lo))
  body = [f'<text x="{_LEFT + plot_w / 2}" y="{_H - _BOTTOM + 28}" text-anchor="middle">'
          f'{html.escape(xlabel)}</text>']
  for xv in x:
    body.append(f'<text x="{px(xv):.1f}" y="{_H - _BOTTOM + 14}" text-anchor="middle">{xv:.3g}</text>')
  for s, (name, values) in enumerate(series.items()):
    color = PALETTE[s % len(PALETTE)]
    pts = [(px(a), py(b)) for a, b in zip(x, values) if b is not None and math.isfinite(b)]
    body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
    body += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{color}"/>' for a, b in pts]
  return _frame(title, ylabel, lo, hi, body, list(series))
