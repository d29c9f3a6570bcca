"""One GPU: the in-context DiT-B in pixel mode at 256^2, bf16 compute, procedural or TFDS data.

Defined in the package (`diffcamera_jax/configs/gpu.py`, so an installed copy has it too);
this file is the path `--config=configs/gpu.py[:variant]` names from the repository root.
"""
from diffcamera_jax.configs.gpu import get_config  # noqa: F401
