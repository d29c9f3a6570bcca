"""The results summary (`evaluation.result_summary`, what tools/summarize_results.py prints):
per-scene margins over the baselines, and over the renderer given the same corrupted depth."""
import json

from diffcamera_jax.evaluation import result_summary


def _row(bokeh, refocus):
  return {"per_scene": {"bokeh/psnr": bokeh, "deblur/psnr": [30.0, 30.0],
                        "refocus/psnr": refocus, "bokeh/focus_accuracy": [1.0, 0.0],
                        "refocus/focus_accuracy": [1.0, 1.0], "sweep/lvcorr": [1.0, 0.5],
                        "stacking/psnr": [40.0, 40.0]}}


def test_corrupted_depth_margins(tmp_path):
  methods = {"input unchanged": _row([30, 30], [26, 26]),
             "renderer (true depth)": _row([100, 100], [31, 31]),
             "model": _row([40, 40], [30, 30]),
             "renderer (depth: warp)": _row([32, 34], [27, 27]),
             "model (depth: warp)": _row([35, 35], [29, 28]),
             "renderer (depth: holes)": _row([30, 30], [26, 26]),
             "model (depth: holes)": _row([34, 34], [27, 27])}
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"benchmarks": {"procedural": {"methods": methods}}}))
  text = result_summary.summarize(str(path))
  lines = {l.split(":")[0].strip(): l for l in text.splitlines() if l.startswith("  model ")}
  # bokeh: warp (+3, +1), holes (+4, +4) -> per scene mean over kinds (3.5, 2.5) -> 3.0 ± 0.5
  assert "mean over kinds +3.000 ± 0.500" in lines["model bokeh"]
  assert "holes +4.00" in lines["model bokeh"] and "warp +2.00" in lines["model bokeh"]
  # refocus: warp (+2, +1), holes (+1, +1) -> (1.5, 1.0) -> 1.25 ± 0.25
  assert "mean over kinds +1.250 ± 0.250" in lines["model refocus"]
  assert "renderer bokeh" not in text


def test_no_corruption_rows_no_section(tmp_path):
  methods = {"input unchanged": _row([30, 30], [26, 26]),
             "renderer (true depth)": _row([100, 100], [31, 31]), "model": _row([40, 41], [30, 30])}
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"benchmarks": {"procedural": {"methods": methods}}}))
  assert "corrupted depth" not in result_summary.summarize(str(path))
