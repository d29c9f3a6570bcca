"""The HTML report's table shows LPIPS / CLIP-I columns exactly when a run computed them."""
from diffcamera_jax.evaluation.report import html as report_html


def test_optional_metric_columns_appear_only_when_computed():
  plain = {"model": {"summary": {"bokeh/psnr": 30.0}}}
  table = report_html._table(plain)
  assert "bokeh PSNR" in table and "LPIPS" not in table and "CLIP-I" not in table
  with_lpips = {"model": {"summary": {"bokeh/psnr": 30.0, "deblur/lpips": 0.125}},
                "input": {"summary": {"bokeh/psnr": 20.0}}}
  table = report_html._table(with_lpips)
  assert "deblur LPIPS" in table and "0.125" in table
  assert "bokeh LPIPS" not in table and "CLIP-I" not in table
  assert table.count("<tr>") == 3  # header + two methods, the missing score shown as a dash
