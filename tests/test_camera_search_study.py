"""tools/camera_search_study.py: bad sides are named with exit code 2; a tiny run scores every
side with the fields the docs quote, and the true camera's inversion restores the photos."""
import importlib.util
import json
import pathlib

_PATH = pathlib.Path(__file__).resolve().parents[1] / "tools" / "camera_search_study.py"
_spec = importlib.util.spec_from_file_location("camera_search_study", _PATH)
camera_search_study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(camera_search_study)


def test_bad_sides_exit_2(tmp_path, capsys):
  out = tmp_path / "s.json"
  assert camera_search_study.main(["--size", "32", "--sides", "16,64", "--out", str(out)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--sides" in err[0] and not out.exists()


def test_a_tiny_study_scores_each_side(tmp_path):
  out = tmp_path / "s.json"
  assert camera_search_study.main(["--size", "32", "--sides", "16,32", "--num-scenes", "2",
                                   "--num-sharp", "1", "--out", str(out)]) == 0
  got = json.loads(out.read_text())
  assert sorted(got["sides"]) == ["16", "32"]
  assert got["sides"]["16"]["search_hw"] == [16, 16] and got["sides"]["32"]["search_hw"] == [32, 32]
  # blurs searched scale with the copy: 1.2x the training range (40 px at 512)
  assert abs(got["sides"]["32"]["max_blur_searched_px"] - 3.0) < 1e-6
  assert "deblur_gain_minus_largest_side_db" in got["sides"]["16"]
  for side in got["sides"].values():
    assert 0.0 <= side["share_deblurred"] <= 1.0 and side["sharp_share_deblurred"] in (0.0, 1.0)
  assert got["true camera"]["deblur_gain_db"]["mean"] > 0.0
