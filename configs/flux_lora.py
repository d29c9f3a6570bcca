"""DiffCamera as the paper trains it: LoRA on a frozen FLUX.1 transformer, FLUX VAE latents.

Defined in the package (`diffcamera_jax/configs/flux_lora.py`, so an installed copy has it too);
this file is the path `--config=configs/flux_lora.py[:variant]` names from the repository root.
"""
from diffcamera_jax.configs.flux_lora import get_config  # noqa: F401
