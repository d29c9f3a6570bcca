"""Genfocus on our FLUX.1 transformer: its LoRA files, condition tokens, forward, sampler and
tiling against the reference pipeline (fixtures from tools/make_genfocus_fixtures.py, read with
numpy only), the defocus map, and the loader's errors."""
import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax import weights
from diffcamera_jax.models import autoencoder as ae
from diffcamera_jax.models import flux, genfocus, genfocus_sampling, genfocus_transformer, lora
from diffcamera_jax.models.flux_diffcamera import load_text_embeddings
from diffcamera_jax.weights import safetensors_io as sio

HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "..", "fixtures", "genfocus")
VAE = os.path.join(HERE, "..", "fixtures", "flux", "vae")
SIZES = ((32, 32), (64, 64), (40, 56))
SAMPLED = (40, 56)
SAMPLED_LATENT = (SAMPLED[0] // 4, SAMPLED[1] // 4)  # the fixture VAE downsamples 4x
TOL = 1e-4  # max |ours - reference| / max |reference|, float32
# Each program here runs once on tiny shapes, so compiling dominates: skip LLVM's optimisations.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def read_all(path: str) -> dict[str, np.ndarray]:
  f = sio.SafetensorsCheckpoint(path)
  return {n: np.array(f.read(n)) for n in f.names()}


def case(stage: str, hw: tuple[int, int]) -> dict[str, np.ndarray]:
  return read_all(os.path.join(FIXTURES, f"{stage}_{hw[0]}x{hw[1]}.safetensors"))


def rel_err(ours, ref) -> float:
  ref = np.asarray(ref, np.float32)
  return float(np.abs(np.asarray(ours, np.float32) - ref).max() / np.abs(ref).max())


def lora_path(stage: str) -> str:
  return os.path.join(FIXTURES, genfocus.STAGES[stage].lora_file)


@pytest.fixture(scope="module")
def config() -> flux.FluxConfig:
  with open(os.path.join(FIXTURES, "transformer", "config.json")) as f:
    return flux.FluxConfig.from_diffusers(json.load(f))


def _abstract(config, scan_layers=False):
  model = flux.FluxTransformer(config, scan_layers=scan_layers)
  args = (np.zeros((1, 4, 64)), np.zeros((4, 3)), np.zeros((1, 2, 24)), np.zeros((2, 3)),
          np.zeros(1), np.zeros((1, 12)), np.zeros(1))
  return jax.eval_shape(model.init, jax.random.key(0), *args)["params"]


@pytest.fixture(scope="module")
def abstract(config):
  return _abstract(config)


@pytest.fixture(scope="module")
def base(abstract):
  return weights.load_flux_transformer(os.path.join(FIXTURES, "transformer"), abstract)


@pytest.fixture(scope="module")
def stage_params(base, abstract):
  return {s: lora.merge_params(base, weights.load_genfocus_lora(lora_path(s), abstract))
          for s in genfocus.STAGES}


@pytest.fixture(scope="module")
def texts(config):
  return {s: load_text_embeddings(os.path.join(FIXTURES, f"{s}_prompt.safetensors"),
                                  config.context_in_dim, config.vec_in_dim)
          for s in genfocus.STAGES}


@functools.cache
def _velocity_fn(config):
  def fn(params, img, img_ids, conds, cond_ids, txt, y, t, g):
    txt_ids = jnp.zeros((txt.shape[1], 3), jnp.float32)
    return genfocus_transformer.velocity(params, config, img, img_ids, conds, cond_ids, txt, txt_ids, y, t, g)
  return jit(fn)


def _args(stage, io, text):
  n = genfocus.STAGES[stage].num_conditions
  return (io["noise"], io["img_ids"], [io[f"cond{i}_tokens"] for i in range(n)],
          [io[f"cond{i}_ids"] for i in range(n)], text["text_tokens"][None],
          text["text_pooled"][None], io["t"], io["guidance"])


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("stage", list(genfocus.STAGES))
def test_velocity_matches_reference(config, stage_params, texts, stage, hw):
  io = case(stage, hw)
  ours = _velocity_fn(config)(stage_params[stage], *_args(stage, io, texts[stage]))
  assert ours.shape == io["velocity"].shape
  assert rel_err(ours, io["velocity"]) <= TOL


def test_adapters_change_the_velocity(config, stage_params, texts):
  """With the up-matrices zeroed the reference is far away: the parity above is not vacuous."""
  io = case("bokeh", SAMPLED)
  zeroed = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.zeros_like(x) if p[-1].key == "lora_b" else x, stage_params["bokeh"])
  out = _velocity_fn(config)(zeroed, *_args("bokeh", io, texts["bokeh"]))
  assert rel_err(out, io["velocity"]) > 1e-2


