"""The demo writes readable PNGs of the expected size."""
import os

from PIL import Image

from diffcamera_jax import optics_demo as demo


def test_demo_writes_readable_pngs(tmp_path):
  paths = demo.write_demo(str(tmp_path), size=32, blur=4.0, sweep=2)
  names = {os.path.basename(p) for p in paths}
  assert {"input.png", "disparity.png", "sweep_0.png", "sweep_1.png", "aperture_hexagon.png",
          "multifocus.png"} <= names
  for path in paths:
    with Image.open(path) as image:
      assert image.size == (32, 32) and image.mode == "RGB"
  sweep = [Image.open(os.path.join(tmp_path, f"sweep_{i}.png")).tobytes() for i in range(2)]
  assert sweep[0] != sweep[1]  # focusing elsewhere changes the picture
