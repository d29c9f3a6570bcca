"""Cloud TPU v4 pod: DiT-XL on VAE latents at 512^2, FSDP over all chips, bf16 compute, remat.

Defined in the package (`diffcamera_jax/configs/tpu_v4.py`, so an installed copy has it too);
this file is the path `--config=configs/tpu_v4.py[:variant]` names from the repository root.
"""
from diffcamera_jax.configs.tpu_v4 import get_config  # noqa: F401
