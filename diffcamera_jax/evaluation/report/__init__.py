"""The evaluation report: dependency-free SVG charts (`svg`) and the HTML page (`html`)."""
from diffcamera_jax.evaluation.report.html import render_report
from diffcamera_jax.evaluation.report.svg import bar_chart, line_chart

__all__ = ["bar_chart", "line_chart", "render_report"]
