"""One jitted, sharded training step: the objective's losses on a device example, gradients,
clipping, AdamW and the EMA update.

The losses (rectified flow on both targets of the stacking pair, the stacking term, the
restoration stage's terms) are `objective.Objective.losses`; this module owns the optimisation
around them and the shardings.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.objective.example import Example
from diffcamera_jax.objective.objective import Objective
from diffcamera_jax.sharding import batch_spec, logical_rules, replicated
from diffcamera_jax.training.state import TrainState, full_params, make_optimizer, make_schedule
from diffcamera_jax.training.state import update_ema


class TrainStep:
  """`train_step(state, example, rng) -> (state, metrics)`; `state` is donated, `example` is an
  `objective.Example` (from `objective.example.simulate`).

  Pass a fresh `rng` every step (e.g. `jax.random.fold_in(key, step)`). `lower(...)` exposes the
  compiled program for cost and memory analysis.

  With a frozen base (FLUX + LoRA, `training.state.frozen_base`), `state.params` is the trainable
  part only: the loss sees `merge(state.params, frozen)`, gradients (and `grad_norm`) are formed
  for the trainable part only, and `frozen` enters the jitted step as its own argument in its own
  shardings, never donated.
  """

  def __init__(self, config: ml_collections.ConfigDict, model: nn.Module, codec: LatentCodec,
               mesh: Mesh, state_sharding: TrainState, frozen: Any | None = None,
               frozen_sharding: Any | None = None):
    self.mesh, self.codec, self.frozen = mesh, codec, frozen
    self.rules = logical_rules(config)
    tx, schedule = make_optimizer(config), make_schedule(config)
    objective, ema_decay = Objective.from_config(config), config.optim.ema_decay

    def step(state: TrainState, batch: Example, rng: jax.Array, codec: LatentCodec, frozen: Any):
      loss_fn = lambda p: objective.losses(model.apply, full_params(p, frozen), codec, batch, rng,
                                           model.patch_size)
      (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      new_state = TrainState(step=state.step + 1, params=params,
                             ema_params=update_ema(state.ema_params, params, ema_decay,
                                                   state.step),
                             opt_state=opt_state)
      metrics.update(grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params),
                     learning_rate=schedule(state.step))
      return new_state, metrics

    batch_sharding = NamedSharding(mesh, batch_spec(1, self.rules))
    if frozen is not None and frozen_sharding is None:
      frozen_sharding = jax.tree.map(lambda x: x.sharding, frozen)
    self._jitted = jax.jit(
        step, in_shardings=(state_sharding, batch_sharding, replicated(mesh), replicated(mesh),
                            frozen_sharding),
        out_shardings=(state_sharding, replicated(mesh)), donate_argnums=0)

  def lower(self, state: TrainState, batch: Example, rng: jax.Array) -> jax.stages.Lowered:
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      return self._jitted.lower(state, batch, rng, self.codec, self.frozen)

  def __call__(self, state: TrainState, batch: Example,
               rng: jax.Array) -> tuple[TrainState, dict[str, jnp.ndarray]]:
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      return self._jitted(state, batch, rng, self.codec, self.frozen)


def make_train_step(config: ml_collections.ConfigDict, model: nn.Module, codec: LatentCodec,
                    mesh: Mesh, state_sharding: TrainState, frozen: Any | None = None,
                    frozen_sharding: Any | None = None) -> TrainStep:
  """The jitted, sharded training step (see `TrainStep`); `frozen`: the FLUX base, if any."""
  return TrainStep(config, model, codec, mesh, state_sharding, frozen, frozen_sharding)