def test_scanned_params_give_the_same_velocity(config, texts):
  abstract = _abstract(config, scan_layers=True)
  params = lora.merge_params(
      weights.load_flux_transformer(os.path.join(FIXTURES, "transformer"), abstract),
      weights.load_genfocus_lora(lora_path("bokeh"), abstract))
  assert params["single_blocks"]["linear1"]["lora_b"].shape == (2, 4 * 2, 3 * 32 + 128)
  io = case("bokeh", SAMPLED)
  assert rel_err(_velocity_fn(config)(params, *_args("bokeh", io, texts["bokeh"])),
                 io["velocity"]) <= TOL


@pytest.fixture(scope="module")
def vae_and_params():
  with open(os.path.join(VAE, "config.json")) as f:
    vae = ae.AutoencoderKL(ae.AutoencoderConfig.from_diffusers(json.load(f)))
  return vae, weights.load_autoencoder(
      VAE, jax.eval_shape(vae.init, jax.random.key(0), np.zeros((1, 8, 8, 3)))["params"])


@pytest.mark.parametrize("stage", list(genfocus.STAGES))
def test_conditions_and_sampler_match_reference(config, stage_params, texts, vae_and_params,
                                                 stage):
  """Condition tokens from the pixels (the VAE posterior draws given), then three sampling
  steps from the pixels."""
  io = case(stage, SAMPLED)
  vae, vae_params = vae_and_params
  images = [io["photo"][None] / np.float32(255.0)]
  if stage == "bokeh":
    images.append(genfocus.defocus_condition_image(io["defocus"])[None])
  encode = jit(lambda images, eps: [
      genfocus.encode_condition(vae, vae_params, im, normalize=(i == 0), noise=e)
      for i, (im, e) in enumerate(zip(images, eps))])
  conds = encode(images, [io[f"cond{i}_eps"] for i in range(len(images))])
  for i, tokens in enumerate(conds):
    assert rel_err(tokens, io[f"cond{i}_tokens"]) <= TOL
    np.testing.assert_array_equal(np.asarray(genfocus.condition_ids(*SAMPLED_LATENT)),
                                  io[f"cond{i}_ids"])
  run = jit(lambda p, images, noise, eps: genfocus.stage_latents(
      stage, p, config, vae, vae_params, texts[stage], images, noise, condition_noise=eps,
      num_steps=int(io["sample_steps"])))
  latents = run(stage_params[stage], images, io["noise"],
                [io[f"cond{i}_eps"] for i in range(len(images))])
  assert rel_err(latents, io["sampled"]) <= TOL


def test_tiled_velocity_matches_reference(config, stage_params, texts):
  io = read_all(os.path.join(FIXTURES, "tiled.safetensors"))
  text = texts["deblur"]
  txt, y = text["text_tokens"][None], text["text_pooled"][None]

  @jit
  def tiled(params, noise, cond):
    fn = lambda img, conds, ids: genfocus_transformer.velocity(
        params, config, img, ids, conds, [ids] * len(conds), txt, jnp.zeros((txt.shape[1], 3)),
        y, io["t"], io["guidance"])
    return genfocus_sampling.tiled_velocity(fn, noise, [cond], (32, 36))

  ours = tiled(stage_params["deblur"], io["noise"].astype(np.float32),
               io["cond0_tokens"].astype(np.float32))
  assert rel_err(ours, io["velocity"]) <= TOL


