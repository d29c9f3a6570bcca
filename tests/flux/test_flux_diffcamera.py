"""DiffCamera on FLUX: the model contract, sharded init from a checkpoint, and LoRA training that
leaves the base untouched."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffcamera_jax.testing.lora_training import value_and_grad_trainable
from diffcamera_jax.configs import flux_lora
from diffcamera_jax.models import flux, lora
from diffcamera_jax.models import flux_diffcamera as fd
from diffcamera_jax.sharding import make_mesh
from diffcamera_jax.objective.example import Example
from diffcamera_jax.objective.objective import Objective
from diffcamera_jax.weights import flux_layout, safetensors_io


def _inputs(b=2, h=4, w=6, factor=8):
  k = jax.random.split(jax.random.key(3), 4)
  return (jax.random.normal(k[0], (b, h, w, 16)), jnp.linspace(0.2, 0.8, b),
          jax.random.normal(k[1], (b, h, w, 16)),
          jax.random.uniform(k[2], (b, h * factor, w * factor)),
          jax.random.uniform(k[3], (b, 6)), jnp.ones((b,), bool))


@pytest.fixture(scope="module")
def model_and_params():
  model = fd.FluxDiffCamera(flux.FLUX_PRESETS["tiny"], text_len=3)
  params = jax.jit(model.init)(jax.random.key(0), *_inputs())["params"]
  return model, nn.unbox(params)


def test_depth_dropout_camera_and_shapes(model_and_params):
  model, params = model_and_params
  apply = jax.jit(model.apply)
  x_t, t, ref, disp, cam, keep = _inputs()
  out = apply({"params": params}, x_t, t, ref, disp, cam, keep)
  assert out.shape == x_t.shape and out.dtype == jnp.float32
  dropped = apply({"params": params}, x_t, t, ref, disp, cam, ~keep)
  no_depth = apply({"params": params}, x_t, t, ref, None, cam, keep)
  np.testing.assert_allclose(np.asarray(dropped), np.asarray(no_depth), atol=1e-6)
  assert not np.allclose(out, dropped, atol=1e-4)
  other_camera = apply({"params": params}, x_t, t, ref, disp, cam + 0.5, keep)
  assert not np.allclose(out, other_camera, atol=1e-4)


def test_bad_inputs_are_named(model_and_params):
  model, params = model_and_params
  x_t, t, ref, disp, cam, keep = _inputs()
  with pytest.raises(ValueError, match="reference"):
    model.apply({"params": params}, x_t, t, ref[:, :2], disp, cam, keep)
  with pytest.raises(ValueError, match="disparity must be"):
    model.apply({"params": params}, x_t, t, ref, disp[:, :, :40], cam, keep)
  with pytest.raises(ValueError, match="h, w even"):
    model.apply({"params": params}, x_t[:, :3], t, ref[:, :3], None, cam, keep)


def test_pack_unpack_match_flux_channel_order():
  z = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  tokens = fd.pack_latents(z)
  # FLUX packs NCHW latents as view(B, C, h/2, 2, w/2, 2).permute(0, 2, 4, 1, 3, 5).
  nchw = np.asarray(z).transpose(0, 3, 1, 2)
  expected = nchw.reshape(2, 3, 2, 2, 3, 2).transpose(0, 2, 4, 1, 3, 5).reshape(2, 6, 12)
  np.testing.assert_array_equal(np.asarray(tokens), expected)
  np.testing.assert_array_equal(np.asarray(fd.unpack_latents(tokens, 4, 6)), np.asarray(z))
  ids = fd.image_ids(4, 6, index=1)
  np.testing.assert_array_equal(np.asarray(ids[4]), [1, 1, 1])


def _write_original_checkpoint(path, flux_params):
  paths = lora.flatten_paths(flux_params)
  leaves = dict(zip(paths, jax.tree.leaves(flux_params)))
  recipes = flux_layout.flux_recipes(paths, flux_layout.ORIGINAL)
  tensors = {}
  for p, recipe in recipes.items():
    value = np.asarray(leaves[p])
    tensors[recipe.layers[0].names[0]] = value.T if recipe.layers[0].transform == "linear" else value
  safetensors_io.save_file(path, tensors)


@pytest.mark.slow
def test_init_loads_the_base_and_text_and_initialises_adapters(tmp_path):
  config = flux_lora.get_config("tiny")
  model, codec = fd.build_flux_model(config)
  base = flux.FluxTransformer(model.config)
  x_t, t, ref, disp, cam, keep = _inputs(1)
  base_params = nn.unbox(jax.jit(base.init)(jax.random.key(5), fd.pack_latents(x_t), fd.image_ids(4, 6),
                                   jnp.zeros((1, 8, 32)), jnp.zeros((8, 3)), t, jnp.zeros((1, 16)),
                                   jnp.ones(1))["params"])
  _write_original_checkpoint(str(tmp_path / "flux.safetensors"), base_params)
  txt = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
  np.savez(tmp_path / "prompt.npz", txt=txt[None], y=np.ones((1, 16), np.float32))
  config.flux.transformer_weights = str(tmp_path / "flux.safetensors")
  config.flux.text_embeddings = str(tmp_path / "prompt.npz")

  params, shardings = fd.init_flux_params(model, codec, config, make_mesh(config),
                                          jax.random.key(0))
  assert jax.tree.structure(params) == jax.tree.structure(shardings)
  loaded = lora.drop_paths(params["flux"], [p for p in lora.flatten_paths(params["flux"])
                                            if p[-1] in lora.LORA_LEAVES])
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(base_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.any(params["flux"]["double_blocks_0"]["img_attn"]["qkv"]["lora_b"])
  np.testing.assert_array_equal(params["text_tokens"], txt)
  np.testing.assert_array_equal(params["text_pooled"], np.ones(16))


def _device_batch(b, hw, rng):
  k = iter(jax.random.split(rng, 12))
  image = lambda: jax.random.uniform(next(k), (b, *hw, 3))
  focus = lambda: jax.random.uniform(next(k), (b, 2))
  return Example(
      image=image(), reference=image(), target=image(), target_2=image(), multifocus=image(),
      stack_mask=(jax.random.uniform(next(k), (b, *hw)) > 0.5).astype(jnp.float32),
      disparity=jax.random.uniform(next(k), (b, *hw)), source_focus=focus(),
      target_focus=focus(), target_focus_2=focus(), source_blur=jnp.zeros((b,)),
      target_blur=jnp.full((b,), 4.0), aperture_blades=jnp.zeros((b,), jnp.int32),
      aperture_rotation=jnp.zeros((b,)), target_focus_disparity=jnp.zeros((b,)),
      target_focus_disparity_2=jnp.zeros((b,)))


@pytest.mark.slow
def test_lora_training_changes_only_adapters_and_condition_layers():
  config = flux_lora.get_config("tiny")
  config.objective.p_depth_drop = 0.0
  model, codec = fd.build_flux_model(config)
  params, _ = fd.init_flux_params(model, codec, config, make_mesh(config), jax.random.key(0))
  mask = lora.trainable_mask(params, fd.CONDITION_MODULES)
  tx = optax.adam(1e-2)
  opt_state = tx.init(lora.split_params(params, mask)[0])

  @jax.jit
  def step(params, opt_state, batch, rng):
    loss_fn = lambda p: Objective.from_config(config).losses(model.apply, p, codec, batch, rng,
                                                             model.patch_size)
    (loss, _), grads = value_and_grad_trainable(loss_fn, params, mask, has_aux=True)
    trainable, frozen = lora.split_params(params, mask)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return lora.merge_params(optax.apply_updates(trainable, updates), frozen), opt_state, loss

  new = params
  for i in range(3):
    batch = _device_batch(2, tuple(config.data.image_size), jax.random.key(10 + i))
    new, opt_state, loss = step(new, opt_state, batch, jax.random.key(i))
    assert np.isfinite(loss)
  flat_mask = dict(zip(lora.flatten_paths(mask), jax.tree.leaves(mask)))
  changed = {}
  for path, old, cur in zip(lora.flatten_paths(params), jax.tree.leaves(params),
                            jax.tree.leaves(new)):
    changed[path] = not np.array_equal(np.asarray(old), np.asarray(cur))
    if not flat_mask[path]:
      assert not changed[path], f"frozen leaf {'/'.join(path)} changed"
  assert changed[("flux", "double_blocks_0", "img_attn", "qkv", "lora_b")]
  assert changed[("flux", "single_blocks_0", "linear2", "lora_b")]
  assert changed[("camera_in", "proj", "kernel")] and changed[("depth_in", "kernel")]


def test_text_embedding_files(tmp_path):
  np.save(tmp_path / "t5.npy", np.ones((5, 32), np.float32))
  text = fd.load_text_embeddings(str(tmp_path / "t5.npy"), 32, 16)
  assert text["text_tokens"].shape == (5, 32) and not text["text_pooled"].any()
  safetensors_io.save_file(str(tmp_path / "p.safetensors"),
                           {"txt": np.ones((1, 4, 32), np.float32), "y": np.ones(16, np.float32)})
  text = fd.load_text_embeddings(str(tmp_path / "p.safetensors"), 32, 16)
  assert text["text_tokens"].shape == (4, 32) and text["text_pooled"].sum() == 16
  with pytest.raises(ValueError, match=r"'txt' must be \[Lt, 64\]"):
    fd.load_text_embeddings(str(tmp_path / "t5.npy"), 64, 16)
  with pytest.raises(ValueError, match="'y' must have 8 values"):
    fd.load_text_embeddings(str(tmp_path / "p.safetensors"), 32, 8)
  with pytest.raises(FileNotFoundError, match="config.flux.text_embeddings"):
    fd.load_text_embeddings(str(tmp_path / "none.npz"), 32, 16)
