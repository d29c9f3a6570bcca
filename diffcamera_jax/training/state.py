"""Training state (step, params, EMA params, optimizer state) and the optimizer from the config.

The state is created sharded from the start (big_vision / Flax style): `jax.eval_shape` of the
initialiser gives the logically annotated abstract params, the mesh rules turn them into
shardings, and `jax.jit(init, out_shardings=...)` materialises every array where it belongs.

FLUX + LoRA (`config.model.name="flux"`): `TrainState.params` holds only the trainable part (the
LoRA adapters and the condition layers, `lora.trainable_mask`), so the optimizer state, the EMA and
every checkpoint cover that part only. The frozen base (the transformer in `param_dtype`, bf16 on
accelerators, and the text embeddings) lives outside the state: `frozen_base(...)` loads it once,
sharded, and the train step takes it as a separate, non-donated argument;
`full_params(params, frozen)` is the complete tree the model's `apply` takes.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from jax.sharding import Mesh

from diffcamera_jax.models import example_inputs
from diffcamera_jax.models import lora
from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.sharding import logical_rules, logical_shardings, replicated


@struct.dataclass
class TrainState:
  """Everything a training step updates; a plain pytree (checkpointable as is)."""
  step: jnp.ndarray
  params: Any
  ema_params: Any
  opt_state: Any


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Learning rate at optimizer step `count` (0-based): linear warmup reaching
  `config.optim.learning_rate` after `warmup_steps` updates (the first update already uses
  `lr / warmup_steps`), then a cosine decay to `end_lr_fraction * lr` at `config.train.num_steps`.
  """
  o = config.optim
  lr, warmup, total = float(o.learning_rate), int(o.warmup_steps), int(config.train.num_steps)
  if lr <= 0 or warmup < 0 or total <= 0 or not 0.0 <= o.end_lr_fraction <= 1.0:
    raise ValueError("config.optim.learning_rate and config.train.num_steps must be positive, "
                     "config.optim.warmup_steps >= 0 and end_lr_fraction in [0, 1]; got "
                     f"{lr}, {total}, {warmup}, {o.end_lr_fraction}")
  end = float(o.end_lr_fraction)

  def schedule(count):
    step = jnp.asarray(count, jnp.float32)
    warm = lr * jnp.minimum(1.0, (step + 1.0) / max(warmup, 1))
    progress = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
    cosine = lr * (end + (1.0 - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
    return jnp.where(step < warmup, warm, cosine)

  return schedule


def _decay_mask(params: Any) -> Any:
  """Weight decay on matrices only (not on biases, norm scales or embedding vectors)."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def _restorer_mask(params: Any) -> Any:
  """True on the restoration stage's parameters (the DiT's `restorer` subtree)."""
  return {k: jax.tree.map(lambda _, k=k: k == "restorer", v) for k, v in params.items()}


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW on the warmup + cosine schedule; the restoration stage's
  updates scaled by `optim.restorer_lr_scale` (a small conv net takes a larger rate than the
  transformer)."""
  o = config.optim
  return optax.chain(
      optax.clip_by_global_norm(o.grad_clip_norm),
      optax.adamw(make_schedule(config), b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                  mask=_decay_mask),
      optax.masked(optax.scale(float(o.get("restorer_lr_scale", 1.0))), _restorer_mask))


def update_ema(ema_params: Any, params: Any, decay: float, step: jnp.ndarray) -> Any:
  """EMA with warmup: the decay is `min(decay, (1 + step) / (10 + step))`, so early averages do
  not remember the random initialisation."""
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step)).astype(jnp.float32)
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema_params, params)


def _is_flux(config: ml_collections.ConfigDict) -> bool:
  return config.model.name == "flux"


def trainable_mask(config: ml_collections.ConfigDict, params: Any) -> Any | None:
  """The FLUX trainable mask of a (boxed or abstract) params tree; None for the DiT (all trained)."""
  if not _is_flux(config):
    return None
  from diffcamera_jax.models.flux_diffcamera import CONDITION_MODULES
  return lora.trainable_mask(params, CONDITION_MODULES)


def full_params(params: Any, frozen: Any | None) -> Any:
  """The model's complete params: the trained part merged with the frozen base (if any)."""
  return params if frozen is None else lora.merge_params(params, frozen)


def frozen_base(config: ml_collections.ConfigDict, model: nn.Module, codec: Any, mesh: Mesh,
                image_hw: tuple[int, int] | None = None) -> tuple[Any | None, Any | None]:
  """`(frozen_params, frozen_sharding)` of a FLUX model (`flux_diffcamera.load_frozen_base`);
  `(None, None)` for the DiT, whose state holds all its params."""
  if not _is_flux(config):
    return None, None
  from diffcamera_jax.models.flux_diffcamera import load_frozen_base
  return load_frozen_base(config, model, codec, mesh, image_hw)


def train_state_plan(config: ml_collections.ConfigDict, model: nn.Module, codec: LatentCodec,
                     mesh: Mesh, image_hw: tuple[int, int] | None = None,
                     ) -> tuple[TrainState, TrainState, Callable[[jax.Array], TrainState]]:
  """The sharding plan of the train state, built abstractly (nothing is allocated).

  Returns `(abstract_state, state_sharding, init)`: the state's shapes/dtypes with their shardings
  (`jax.ShapeDtypeStruct`s, for checkpoint restore and memory planning), the sharding tree (a
  `TrainState` of `NamedSharding`s, for the step's in/out shardings) and the jitted initialiser.
  """
  rules = logical_rules(config)
  tx = make_optimizer(config)
  inputs = example_inputs(codec, tuple(image_hw or config.data.image_size))

  def init_boxed_params(rng):
    return model.init({"params": rng}, *inputs)["params"]

  rng_shape = jax.eval_shape(lambda: jax.random.key(0))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract_boxed = jax.eval_shape(init_boxed_params, rng_shape)
  param_sharding = logical_shardings(abstract_boxed, mesh, rules)
  mask = trainable_mask(config, abstract_boxed)

  def init_params(rng):
    params = nn.unbox(init_boxed_params(rng))
    return params if mask is None else lora.split_params(params, mask)[0]

  if mask is not None:
    param_sharding = lora.split_params(param_sharding, mask)[0]
  abstract_opt = jax.eval_shape(lambda r: tx.init(init_params(r)), rng_shape)
  opt_sharding = optax.tree_map_params(
      tx, lambda _, sharding: sharding, abstract_opt, param_sharding,
      transform_non_params=lambda _: replicated(mesh),
      is_leaf=lambda x: isinstance(x, optax.MaskedNode))
  state_sharding = TrainState(step=replicated(mesh), params=param_sharding,
                              ema_params=param_sharding, opt_state=opt_sharding)

  def init(rng):
    params = init_params(rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      ema_params=jax.tree.map(jnp.copy, params), opt_state=tx.init(params))

  jitted_init = jax.jit(init, out_shardings=state_sharding)

  def sharded_init(rng: jax.Array) -> TrainState:
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      return jitted_init(rng)

  abstract_state = jax.tree.map(
      lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
      jax.eval_shape(init, rng_shape), state_sharding)
  return abstract_state, state_sharding, sharded_init


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module, codec: LatentCodec,
                       mesh: Mesh, rng: jax.Array,
                       image_hw: tuple[int, int] | None = None) -> tuple[TrainState, TrainState]:
  """A freshly initialised, sharded `TrainState` and its sharding tree (a `TrainState` of
  `NamedSharding`s, for the step's in/out shardings and for checkpoint restore)."""
  _, state_sharding, init = train_state_plan(config, model, codec, mesh, image_hw)
  return init(rng), state_sharding
