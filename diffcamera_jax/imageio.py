"""Image and depth-map files <-> the project's array conventions.

Images come back as float32 sRGB `[H, W, 3]` in [0, 1] whatever the file holds: EXIF orientation is
applied (a phone photo shot in portrait is returned upright), grayscale is replicated to three
channels, palette images are expanded, 16-bit grayscale keeps its full precision, and transparency
is composited on white (the usual look of a cut-out product photo; `alpha="drop"` ignores it
instead). Pillow reads 16-bit *colour* PNGs at 8-bit precision, which is below what the model can
resolve anyway.

Depth maps come back as disparity `[H, W]` in [0, 1] with 1 = nearest (README, Conventions). Files hold
either disparity (larger = nearer, what monocular estimators such as Depth-Anything output) or
metric/relative depth (larger = farther); `kind` says which. Both are relative in practice, so by
default the result is stretched to the full [0, 1] range.

Only regular files are read (a FIFO would block), and an image's or `.npy` map's declared size is
checked against a pixel limit before anything is decoded. Outputs are written under a temporary
name in their folder and renamed, so a failed write never leaves half a file over an earlier one.

Every failure is a `ValueError` whose message names the file.
"""
from __future__ import annotations

import io
import os
from typing import Literal, Sequence

import numpy as np
from etils import epath
from PIL import Image, ImageDraw

from data_pipeline.checked_files import DEFAULT_MAX_PIXELS, open_image, read_npy  # noqa: F401
from diffcamera_jax import user_files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
DEPTH_EXTENSIONS = (".png", ".npy", ".tif", ".tiff")


# ------------------------------------------------------------------------------------ reading


def _high_bit_gray(im: Image.Image) -> np.ndarray:
  """Float [0, 1] array of a 16/32-bit integer or float grayscale Pillow image."""
  a = np.asarray(im)
  if im.mode == "F":
    return a.astype(np.float32)
  # Modes "I;16*" hold 16 bits; PNG 16-bit grayscale may also open as 32-bit "I".
  return a.astype(np.float32) / 65535.0


