"""LoRA: exact no-op at init, folding, optimiser masking, gradients of the trainable part only,
LoRA-only files."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffcamera_jax.testing.lora_training import masked_optimizer, value_and_grad_trainable
from diffcamera_jax.models import flux, lora

TARGETS = flux.lora_targets(("attn", "mlp"))


def _inputs():
  k = jax.random.split(jax.random.key(7), 3)
  return (jax.random.normal(k[0], (2, 6, 64)), jnp.zeros((6, 3)).at[:, 2].set(jnp.arange(6.0)),
          jax.random.normal(k[1], (2, 3, 32)), jnp.zeros((3, 3)), jnp.array([0.3, 0.8]),
          jax.random.normal(k[2], (2, 16)), jnp.array([1.0, 2.0]))


@pytest.fixture(scope="module")
def models_and_params():
  config = flux.FLUX_PRESETS["tiny"]
  base = flux.FluxTransformer(config)
  adapted = flux.FluxTransformer(config, lora=lora.LoRAConfig(rank=4, alpha=8.0, targets=TARGETS))
  params = nn.unbox(jax.jit(adapted.init)(jax.random.key(0), *_inputs())["params"])
  return base, adapted, params


def _base_only(params):
  return lora.drop_paths(params, [p for p in lora.flatten_paths(params) if p[-1] in lora.LORA_LEAVES])


def test_adapters_are_an_exact_no_op_at_init(models_and_params):
  base, adapted, params = models_and_params
  leaves = lora.flatten_paths(params)
  assert {p[-2] for p in leaves if p[-1] == "lora_a"} == set(TARGETS)
  # Op by op, every kernel sees bit-identical inputs: the zero B adds exactly 0.0.
  out_adapted = adapted.apply({"params": params}, *_inputs())
  out_base = base.apply({"params": _base_only(params)}, *_inputs())
  np.testing.assert_array_equal(np.asarray(out_adapted), np.asarray(out_base))
  # Compiled, the two programs may fuse differently: equal up to f32 rounding.
  np.testing.assert_allclose(np.asarray(jax.jit(adapted.apply)({"params": params}, *_inputs())),
                             np.asarray(out_base), rtol=1e-5, atol=1e-5)


def test_trained_adapters_fold_into_the_base(models_and_params):
  base, adapted, params = models_and_params
  rng = iter(jax.random.split(jax.random.key(1), 100))
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: 0.05 * jax.random.normal(next(rng), x.shape) if p[-1].key == "lora_b" else x,
      params)
  out_adapted = jax.jit(adapted.apply)({"params": params}, *_inputs())
  folded = lora.fold_lora(params, adapted.lora)
  out_folded = jax.jit(base.apply)({"params": folded}, *_inputs())
  out_base = jax.jit(base.apply)({"params": _base_only(params)}, *_inputs())
  assert np.abs(np.asarray(out_adapted) - np.asarray(out_base)).max() > 1e-2
  np.testing.assert_allclose(np.asarray(out_folded), np.asarray(out_adapted), atol=1e-4)


def test_masked_optimizer_updates_only_trainable_leaves(models_and_params):
  _, _, params = models_and_params
  mask = lora.trainable_mask(params, trainable_modules=("final_layer",))
  tx = masked_optimizer(optax.adam(1e-2), mask)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  flat_mask = dict(zip(lora.flatten_paths(mask), jax.tree.leaves(mask)))
  for path, old, cur in zip(lora.flatten_paths(params), jax.tree.leaves(params),
                            jax.tree.leaves(new)):
    assert (not np.array_equal(old, cur)) == flat_mask[path], path
  trainable = sum(int(m) for m in jax.tree.leaves(mask))
  moments = [x for x in jax.tree.leaves(state) if np.ndim(x) > 0]
  assert len(moments) == 2 * trainable  # Adam's mu and nu for trainable leaves only


def test_gradients_of_the_trainable_part_equal_the_full_gradient(models_and_params):
  _, adapted, params = models_and_params
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.01 if p[-1].key == "lora_b" else x, params)
  loss = lambda p: jnp.mean(adapted.apply({"params": p}, *_inputs()) ** 2)
  mask = lora.trainable_mask(params)
  value, grads = jax.jit(lambda p: value_and_grad_trainable(loss, p, mask))(params)
  full_value, full = jax.jit(jax.value_and_grad(loss))(params)
  trainable, _ = lora.split_params(full, mask)
  assert set(lora.flatten_paths(grads)) == set(lora.flatten_paths(trainable))
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(trainable)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)
  assert np.isclose(value, full_value)


def test_lora_file_round_trip_and_errors(tmp_path, models_and_params):
  _, adapted, params = models_and_params
  trained = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 1.0 if p[-1].key in lora.LORA_LEAVES else x, params)
  path = str(tmp_path / "adapter.safetensors")
  lora.save_lora(path, trained, adapted.lora)
  assert lora.read_lora_config(path) == adapted.lora
  restored = lora.load_lora(path, params)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(trained)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  smaller = jax.jit(flux.FluxTransformer(
      flux.FLUX_PRESETS["tiny"], lora=lora.LoRAConfig(rank=2, targets=TARGETS)).init)(
          jax.random.key(0), *_inputs())["params"]
  with pytest.raises(ValueError, match="wrong shape for 'double_blocks_0/img_attn/qkv/lora_a'"):
    lora.load_lora(path, smaller)


def test_config_validation():
  with pytest.raises(ValueError, match="rank must be >= 0"):
    lora.LoRAConfig(rank=-1)
  with pytest.raises(ValueError, match="targets is empty"):
    lora.LoRAConfig(rank=4)
  assert lora.LoRAConfig(rank=8, alpha=16.0, targets=("qkv",)).scale == 2.0
