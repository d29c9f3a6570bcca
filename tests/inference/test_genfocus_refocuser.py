"""`GenfocusRefocuser` and `refocus --genfocus` on the tiny Genfocus fixtures (random FLUX weights
with adapters in the released layout): its frames are exactly the two stages run on the
documented conditions, larger photos come back at their own size, and bad input is one line."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from diffcamera_jax import optics, refocus
from diffcamera_jax.inference import compose
from diffcamera_jax.inference.genfocus_refocuser import GenfocusRefocuser, noise_key
from diffcamera_jax.models import genfocus
from diffcamera_jax.models.flux_diffcamera import pack_latents

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
STEPS = 2
SIDE = 32  # working long side; the fixture VAE downsamples 4x, so stages need multiples of 8


def make_genfocus_dir(root: str) -> str:
  """A Genfocus directory of links to the fixtures (the layout the refocuser loads)."""
  os.makedirs(root, exist_ok=True)
  gen = os.path.join(FIXTURES, "genfocus")
  for name in ("deblurNet.safetensors", "bokehNet.safetensors", "deblur_prompt.safetensors",
               "bokeh_prompt.safetensors", "transformer"):
    os.symlink(os.path.abspath(os.path.join(gen, name)), os.path.join(root, name))
  os.symlink(os.path.abspath(os.path.join(FIXTURES, "flux", "vae")), os.path.join(root, "vae"))
  return root


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
  return make_genfocus_dir(str(tmp_path_factory.mktemp("genfocus") / "weights"))


@pytest.fixture(scope="module")
def refocuser(directory):
  return GenfocusRefocuser.load(directory, num_steps=STEPS, max_side=SIDE)


def photo_and_disparity(h: int, w: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  disparity = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
  return rng.random((h, w, 3)).astype(np.float32), disparity


def stage(refocuser, name, images, seed, index=0):
  """One stage run directly, with the refocuser's noise (photo sizes are multiples of 8)."""
  h, w = images[0].shape[:2]
  f = refocuser.vae.config.downsample_factor
  noise = pack_latents(jax.random.normal(noise_key(seed, name, index),
                                         (1, h // f, w // f, refocuser.vae.config.latent_channels)))
  out = genfocus.run_stage(name, refocuser.stage_params[name], refocuser.config, refocuser.vae,
                           refocuser.vae_params, refocuser.texts[name],
                           [jnp.asarray(im)[None] for im in images], noise, num_steps=STEPS)
  return np.asarray(out)[0]


def test_frames_are_the_two_stages_on_their_conditions(refocuser):
  image, disparity = photo_and_disparity(24, 32)
  k = 9.0
  frames = refocuser.refocus(image, [(0.25, 0.5)], [0.0, k], disparity=disparity, seed=3)
  assert frames.shape == (2, 24, 32, 3)
  sharp = stage(refocuser, "deblur", [image], seed=3)
  np.testing.assert_allclose(frames[0], np.clip(sharp, 0, 1), atol=1e-5)
  d_f = float(optics.focus_disparity(disparity, jnp.asarray([0.25, 0.5])))
  condition = np.asarray(genfocus.defocus_condition_image(genfocus.defocus_map(disparity, d_f, k)))
  assert 0.0 < condition.max() < 1.0  # the map is neither empty nor saturated
  bokeh = stage(refocuser, "bokeh", [sharp, condition], seed=3, index=1)
  np.testing.assert_allclose(frames[1], np.clip(bokeh, 0, 1), atol=1e-5)
  assert np.abs(frames[1] - frames[0]).mean() > 1e-3  # the bokeh stage did something


def test_blur_is_scaled_to_the_working_size(refocuser):
  """A photo twice the working size asks the bokeh stage for half its K (CoC in working pixels);
  the frame comes back at the photo's size, composed with the renderer's finer band."""
  image, disparity = photo_and_disparity(48, 64, seed=1)
  refocuser.full_resolution = False
  try:
    small = refocuser.refocus(image, [(0.5, 0.5)], [10.0], disparity=disparity)
  finally:
    refocuser.full_resolution = True
  assert small.shape == (1, 48, 64, 3)
  from diffcamera_jax.inference.resize import downscale, upscale
  photo_w = np.clip(downscale(image[None], (24, 32)), 0, 1)[0]
  disp_w = downscale(disparity[None], (24, 32), "nearest")[0]
  sharp = stage(refocuser, "deblur", [photo_w], seed=0)
  d_f = float(optics.focus_disparity(disp_w, jnp.asarray([0.5, 0.5])))
  condition = np.asarray(genfocus.defocus_condition_image(genfocus.defocus_map(disp_w, d_f, 5.0)))
  bokeh = stage(refocuser, "bokeh", [sharp, condition], seed=0)
  np.testing.assert_allclose(small[0], np.clip(upscale(bokeh[None], (48, 64))[0], 0, 1), atol=1e-4)
  composed = refocuser.refocus(image, [(0.5, 0.5)], [10.0], disparity=disparity)
  expected = compose.compose_frames(image[None], disparity[None], np.clip(bokeh, 0, 1)[None],
                                    photo_w[None], np.asarray([[0.5, 0.5]], np.float32),
                                    np.asarray([10.0], np.float32), blades=0, rotation=0.0,
                                    gamma=2.2, budget=refocuser.budget)
  np.testing.assert_allclose(composed, expected, atol=1e-4)


def test_bad_input_is_refused(refocuser, tmp_path):
  image, disparity = photo_and_disparity(24, 32)
  with pytest.raises(ValueError, match="needs a disparity map"):
    refocuser.refocus(image, [(0.5, 0.5)], [4.0])
  with pytest.raises(ValueError, match="round aperture"):
    refocuser.refocus(image, [(0.5, 0.5)], [4.0], disparity=disparity, blades=6)
  with pytest.raises(ValueError, match="NaN|finite"):
    refocuser.refocus(image, [(0.5, 0.5)], [4.0], disparity=np.full_like(disparity, np.nan))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="transformer"):
    GenfocusRefocuser.load(str(empty))
  partial = make_genfocus_dir(str(tmp_path / "partial"))
  os.remove(os.path.join(partial, "bokehNet.safetensors"))
  with pytest.raises(FileNotFoundError, match="bokehNet.safetensors"):
    GenfocusRefocuser.load(partial)


def test_cli_refocuses_and_refuses_in_one_line(directory, tmp_path, capsys):
  image, disparity = photo_and_disparity(24, 32)
  Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "in.png")
  np.save(tmp_path / "d.npy", disparity)
  base = ["--genfocus", directory, "--image", str(tmp_path / "in.png"), "--focus", "0.5,0.5",
          "--steps", str(STEPS), "--max-side", str(SIDE), "--quiet"]
  assert refocus.main(base + ["--depth", str(tmp_path / "d.npy"), "--blur", "0", "--blur", "6",
                              "--out", str(tmp_path / "out.png")]) == 0
  frames = [np.asarray(Image.open(tmp_path / f"out_{i:03d}.png")) for i in range(2)]
  assert frames[0].shape == (24, 32, 3) and np.abs(frames[0] - frames[1].astype(int)).max() > 0
  capsys.readouterr()
  for extra, message in [([], "needs a disparity map"),
                         (["--aperture", "6"], "round aperture"),
                         (["--fold-lora"], "--fold-lora")]:
    assert refocus.main(base + extra + ["--blur", "6", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
  assert refocus.main(base + ["--model", directory, "--blur", "0",
                              "--out", str(tmp_path / "x.png")]) == 2
  assert "not allowed with" in capsys.readouterr().err
  assert not (tmp_path / "x.png").exists()


def test_evaluate_scores_genfocus_rows(directory, tmp_path):
  from diffcamera_jax import evaluate
  out = tmp_path / "eval"
  assert evaluate.main(["--genfocus", directory, "--num-scenes", "1", "--size", "24x32",
                        "--steps", str(STEPS), "--examples", "0", "--quiet", "--out", str(out)]) == 0
  results = json.loads((out / "results.json").read_text())
  summary = results["benchmarks"]["procedural"]["methods"]["Genfocus"]["summary"]
  for task in ("bokeh", "deblur", "refocus"):
    assert np.isfinite(summary[f"{task}/psnr"])
  assert np.isfinite(summary["sweep/lvcorr"])
  assert evaluate.main(["--genfocus", directory, "--no-depth", "--out", str(tmp_path / "x")]) == 2


SHARDED_RUN = """
import sys
import numpy as np
from diffcamera_jax.inference.genfocus_refocuser import GenfocusRefocuser
g = GenfocusRefocuser.load(sys.argv[1], num_steps=int(sys.argv[2]), max_side=int(sys.argv[3]))
spec = g.stage_params["bokeh"]["single_blocks"]["linear1"]["kernel"].sharding.spec
assert "fsdp" in spec, spec
image, disparity = np.load(sys.argv[4]), np.load(sys.argv[5])
np.save(sys.argv[6], g.refocus(image, [(0.3, 0.5)], [0.0, 9.0], disparity=disparity))
"""


def test_base_sharded_over_four_devices_gives_the_same_frames(refocuser, directory, tmp_path):
  import subprocess
  import sys
  image, disparity = photo_and_disparity(24, 32, seed=2)
  np.save(tmp_path / "image.npy", image)
  np.save(tmp_path / "disparity.npy", disparity)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-c", SHARDED_RUN, directory, str(STEPS), str(SIDE),
       str(tmp_path / "image.npy"), str(tmp_path / "disparity.npy"), str(tmp_path / "out.npy")],
      env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  one_device = refocuser.refocus(image, [(0.3, 0.5)], [0.0, 9.0], disparity=disparity)
  np.testing.assert_allclose(np.load(tmp_path / "out.npy"), one_device, atol=1e-5)


def test_a_stage_over_the_memory_budget_is_one_line(directory, tmp_path, capsys):
  image, disparity = photo_and_disparity(24, 32)
  Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "in.png")
  args = ["--genfocus", directory, "--image", str(tmp_path / "in.png"), "--focus", "0.5,0.5",
          "--blur", "0", "--steps", str(STEPS), "--max-side", str(SIDE), "--quiet",
          "--max-memory", "1M", "--out", str(tmp_path / "out.png")]
  assert refocus.main(args) == 2
  err = [line for line in capsys.readouterr().err.splitlines() if ": error:" in line]
  assert len(err) == 1 and "deblur stage at 32x24 needs" in err[0] and "--max-memory" in err[0]
  assert not (tmp_path / "out.png").exists()
