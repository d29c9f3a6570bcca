"""Host-side input checks for the renderer (numpy; never traced).

The renderer itself cannot raise on data-dependent problems under ``jit``, so programs (the CLI,
the data pipeline) call `validate` on host arrays first. Every error names the offending argument.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from diffcamera_jax.optics.aperture import Aperture


def validate(
    image,
    disparity,
    focus_disparity=None,
    blur=None,
    aperture: Optional[Aperture] = None,
    point=None,
    max_radius: Optional[float] = None,
) -> None:
  """Raises ValueError naming the argument if the inputs of `render` are malformed.

  ``image`` ``[H, W, 3]`` or ``[B, H, W, 3]``; ``disparity`` its ``[..., H, W]`` in [0, 1];
  ``focus_disparity`` in [0, 1] and ``blur`` >= 0 (scalars or ``[B]``); ``aperture`` blades 0 or
  >= 3; ``point`` ``[2]`` or ``[B, 2]`` in [0, 1]^2. All values must be finite. Given
  ``max_radius`` (the renderer's static bound), a ``blur`` whose circles of confusion would exceed
  it (``blur * max |D - d_f|``, or ``blur`` itself without a focus) is rejected instead of being
  clipped by the renderer.
  """
  image = _finite("image", image)
  if image.ndim not in (3, 4) or image.shape[-1] != 3:
    raise ValueError(f"image must be [H, W, 3] or [B, H, W, 3], got shape {image.shape}")
  disparity = _finite("disparity", disparity)
  if disparity.shape != image.shape[:-1]:
    raise ValueError(
        f"disparity must have shape {image.shape[:-1]} to match image, got {disparity.shape}")
  _in_unit_interval("disparity", disparity)
  batch = image.shape[0] if image.ndim == 4 else None
  if focus_disparity is not None:
    focus_disparity = _per_example("focus_disparity", focus_disparity, batch)
    _in_unit_interval("focus_disparity", focus_disparity)
  if blur is not None:
    blur = _per_example("blur", blur, batch)
    if np.any(blur < 0):
      raise ValueError(f"blur must be >= 0, got min {blur.min()}")
    if max_radius is not None:
      _within_max_radius(blur, disparity, focus_disparity, batch, max_radius)
  if aperture is not None:
    _check_aperture(aperture, batch)
  if point is not None:
    point = _finite("point", point)
    expected = ((2,),) if batch is None else ((2,), (batch, 2))
    if point.shape not in expected:
      raise ValueError(f"point must have shape {' or '.join(map(str, expected))}, got {point.shape}")
    _in_unit_interval("point", point)


def _within_max_radius(blur, disparity, focus_disparity, batch, max_radius: float) -> None:
  spread = np.ones(() if batch is None else (batch,))
  if focus_disparity is not None:
    d_f = np.reshape(focus_disparity, (-1,) + (1,) * 2) if batch is not None else focus_disparity
    spread = np.abs(disparity - d_f).reshape(*spread.shape, -1).max(axis=-1)
  largest = float(np.max(blur * spread))
  if largest > max_radius * (1 + 1e-6):
    raise ValueError(f"blur gives circles of confusion of up to {largest:.1f} px, beyond "
                     f"max_radius {max_radius:g}; the renderer would clip them: pass a larger "
                     "max_radius")


def _finite(name: str, value) -> np.ndarray:
  array = np.asarray(value)
  if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
    raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{name} contains non-finite values (NaN or inf)")
  return array


def _in_unit_interval(name: str, array: np.ndarray) -> None:
  if array.size and (array.min() < 0.0 or array.max() > 1.0):
    raise ValueError(f"{name} must lie in [0, 1], got range [{array.min()}, {array.max()}]")


def _per_example(name: str, value, batch: Optional[int]) -> np.ndarray:
  array = _finite(name, value)
  if array.ndim == 0:
    return array
  if batch is None or array.shape != (batch,):
    expected = "a scalar" if batch is None else f"a scalar or [{batch}]"
    raise ValueError(f"{name} must be {expected}, got shape {array.shape}")
  return array


def _check_aperture(aperture: Aperture, batch: Optional[int]) -> None:
  if not isinstance(aperture, Aperture):
    raise ValueError(f"aperture must be an optics.Aperture, got {type(aperture).__name__}")
  blades = _per_example("aperture.blades", aperture.blades, batch)
  _per_example("aperture.rotation", aperture.rotation, batch)
  if not np.all(np.equal(np.round(blades), blades)):
    raise ValueError(f"aperture.blades must be integers, got {blades}")
  if np.any(blades < 0) or np.any((blades >= 1) & (blades <= 2)):
    raise ValueError(f"aperture.blades must be 0 (disk) or >= 3 (polygon), got {blades}")
