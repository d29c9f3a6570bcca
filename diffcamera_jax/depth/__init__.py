"""Monocular depth for photos without a depth map: Depth Anything V2 (DINOv2 + DPT) in Flax.

`DepthEstimator.load(weights)` reads the released weights from local `.safetensors` (the
`transformers` layout or the original one, see `layout`); `estimate(photo)` returns disparity in
[0, 1], 1 = nearest, at the photo's size. Used by `refocus --depth-model`, `evaluate
--depth-model` and `data_pipeline.image_depth_folder --depth-model`.
"""
from diffcamera_jax.depth.estimator import DepthEstimator, load_depth_model, network_size
from diffcamera_jax.depth.model import VARIANTS, DepthAnything, DepthAnythingConfig

__all__ = ["DepthAnything", "DepthAnythingConfig", "DepthEstimator", "VARIANTS",
           "load_depth_model", "network_size"]
