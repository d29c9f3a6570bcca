"""One jitted, sharded training step: rectified-flow loss on both targets of the stacking pair,
the stacking loss, gradients, clipping, AdamW and the EMA update.

Each example carries two targets of the same scene (focus f_t1 and f_t2, same blur). They run
through the model together as a `[B, 2, ...]` batch folded to `[2B, ...]` (each pair stays on one
device), sharing the timestep, the noise, the reference, the depth and its dropout, so the mask
blend of their denoised estimates compares like with like.
"""
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

from diffcamera_jax import flow, optics, prior
from diffcamera_jax.losses import flow_loss, log_error, stacking_loss
from diffcamera_jax.models.camera import camera_features
from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.sharding import batch_spec, logical_rules, replicated
from diffcamera_jax.train_state import TrainState, full_params, make_optimizer, make_schedule
from diffcamera_jax.train_state import update_ema

REQUIRED_KEYS = ("reference", "target", "target_2", "stack_mask", "multifocus", "disparity",
                 "target_focus", "target_focus_2", "target_blur", "aperture_blades",
                 "aperture_rotation")
# Further keys the restoration stage's supervision reads (objective.prior="restore").
RESTORE_KEYS = ("image", "source_focus", "source_blur")
_TYPICAL_MSE = 1e-3  # a blurred training reference's squared error, [0, 1] scale


