"""diffcamera_jax: refocus existing photos with a diffusion transformer (JAX/Flax, TPU-first).

Subpackages: `optics` (the differentiable defocus renderer), `models` (in-context DiT, FLUX, VAE),
and the training, inference and evaluation programs.
"""

__version__ = "0.1.0"
