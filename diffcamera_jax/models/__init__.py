"""Models: the in-context DiT (`dit`), its building blocks, the latent codec and named sizes.

`build_model(config)` (`build.py`) returns the model and the latent codec the config asks for: the
DiT with its codec (`model.name="dit"`), or the LoRA-adapted FLUX with the FLUX VAE
(`model.name="flux"`).
"""
from diffcamera_jax.models.build import build_model, build_restorer
from diffcamera_jax.models.camera import CAMERA_FEATURES, camera_features
from diffcamera_jax.models.dit import DiT
from diffcamera_jax.models.inputs import example_inputs
from diffcamera_jax.models.latents import LatentCodec, make_codec
from diffcamera_jax.models.restorer import Restorer
from diffcamera_jax.models.sizes import SIZES, ModelSize, get_size

__all__ = ["CAMERA_FEATURES", "DiT", "LatentCodec", "ModelSize", "Restorer", "SIZES", "build_model",
           "build_restorer", "camera_features", "example_inputs", "get_size", "make_codec"]