def pil_to_array(im: Image.Image, *, alpha: Literal["white", "drop"] = "white") -> np.ndarray:
  """Converts a decoded Pillow image of any mode to float32 RGB `[H, W, 3]` in [0, 1]."""
  if alpha not in ("white", "drop"):
    raise ValueError(f"alpha must be 'white' or 'drop', got {alpha!r}")
  if im.mode in ("I", "F") or im.mode.startswith("I;16"):
    gray = np.clip(_high_bit_gray(im), 0.0, 1.0)
    return np.repeat(gray[..., None], 3, axis=-1)
  has_alpha = "A" in im.mode or "transparency" in im.info
  if has_alpha:
    rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    rgb, a = rgba[..., :3], rgba[..., 3:]
    if alpha == "white":
      rgb = rgb * a + (1.0 - a)
    return np.ascontiguousarray(rgb, dtype=np.float32)
  return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def load_image(path: str | os.PathLike, *, alpha: Literal["white", "drop"] = "white",
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
  """Reads an image file as float32 sRGB `[H, W, 3]` in [0, 1], upright per its EXIF tag."""
  return pil_to_array(open_image(path, "image", max_pixels), alpha=alpha)


def _depth_values(path: str, max_pixels: int) -> np.ndarray:
  """Raw depth-file values as float32 `[H, W]`, integer formats scaled to [0, 1]."""
  if path.lower().endswith(".npy"):
    a = read_npy(path, "depth", max_pixels)
    if a.ndim == 3 and 1 in (a.shape[0], a.shape[-1]):  # [1, H, W] or [H, W, 1]
      a = a.reshape(a.shape[1:] if a.shape[0] == 1 else a.shape[:-1])
    if a.ndim != 2 or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
      raise ValueError(f"depth file {path}: expected a 2-D numeric array, got {a.dtype} {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
      a = a / float(np.iinfo(a.dtype).max)
    return a.astype(np.float32)
  im = open_image(path, "depth", max_pixels)
  if im.mode in ("I", "F") or im.mode.startswith("I;16"):
    return _high_bit_gray(im)
  if im.mode in ("L", "P", "1"):
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
  rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
  if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
    raise ValueError(f"depth file {path}: has colour (mode {im.mode}); a depth map must be "
                     "single-channel (16-bit PNG, 8-bit PNG or .npy)")
  return rgb[..., 0]


def normalize_disparity(values: np.ndarray, *, kind: Literal["disparity", "depth"] = "disparity",
                        normalize: bool = True, name: str = "disparity") -> np.ndarray:
  """Maps raw depth or disparity values to the disparity convention: [0, 1], 1 = nearest.

  `kind='depth'`: disparity = 1 / depth; non-positive depth (the usual "no measurement" value) is
  treated as the farthest point. `normalize=True` stretches the result to exactly [0, 1] (a
  constant map becomes all zeros); `normalize=False` keeps the values and requires them in [0, 1].
  """
  if kind not in ("disparity", "depth"):
    raise ValueError(f"kind must be 'disparity' or 'depth', got {kind!r}")
  d = np.asarray(values, dtype=np.float64)
  if not np.all(np.isfinite(d)):
    raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
  if kind == "depth":
    valid = d > 0
    if not valid.any():
      raise ValueError(f"{name}: depth map has no positive values")
    inv = np.zeros_like(d)
    inv[valid] = 1.0 / d[valid]
    inv[~valid] = inv[valid].min()
    d = inv
  if normalize:
    lo, hi = float(d.min()), float(d.max())
    d = (d - lo) / (hi - lo) if hi > lo else np.zeros_like(d)
  elif d.min() < 0.0 or d.max() > 1.0:
    raise ValueError(f"{name}: values span [{d.min():.4g}, {d.max():.4g}], outside [0, 1]; "
                     "pass normalize=True to stretch them")
  return d.astype(np.float32)


def load_disparity(path: str | os.PathLike, *, kind: Literal["disparity", "depth"] = "disparity",
                   normalize: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
  """Reads a depth or disparity map (16/8-bit PNG, TIFF or .npy) as disparity `[H, W]` in [0, 1].

  Integer files are scaled by their type's maximum first (65535 for 16-bit PNGs), then
  `normalize_disparity` applies `kind` and `normalize`. EXIF orientation is applied like images.
  """
  path = os.fspath(path)
  values = _depth_values(path, max_pixels)
  return normalize_disparity(values, kind=kind, normalize=normalize, name=f"depth file {path}")


# ------------------------------------------------------------------------------------ writing


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image in [0, 1] -> uint8 (values clipped, rounded to nearest)."""
  a = np.asarray(image, dtype=np.float32)
  if not np.all(np.isfinite(a)):
    raise ValueError("image: contains non-finite values (NaN or inf)")
  return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
  a = np.asarray(image)
  if a.ndim != 3 or a.shape[-1] != 3:
    raise ValueError(f"{name}: expected an [H, W, 3] RGB array, got shape {a.shape}")
  return a


def save_image(path: str | os.PathLike, image: np.ndarray) -> None:
  """Writes a float `[H, W, 3]` image in [0, 1] as 8-bit sRGB (format from the extension)."""
  path = os.fspath(path)
  image = _check_rgb(image)
  try:
    if "://" in path:  # a bucket (gs://...): encode here, write through etils.epath
      fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower())
      if fmt is None:
        raise ValueError(f"unknown extension {os.path.splitext(path)[1]!r}")
      buffer = io.BytesIO()
      Image.fromarray(to_uint8(image)).save(buffer, format=fmt)
      epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
      epath.Path(path).write_bytes(buffer.getvalue())
      return
    pixels = Image.fromarray(to_uint8(image))
    with user_files.atomic_output(path) as tmp:
      pixels.save(tmp)
  except (ValueError, KeyError) as e:  # Pillow: unknown extension
    raise ValueError(f"output {path}: cannot write this format ({e})") from None


def save_disparity_png(path: str | os.PathLike, disparity: np.ndarray) -> None:
  """Writes disparity `[H, W]` in [0, 1] as a 16-bit grayscale PNG (readable by `load_disparity`)."""
  d = np.asarray(disparity, dtype=np.float64)
  if d.ndim != 2:
    raise ValueError(f"disparity: expected [H, W], got shape {d.shape}")
  with user_files.atomic_output(path) as tmp:
    Image.fromarray(np.round(np.clip(d, 0, 1) * 65535).astype(np.uint16)).save(tmp)


def save_gif(path: str | os.PathLike, frames: Sequence[np.ndarray], *,
             frame_ms: int = 250, loop: bool = True) -> None:
  """Writes float `[H, W, 3]` frames as an animated GIF (each frame palettised separately)."""
  if len(frames) == 0:
    raise ValueError("frames: need at least one frame for a GIF")
  if frame_ms <= 0:
    raise ValueError(f"frame_ms must be positive, got {frame_ms}")
  ims = [Image.fromarray(to_uint8(_check_rgb(f, f"frames[{i}]"))) for i, f in enumerate(frames)]
  with user_files.atomic_output(path) as tmp:
    ims[0].save(tmp, save_all=True, append_images=ims[1:], duration=int(frame_ms),
                loop=0 if loop else 1, disposal=2)


def contact_sheet(frames: Sequence[np.ndarray], labels: Sequence[str] | None = None, *,
                  columns: int | None = None, pad: int = 4, label_height: int = 14,
                  background: float = 1.0) -> np.ndarray:
  """Tiles same-size float frames into one image (row-major), with an optional caption under each
  (cut to the frame's width).

  `columns` defaults to ceil(sqrt(n)). Returns float32 `[rows*(h+pad+lh)+pad, cols*(w+pad)+pad, 3]`.
  """
  if len(frames) == 0:
    raise ValueError("frames: need at least one frame for a contact sheet")
  frames = [_check_rgb(f, f"frames[{i}]") for i, f in enumerate(frames)]
  h, w = frames[0].shape[:2]
  if any(f.shape[:2] != (h, w) for f in frames):
    raise ValueError(f"frames: all frames must share one size, got {[f.shape for f in frames]}")
  if labels is not None and len(labels) != len(frames):
    raise ValueError(f"labels: {len(labels)} labels for {len(frames)} frames")
  n = len(frames)
  cols = int(columns) if columns else int(np.ceil(np.sqrt(n)))
  if cols < 1:
    raise ValueError(f"columns must be >= 1, got {columns}")
  rows = -(-n // cols)
  lh = label_height if labels is not None else 0
  cell_h, cell_w = h + pad + lh, w + pad
  sheet = np.full((rows * cell_h + pad, cols * cell_w + pad, 3), background, np.float32)
  for i, f in enumerate(frames):
    r, c = divmod(i, cols)
    y, x = pad + r * cell_h, pad + c * cell_w
    sheet[y:y + h, x:x + w] = np.clip(f, 0, 1)
  if labels is None:
    return sheet
  im = Image.fromarray(to_uint8(sheet))
  draw = ImageDraw.Draw(im)
  max_chars = max(1, (w + pad) // 6)  # Pillow's default bitmap font is about 6 px per character
  for i, text in enumerate(labels):
    r, c = divmod(i, cols)
    draw.text((pad + c * cell_w, pad + r * cell_h + h + 1), str(text)[:max_chars], fill=(0, 0, 0))
  return np.asarray(im, dtype=np.float32) / 255.0
