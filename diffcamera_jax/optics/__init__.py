"""The optics core: a differentiable, jittable defocus renderer with scatter semantics.

Public API: `Aperture`, `focus_disparity`, `signed_coc`, `render`, `render_multifocus`,
`invert_render`, `identify_uniform_blur`, `validate`.
"""
from diffcamera_jax.optics.aperture import Aperture
from diffcamera_jax.optics.focus import focus_disparity, signed_coc
from diffcamera_jax.optics.identify import identify_uniform_blur
from diffcamera_jax.optics.invert import invert_render
from diffcamera_jax.optics.render import render, render_multifocus
from diffcamera_jax.optics.validate import validate

__all__ = ["Aperture", "focus_disparity", "signed_coc", "render", "render_multifocus",
           "invert_render", "identify_uniform_blur", "validate"]
