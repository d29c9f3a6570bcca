"""Laptop / CPU default: procedural scenes, a small in-context DiT in pixel mode.

Defined in the package (`diffcamera_jax/configs/default.py`, so an installed copy has it too);
this file is the path `--config=configs/default.py[:variant]` names from the repository root.
"""
from diffcamera_jax.configs.default import get_config  # noqa: F401