def test_schedule_and_tiles_match_reference():
  ref = read_all(os.path.join(FIXTURES, "schedules.safetensors"))
  for steps, tokens in ((28, 16), (28, 4096), (8, 1152)):
    sigmas, t = genfocus_sampling.sigma_schedule(steps, tokens)
    np.testing.assert_allclose(sigmas, ref[f"sigmas_{steps}_{tokens}"], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(t, ref[f"timesteps_{steps}_{tokens}"] / np.float32(1000))
  with open(os.path.join(FIXTURES, "tiles.json")) as f:
    tiles = json.load(f)
  for grid, origins in tiles.items():
    gh, gw = map(int, grid.split("x"))
    assert genfocus_sampling.tile_origins(gh, gw) == [tuple(o) for o in origins]
  w = genfocus_sampling.tile_weights(4).reshape(4, 4)
  np.testing.assert_allclose(w, w.T)
  np.testing.assert_allclose(w[0, 0], np.exp(-8.0), rtol=1e-6)
  assert genfocus_sampling.use_tiling((512, 576)) and not genfocus_sampling.use_tiling((496, 2048))


# ----------------------------------------------------------------------------- defocus map


def test_defocus_map_is_the_direct_formula():
  io = case("bokeh", SAMPLED)
  depth = io["depth"]
  disparity = genfocus.disparity_from_depth(depth)
  np.testing.assert_array_equal(disparity, io["disparity"])
  assert disparity[0, 0] < 1e-30  # invalid (zero) depth: infinitely far
  focus = genfocus.focus_disparity(disparity)  # default: the centre pixel
  assert focus == float(disparity[20, 28]) == float(io["focus"])
  k = float(io["k"])
  direct = np.clip(np.abs(k * (disparity - focus)) / 100.0, 0.0, 1.0)
  ours = np.asarray(genfocus.defocus_map(disparity, focus, k))
  np.testing.assert_allclose(ours, direct, rtol=0, atol=1e-7)
  np.testing.assert_allclose(ours, io["defocus"], rtol=0, atol=1e-7)
  assert ours[20, 28] == 0.0 and ours.max() <= 1.0
  assert genfocus.focus_disparity(disparity, point=(3, 5)) == float(disparity[5, 3])
  assert genfocus.focus_disparity(disparity, point=(999, -4)) == float(disparity[0, 55])
  mask = np.zeros_like(disparity)
  mask[10:14, 30:40] = 1
  assert genfocus.focus_disparity(disparity, mask=mask) == float(np.median(disparity[10:14, 30:40]))
  assert genfocus.focus_disparity(disparity, mask=0 * mask) == float(np.median(disparity))
  image = np.asarray(genfocus.defocus_condition_image(ours))
  assert image.shape == (40, 56, 3) and np.array_equal(image[..., 2], ours)


# ----------------------------------------------------------------------------- loading


def test_fused_adapters_are_the_separate_updates(abstract):
  """`x a b` of a fused layer equals the per-projection LoRA updates, concatenated."""
  adapters = weights.load_genfocus_lora(lora_path("deblur"), abstract)
  f = read_all(lora_path("deblur"))
  x = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
  layer = adapters["single_blocks_1"]["linear1"]
  parts = [f"transformer.single_transformer_blocks.1.{m}" for m in
           ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")]
  expected = np.concatenate([x @ f[p + ".lora_A.weight"].T @ f[p + ".lora_B.weight"].T
                             for p in parts], axis=-1)
  ours = x @ np.asarray(layer["lora_a"]) @ np.asarray(layer["lora_b"])
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
  assert layer["lora_a"].shape == (32, 16) and layer["lora_b"].shape == (16, 3 * 32 + 128)
  a = adapters["double_blocks_0"]["img_mlp"]["fc2"]["lora_a"]
  np.testing.assert_array_equal(np.asarray(a),
                                f["transformer.transformer_blocks.0.ff.net.2.lora_A.weight"].T)
  assert len(lora.flatten_paths(adapters)) == 2 * (1 + 2 * 4 + 2 * 3)


def test_other_name_forms_load_the_same_adapters(tmp_path, abstract):
  f = read_all(lora_path("bokeh"))
  reference = weights.load_genfocus_lora(lora_path("bokeh"), abstract)
  with_adapter = lambda n: n.replace(".lora_A.", ".lora_A.bokeh.").replace(".lora_B.",
                                                                          ".lora_B.bokeh.")
  for name, rename in (("peft", lambda n: "base_model.model." + n[len("transformer."):]),
                       ("adapter", with_adapter)):
    path = str(tmp_path / f"{name}.safetensors")
    sio.save_file(path, {rename(n): v for n, v in f.items()})
    jax.tree.map(np.testing.assert_array_equal, weights.load_genfocus_lora(path, abstract),
                 reference)


def test_missing_tensors_are_named_with_the_file(tmp_path, abstract):
  f = read_all(lora_path("deblur"))
  gone = ["transformer.transformer_blocks.1.attn.to_k.lora_B.weight",
          "transformer.single_transformer_blocks.0.proj_out.lora_A.weight"]
  path = str(tmp_path / "deblurNet.safetensors")
  sio.save_file(path, {n: v for n, v in f.items() if n not in gone})
  with pytest.raises(ValueError) as err:
    weights.load_genfocus_lora(path, abstract)
  message = str(err.value)
  assert path in message and "missing tensor(s)" in message
  assert all(name in message for name in gone)


def test_unexpected_and_misshapen_tensors_are_named(tmp_path, abstract):
  f = read_all(lora_path("deblur"))
  f["transformer.transformer_blocks.0.ff.net.0.proj.lora_A.weight"] = np.zeros((4, 32), np.float32)
  f["transformer.x_embedder.lora_A.weight"] = np.zeros((4, 48), np.float32)
  path = str(tmp_path / "odd.safetensors")
  sio.save_file(path, f)
  with pytest.raises(ValueError) as err:
    weights.load_genfocus_lora(path, abstract)
  message = str(err.value)
  assert path in message
  assert "unexpected tensor(s)" in message and "ff.net.0.proj.lora_A.weight" in message
  assert "wrong shape for params leaf img_in/lora_a" in message and "(48, 4)" in message


def test_truncated_file_is_named(tmp_path, abstract):
  path = str(tmp_path / "bokehNet.safetensors")
  shutil.copy(lora_path("bokeh"), path)
  with open(path, "r+b") as fh:
    fh.truncate(int(os.path.getsize(path) * 0.6))
  with pytest.raises(ValueError) as err:
    weights.load_genfocus_lora(path, abstract)
  message = str(err.value)
  assert path in message and "truncated" in message and ".lora_" in message


def test_foreign_and_absent_files_are_named(tmp_path, abstract):
  base_file = os.path.join(FIXTURES, "transformer", "diffusion_pytorch_model.safetensors")
  with pytest.raises(ValueError, match="not a FLUX LoRA") as err:
    weights.load_genfocus_lora(base_file, abstract)
  assert base_file in str(err.value) and "context_embedder.weight" in str(err.value)
  unet = str(tmp_path / "unet_lora.safetensors")
  sio.save_file(unet, {"unet.down_blocks.0.attentions.0.to_q.lora_A.weight": np.zeros((2, 8))})
  with pytest.raises(ValueError, match="not for a diffusers FLUX transformer") as err:
    weights.load_genfocus_lora(unet, abstract)
  assert unet in str(err.value) and "down_blocks.0" in str(err.value)
  absent = str(tmp_path / "deblurNet.safetensors")
  with pytest.raises(FileNotFoundError, match="deblurNet.safetensors"):
    weights.load_genfocus_lora(absent, abstract)
