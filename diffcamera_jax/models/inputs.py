"""What every model builder shares: config dtype names and zero inputs of the model's shapes."""
import jax.numpy as jnp

from diffcamera_jax.configs.schema import DTYPE_NAMES
from diffcamera_jax.models.camera import CAMERA_FEATURES
from diffcamera_jax.models.latents import LatentCodec

DTYPES = {name: getattr(jnp, name) for name in DTYPE_NAMES}


def config_dtype(name: str, field: str) -> jnp.dtype:
  """`config.model.<field>` (a name in `DTYPES`) as a dtype; a clear error otherwise."""
  if name not in DTYPES:
    raise ValueError(f"config.model.{field} must be one of {sorted(DTYPES)}, got {name!r}")
  return DTYPES[name]


def example_inputs(codec: LatentCodec, image_hw: tuple[int, int], batch_size: int = 1) -> tuple:
  """Zero inputs of the right shapes for `DiT.init`:
  (x_t, t, reference, disparity, camera, depth_keep)."""
  latent = jnp.zeros((batch_size, *codec.latent_shape(tuple(image_hw))), jnp.float32)
  return (latent, jnp.zeros((batch_size,), jnp.float32), latent,
          jnp.zeros((batch_size, *image_hw), jnp.float32),
          jnp.zeros((batch_size, CAMERA_FEATURES), jnp.float32), jnp.ones((batch_size,), bool))