def _pair(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """`[B, ...]`, `[B, ...]` -> `[2B, ...]` with each example's pair adjacent."""
  return jnp.stack([a, b], axis=1).reshape(-1, *a.shape[1:])


def _unpair(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  x = x.reshape(-1, 2, *x.shape[1:])
  return x[:, 0], x[:, 1]


def refocus_losses(apply_fn: Callable, params: Any, codec: LatentCodec, batch: dict,
                   rng: jax.Array, objective: ml_collections.ConfigDict,
                   patch_size: int, prior_fn: Callable | None = None) -> tuple[jnp.ndarray, dict]:
  """`L = L_flow + stack_weight * L_stack (+ restore_weight * (L_restore + L_depth))` on one
  device batch, and the loss terms.

  `apply_fn` is the DiT's `apply`; `patch_size` sets the token count for the timestep shift.
  With `objective.residual` the flow's data end is `enc(target) - enc(anchor)`, the anchor being
  the reference, or with `prior_fn` the physics prior (`training_prior_fn`), which the network
  also sees: for `objective.prior="render"` the re-render of the reference, for "restore" the
  render of the restoration stage's sharp estimate (with the estimated disparity where depth is
  dropped), the stage itself trained by `restoration_losses` in the same step. With
  `objective.prediction="x0"` the network predicts the clean latent and the flow term is the x0
  error (docs/model.md).
  """
  kind = objective.get("prior", "none")
  required = REQUIRED_KEYS + (RESTORE_KEYS if kind == "restore" else ())
  missing = [k for k in required if k not in batch]
  if missing:
    raise KeyError(f"train batch lacks keys {missing} (see docs/architecture.md, device example)")
  b, h_img, w_img, _ = batch["reference"].shape
  rng_t, rng_noise, rng_drop, rng_dropout = jax.random.split(rng, 4)

  x0 = codec.encode(_pair(batch["target"], batch["target_2"]))
  reference = codec.encode(batch["reference"])
  multifocus = codec.encode(batch["multifocus"])
  blades, rotation = batch["aperture_blades"], batch["aperture_rotation"]
  camera = _pair(
      camera_features(batch["target_focus"], batch["target_blur"], (h_img, w_img), blades,
                      rotation),
      camera_features(batch["target_focus_2"], batch["target_blur"], (h_img, w_img), blades,
                      rotation))
  keep = jax.random.uniform(rng_drop, (b,)) >= objective.p_depth_drop
  reference2, disparity2, keep2 = (_pair(reference, reference),
                                   _pair(batch["disparity"], batch["disparity"]), _pair(keep, keep))

  extra, restore_terms = {}, {}
  anchor = jnp.zeros_like(x0)
  if kind == "restore":  # the restoration stage, once per reference, supervised directly
    sharp, disparity_hat, blur_hat = apply_fn({"params": params}, batch["reference"],
                                              batch["disparity"], keep, method="restore")
    source_coc = jnp.abs(optics.signed_coc(
        batch["disparity"], optics.focus_disparity(batch["disparity"], batch["source_focus"]),
        batch["source_blur"]))
    restore_terms = restoration_losses(sharp, disparity_hat, blur_hat, batch["image"],
                                       batch["disparity"], source_coc,
                                       mse_floor=float(objective.get("restore_mse_floor", 0.0)))
    sg = jax.lax.stop_gradient
    prior_image = prior_fn(_pair(sg(sharp), sg(sharp)), disparity2,
                           _pair(sg(disparity_hat), sg(disparity_hat)), camera, keep2)
    extra["prior"] = anchor = codec.encode(prior_image)
  elif prior_fn is not None:  # the physics prior: seen by the network and the residual's anchor
    prior_image = prior_fn(_pair(batch["reference"], batch["reference"]), disparity2, camera,
                           keep2)
    extra["prior"] = anchor = codec.encode(prior_image)
  elif objective.get("residual", False):
    anchor = reference2
  if objective.get("residual", False):
    # The flow generates the change `enc(target) - anchor`; the stacking blend is formed on
    # `x0_hat + anchor`, back in the latent of the images.
    x0 = x0 - anchor

  num_tokens = (x0.shape[1] // patch_size) * (x0.shape[2] // patch_size)
  mu = flow.resolution_shift(num_tokens, objective.shift_base, objective.shift_max)
  t = flow.sample_timesteps(rng_t, b, mu, objective.timestep_mean, objective.timestep_std)
  noise = jax.random.normal(rng_noise, reference.shape, jnp.float32)

  t2, noise2 = _pair(t, t), _pair(noise, noise)
  x_t = flow.interpolate(x0, noise2, t2)
  out = apply_fn({"params": params}, x_t, t2, reference2, disparity2, camera, keep2,
                 train=True, rngs={"dropout": rng_dropout}, **extra)
  if objective.get("prediction", "velocity") == "x0":
    # The network outputs x0_hat itself (v_hat = (x_t - x0_hat) / t); the loss is on x0, or its
    # per-example log error with the floor given on the [0, 1] image scale (x4 on the latents).
    x0_hat = out
    l_flow = flow_loss(x0_hat, x0, mse_floor=4.0 * float(objective.get("flow_mse_floor", 0.0)),
                       typical_mse=4.0 * _TYPICAL_MSE)
  else:
    l_flow = flow_loss(out, flow.velocity_target(x0, noise2))
    x0_hat = flow.denoised_estimate(x_t, t2, out)
  x0_first, x0_second = _unpair(x0_hat + anchor)
  l_stack = stacking_loss(x0_first, x0_second, batch["stack_mask"], multifocus)
  loss = l_flow + objective.stack_weight * l_stack
  if restore_terms:
    loss = loss + objective.restore_weight * (
        restore_terms["restore_loss"] + objective.depth_weight * restore_terms["depth_loss"]
        + objective.blur_map_weight * restore_terms["blur_map_loss"])
  return loss, {"loss": loss, "flow_loss": l_flow, "stack_loss": l_stack, **restore_terms,
                "t_mean": jnp.mean(t), "depth_keep_rate": jnp.mean(keep.astype(jnp.float32))}



def restoration_losses(sharp: jnp.ndarray, disparity_hat: jnp.ndarray, blur_hat: jnp.ndarray,
                       image: jnp.ndarray, disparity: jnp.ndarray, source_coc: jnp.ndarray,
                       mse_floor: float = 0.0) -> dict[str, jnp.ndarray]:
  """The restoration stage's terms: the error of the sharp estimate to the all-in-focus image,
  mean absolute errors of the disparity estimate and of the blur map (CoC radius, pixels) of the
  reference.

  The image term is `4 · MSE` on the [-1, 1] scale of the pixel latents (so it weighs like the
  flow term) when `mse_floor` is 0. With `mse_floor` > 0 it is the per-example log error
  `4 · _TYPICAL_MSE · mean_i log(MSE_i + mse_floor)`: each example's PSNR, the quantity evaluation
  averages per scene, so a nearly sharp photo (MSE ~1e-5) is weighed by its own scale rather than
  drowned by blurred ones (MSE ~1e-3, whose gradients keep about their plain-MSE size); the floor
  bounds the weight of an exactly sharp one.
  """
  per_example = jnp.mean(jnp.square(sharp - image), axis=tuple(range(1, sharp.ndim)))
  if mse_floor > 0:
    image_term = 4.0 * log_error(per_example, mse_floor, _TYPICAL_MSE)
  else:
    image_term = 4.0 * jnp.mean(per_example)
  return {"restore_loss": image_term,
          "depth_loss": jnp.mean(jnp.abs(disparity_hat - disparity)),
          "blur_map_loss": jnp.mean(jnp.abs(blur_hat - source_coc))}


def training_prior_fn(config: ml_collections.ConfigDict) -> Callable | None:
  """The physics prior at the training size: `prior.render_prior` (`objective.prior="render"`),
  `prior.restored_prior` ("restore"), else None."""
  kind = config.objective.get("prior", "none")
  if kind == "none":
    return None
  radius = prior.prior_max_radius(tuple(config.data.image_size), config.data.blur_range[1],
                                  config.data.blur_reference_size)
  fn = prior.restored_prior if kind == "restore" else prior.render_prior
  return functools.partial(fn, gamma=float(config.data.gamma), max_radius=radius)


class TrainStep:
  """`train_step(state, batch, rng) -> (state, metrics)`; `state` is donated.

  Pass a fresh `rng` every step (e.g. `jax.random.fold_in(key, step)`). `lower(...)` exposes the
  compiled program for cost and memory analysis.

  With a frozen base (FLUX + LoRA, `train_state.frozen_base`), `state.params` is the trainable
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
    objective, ema_decay = config.objective, config.optim.ema_decay
    prior_fn = training_prior_fn(config)

    def step(state: TrainState, batch: dict, rng: jax.Array, codec: LatentCodec, frozen: Any):
      loss_fn = lambda p: refocus_losses(model.apply, full_params(p, frozen), codec, batch, rng,
                                         objective, model.patch_size, prior_fn)
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

  def lower(self, state: TrainState, batch: dict, rng: jax.Array) -> jax.stages.Lowered:
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      return self._jitted.lower(state, batch, rng, self.codec, self.frozen)

  def __call__(self, state: TrainState, batch: dict,
               rng: jax.Array) -> tuple[TrainState, dict[str, jnp.ndarray]]:
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      return self._jitted(state, batch, rng, self.codec, self.frozen)


def make_train_step(config: ml_collections.ConfigDict, model: nn.Module, codec: LatentCodec,
                    mesh: Mesh, state_sharding: TrainState, frozen: Any | None = None,
                    frozen_sharding: Any | None = None) -> TrainStep:
  """The jitted, sharded training step (see `TrainStep`); `frozen`: the FLUX base, if any."""
  return TrainStep(config, model, codec, mesh, state_sharding, frozen, frozen_sharding)
