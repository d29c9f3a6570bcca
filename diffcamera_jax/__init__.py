"""diffcamera_jax: refocus existing photos with a diffusion transformer (JAX/Flax, TPU-first).

Subpackages: `optics` (the differentiable defocus renderer), `models` (in-context DiT, FLUX, VAE),
and the training, inference and evaluation programs.
"""

__version__ = "0.1.0"

__all__ = ["GenfocusRefocuser", "Refocuser"]


def __getattr__(name: str):
  """Lazy exports: `import diffcamera_jax` stays light; `diffcamera_jax.Refocuser` (and
  `GenfocusRefocuser`, the released Genfocus LoRAs behind the same call) load on use."""
  if name == "Refocuser":
    from diffcamera_jax.inference.refocuser import Refocuser
    return Refocuser
  if name == "GenfocusRefocuser":
    from diffcamera_jax.inference.genfocus_refocuser import GenfocusRefocuser
    return GenfocusRefocuser
  raise AttributeError(f"module 'diffcamera_jax' has no attribute {name!r}")
