"""FLUX transformer: parity with diffusers on committed fixtures, both checkpoint layouts, scan,
remat, RoPE and input validation."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax import weights
from diffcamera_jax.models import flux

ORIGINAL = "transformer_original.safetensors"
DIFFUSERS = "transformer"  # sharded directory with an index, as diffusers saves it


def _args(io):
  return (io["img"], io["img_ids"], io["txt"], io["txt_ids"], io["timesteps"], io["y"],
          io["guidance"])


def _load(fixtures_dir, file, model, io):
  abstract = jax.eval_shape(model.init, jax.random.key(0), *_args(io))["params"]
  return weights.load_flux_transformer(os.path.join(fixtures_dir, file), abstract)


@pytest.mark.parametrize("scan_layers", [False, True])
@pytest.mark.parametrize("file", [ORIGINAL, DIFFUSERS])
def test_forward_matches_diffusers(fixtures_dir, transformer_config, transformer_io, file,
                                   scan_layers):
  model = flux.FluxTransformer(flux.FluxConfig.from_diffusers(transformer_config),
                               scan_layers=scan_layers)
  params = _load(fixtures_dir, file, model, transformer_io)
  out = jax.jit(model.apply)({"params": params}, *_args(transformer_io))
  ref = transformer_io["output"]
  assert out.shape == ref.shape
  assert np.abs(np.asarray(out) - ref).max() <= 1e-4


@pytest.mark.parametrize("scan_layers", [False, True])
def test_both_layouts_give_identical_params(fixtures_dir, transformer_config, transformer_io,
                                            scan_layers):
  model = flux.FluxTransformer(flux.FluxConfig.from_diffusers(transformer_config),
                               scan_layers=scan_layers)
  a = _load(fixtures_dir, ORIGINAL, model, transformer_io)
  b = _load(fixtures_dir, DIFFUSERS, model, transformer_io)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_remat_does_not_change_the_gradients(fixtures_dir, transformer_config, transformer_io):
  config = flux.FluxConfig.from_diffusers(transformer_config)
  plain = flux.FluxTransformer(config, scan_layers=True)
  params = _load(fixtures_dir, ORIGINAL, plain, transformer_io)
  grad = lambda m: jax.jit(jax.grad(
      lambda p: jnp.sum(m.apply({"params": p}, *_args(transformer_io)) ** 2)))(params)
  reference = grad(plain)
  for remat in ("full", "dots"):
    rematted = grad(flux.FluxTransformer(config, scan_layers=True, remat=remat))
    for x, y in zip(jax.tree.leaves(reference), jax.tree.leaves(rematted)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-4)


def test_rope_is_complex_rotation_and_relative():
  ids = jnp.array([[0, 3, 5], [1, 7, 2]], jnp.float32)
  cos, sin = flux.rope(ids, (4, 6, 6), 10_000.0)
  x = jax.random.normal(jax.random.key(0), (1, 2, 1, 16))
  rotated = flux.apply_rope(x, cos[None], sin[None])
  z = np.asarray(x[..., 0::2]) + 1j * np.asarray(x[..., 1::2])
  expected = z * np.exp(1j * np.arctan2(np.asarray(sin), np.asarray(cos)))[None, :, None]
  np.testing.assert_allclose(np.asarray(rotated[..., 0::2]), expected.real, atol=1e-5)
  np.testing.assert_allclose(np.asarray(rotated[..., 1::2]), expected.imag, atol=1e-5)
  # q.k after RoPE depends only on the offset between positions.
  q, k = jax.random.normal(jax.random.key(1), (2, 16))
  def score(pq, pk):
    c, s = flux.rope(jnp.array([pq, pk], jnp.float32), (4, 6, 6), 10_000.0)
    r = flux.apply_rope(jnp.stack([q, k])[None, :, None], c[None], s[None])[0, :, 0]
    return float(r[0] @ r[1])
  assert score([0, 2, 3], [1, 5, 1]) == pytest.approx(score([2, 4, 9], [3, 7, 7]), rel=1e-4)
  assert score([0, 2, 3], [1, 5, 1]) != pytest.approx(score([0, 2, 3], [1, 6, 1]), rel=1e-3)


def test_extra_tokens_join_attention_but_not_the_output():
  config = flux.FLUX_PRESETS["tiny"]
  model = flux.FluxTransformer(config)
  img, ids = jnp.ones((1, 4, 64)), jnp.zeros((4, 3))
  txt, txt_ids = jnp.ones((1, 2, 32)), jnp.zeros((2, 3))
  args = (img, ids, txt, txt_ids, jnp.array([0.5]), jnp.ones((1, 16)), jnp.ones(1))
  params = jax.jit(model.init)(jax.random.key(0), *args)["params"]
  extra = jax.random.normal(jax.random.key(1), (1, 3, config.hidden_size))
  apply = jax.jit(model.apply)
  out = apply({"params": params}, *args, extra=extra, extra_ids=jnp.ones((3, 3)))
  base = apply({"params": params}, *args)
  assert out.shape == base.shape == (1, 4, 64)
  assert not np.allclose(out, base)


def test_bad_inputs_are_named():
  model = flux.FluxTransformer(flux.FLUX_PRESETS["tiny"])
  good = (jnp.ones((1, 4, 64)), jnp.zeros((4, 3)), jnp.ones((1, 2, 32)), jnp.zeros((2, 3)),
          jnp.array([0.5]), jnp.ones((1, 16)))
  with pytest.raises(ValueError, match="guidance"):
    model.init(jax.random.key(0), *good)
  with pytest.raises(ValueError, match="img channels 3"):
    model.init(jax.random.key(0), jnp.ones((1, 4, 3)), *good[1:], jnp.ones(1))
  with pytest.raises(ValueError, match="axes_dim"):
    flux.FluxConfig(hidden_size=64, num_heads=2, axes_dim=(8, 8, 8))
  with pytest.raises(ValueError, match="LoRA target 'attention'"):
    flux.lora_targets(["attention"])


def test_lora_target_groups_resolve_to_layers():
  assert flux.lora_targets(["attn"]) == ("qkv", "proj", "linear1", "linear2")
  assert set(flux.lora_targets(["attn", "mlp", "img_in"])) == {
      "qkv", "proj", "linear1", "linear2", "fc1", "fc2", "img_in"}


def test_chunked_attention_matches_full_attention_and_its_gradient():
  k = jax.random.split(jax.random.key(4), 3)
  q, kk, v = (jax.random.normal(r, (2, 11, 2, 16)) for r in k)
  cos, sin = flux.rope(jnp.stack([jnp.zeros(11), jnp.arange(11.0), jnp.ones(11)], -1),
                       (4, 6, 6), 10_000.0)
  full = lambda q: flux.attention(q, kk, v, cos, sin)
  chunked = lambda q: flux.attention(q, kk, v, cos, sin, chunk=4)
  np.testing.assert_allclose(np.asarray(chunked(q)), np.asarray(full(q)), atol=1e-5)
  g_full = jax.grad(lambda q: jnp.sum(jnp.sin(full(q))))(q)
  g_chunk = jax.grad(lambda q: jnp.sum(jnp.sin(chunked(q))))(q)
  np.testing.assert_allclose(np.asarray(g_chunk), np.asarray(g_full), atol=1e-5)
