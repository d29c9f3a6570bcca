"""Refocusing inference: Euler integration of the learned velocity from noise to the target latent.

The objective (`objective.Objective`) fixes the anchor and the prior the network sees, the
velocity of its output and the latent to decode; this module runs the loop. Without depth the
"render" prior is the reference itself and the "restore" prior uses the restoration stage's own
disparity estimate.
`make_sampler(model, codec, config)` returns
`sample(params, reference_image, disparity | None, camera, rng, num_steps) -> images [N, H, W, 3]`.
One reference image (`[H, W, 3]` or `[1, H, W, 3]`) is broadcast against N cameras, so a whole
focus sweep of one photo is one call. `rng` is one key, or `[N]` keys (one per camera, so that a
frame does not depend on the batch it runs in); `num_steps` is traced, so changing it does not
recompile.
`sample.lower(...)` / `sample.compile(...)` (same arguments) lower / compile ahead of time, so a caller can read the memory
plan before running; the result runs on `sample.arguments(...)`.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffcamera_jax.models.dit import DiT
from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.objective import flow
from diffcamera_jax.objective.objective import Objective


def _broadcast(x: jnp.ndarray, n: int, ndim: int, name: str) -> jnp.ndarray:
  """Adds a missing batch axis and broadcasts a batch of one to `n`."""
  if x.ndim == ndim - 1:
    x = x[None]
  if x.ndim != ndim or x.shape[0] not in (1, n):
    raise ValueError(f"sample: {name} must have {ndim - 1} dims or a batch of 1 or {n} "
                     f"(the number of cameras), got {x.shape}")
  return jnp.broadcast_to(x, (n,) + x.shape[1:])


def make_sampler(model: DiT, codec: LatentCodec,
                 config: ml_collections.ConfigDict) -> Callable[..., jnp.ndarray]:
  """The jitted refocusing sampler for `model` (see the module docstring)."""
  objective = Objective.from_config(config)

  @jax.jit
  def _sample(params, codec, reference_image, disparity, camera, rng, num_steps):
    n = camera.shape[0]
    single = reference_image.ndim == 3 or reference_image.shape[0] == 1
    reference_image = _broadcast(reference_image, n, 4, "reference_image")
    if disparity is not None:
      single = single and (disparity.ndim == 2 or disparity.shape[0] == 1)
      disparity = _broadcast(disparity, n, 3, "disparity")
      if disparity.shape[1:] != reference_image.shape[1:3]:
        raise ValueError(f"sample: disparity {disparity.shape[1:]} must match the image size "
                         f"{reference_image.shape[1:3]}")
    keep = jnp.full((n,), disparity is not None)
    reference = codec.encode(reference_image)
    anchor, extra = reference, {}
    if objective.prior == "restore":  # one restoration per distinct photo, broadcast over cameras
      m = 1 if single else n
      sharp, disparity_hat, _ = model.apply(
          {"params": params}, reference_image[:m], None if disparity is None else disparity[:m],
          keep[:m], method="restore")
      sharp, disparity_hat = (jnp.broadcast_to(x, (n,) + x.shape[1:])
                              for x in (sharp, disparity_hat))
      extra["prior"] = anchor = codec.encode(
          objective.prior_image(sharp, disparity, camera, keep, disparity_hat))
    elif objective.prior == "render" and disparity is not None:  # else the reference itself
      extra["prior"] = anchor = codec.encode(
          objective.prior_image(reference_image, disparity, camera, keep))
    mu = objective.timestep_shift(reference.shape[1:3], model.patch_size)

    def velocity(x, t):
      out = model.apply({"params": params}, x, t, reference, disparity, camera, keep,
                        train=False, **extra)
      return objective.velocity(x, t, out)

    if rng.ndim == 1:  # one key per camera: a frame's noise does not depend on its batch
      noise = jax.vmap(lambda k: jax.random.normal(k, reference.shape[1:], jnp.float32))(rng)
    else:
      noise = jax.random.normal(rng, reference.shape, jnp.float32)
    x0 = flow.euler_sample(velocity, noise, num_steps, mu)
    return codec.decode(objective.final_latent(x0, anchor))

  def arguments(params, reference_image, disparity, camera, rng, num_steps) -> tuple:
    """The jitted program's arguments (abstract `jax.ShapeDtypeStruct`s pass through)."""
    f32 = lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else jnp.asarray(x, jnp.float32)
    camera = f32(camera)
    if camera.ndim != 2:
      raise ValueError(f"sample: camera must be [N, F] (camera_features), got {camera.shape}")
    if int(num_steps) <= 0:
      raise ValueError(f"sample: num_steps must be positive, got {num_steps}")
    return (params, codec, f32(reference_image), None if disparity is None else f32(disparity),
            camera, rng, np.int32(num_steps))

  def sample(params: Any, reference_image: jnp.ndarray, disparity: jnp.ndarray | None,
             camera: jnp.ndarray, rng: jax.Array,
             num_steps: int = objective.sample_steps) -> jnp.ndarray:
    """Refocused images `[N, H, W, 3]` in [0, 1] for N cameras `[N, F]` (from `camera_features`)."""
    return _sample(*arguments(params, reference_image, disparity, camera, rng, num_steps))

  def lower(params: Any, reference_image: jnp.ndarray, disparity: jnp.ndarray | None,
            camera: jnp.ndarray, rng: jax.Array,
            num_steps: int = objective.sample_steps) -> jax.stages.Lowered:
    """The sampler lowered for these shapes (abstract arguments allowed)."""
    return _sample.lower(*arguments(params, reference_image, disparity, camera, rng, num_steps))

  def compile(*args, **kwargs) -> Any:
    """The sampler compiled ahead of time for these shapes: a `jax.stages.Compiled` (its
    `memory_analysis()` is the program's memory plan); call it with `arguments(...)`."""
    return lower(*args, **kwargs).compile()

  sample.lower, sample.compile, sample.arguments = lower, compile, arguments
  return sample
