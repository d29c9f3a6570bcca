"""Checked reads of the files a user names, shared by the library's programs and the dataset builder.

Only regular files are opened (opening a FIFO blocks until a writer appears; a device may never
end), and an image's or a `.npy` array's size is read from its header and checked before anything
is decoded or allocated. Every failure is a `FileCheckError` (a `ValueError`) whose message names
what the file is for and its path, so the programs report it as one line.
"""
from __future__ import annotations

import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class FileCheckError(ValueError):
  """A named file that cannot be used; the message names it."""


class MissingFileError(FileCheckError, FileNotFoundError):
  """A named file that does not exist (also a FileNotFoundError, for callers that catch that)."""


def is_remote(path: str | os.PathLike) -> bool:
  """True for paths with a scheme (`gs://bucket/...`): left to `etils.epath`."""
  return "://" in os.fspath(path)


def _kind(mode: int) -> str:
  for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                     (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                     (stat.S_ISBLK, "a block device")):
    if test(mode):
      return name
  return "not a regular file"


def regular_file(path: str | os.PathLike, what: str) -> str:
  """`path` if it names a regular file (after symlinks); else `FileCheckError` naming `what`.

  Checked before any `open`: opening a FIFO blocks until a writer appears, a device may never end.
  """
  path = os.fspath(path)
  if is_remote(path):
    return path
  try:
    mode = os.stat(path).st_mode
  except FileNotFoundError:
    raise MissingFileError(f"{what} {path}: no such file") from None
  except OSError as error:  # a symlink loop, a path through a file, no permission
    raise FileCheckError(f"{what} {path}: cannot be read ({error.strerror or error})") from None
  if not stat.S_ISREG(mode):
    raise FileCheckError(f"{what} {path}: is {_kind(mode)}, not a regular file")
  return path


def file_size(path: str | os.PathLike) -> int:
  """Size in bytes of a local regular file (see `regular_file`)."""
  return os.stat(os.fspath(path)).st_size


DEFAULT_MAX_PIXELS = 100_000_000  # above a 100 MP camera's frames; `max_pixels` raises it


def open_image(path: str | os.PathLike, what: str = "image",
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
  """Opens and fully decodes `path` (upright per its EXIF tag), turning every failure into a
  `FileCheckError` naming `what` and the file.

  Only regular files are opened (a FIFO would block), and the size the header declares is
  checked against `max_pixels` before any pixel is decoded, so an image that would not fit is
  refused at the cost of reading its header. Pillow's own decompression-bomb limit still applies
  above it.
  """
  path = regular_file(path, f"{what} file")
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
      im = Image.open(path)
    with im:
      width, height = im.size
      if width * height > max_pixels:
        raise FileCheckError(f"{what} file {path}: {width}x{height} is "
                             f"{width * height / 1e6:.0f} megapixels, over the limit of "
                             f"{max_pixels / 1e6:.0f} (raise it with --max-pixels)")
      im.load()
      return ImageOps.exif_transpose(im)
  except ValueError as e:
    if str(e).startswith(f"{what} file {path}:"):
      raise
    raise FileCheckError(f"{what} file {path}: cannot decode it as an image ({e})") from None
  except (UnidentifiedImageError, OSError, SyntaxError, EOFError, MemoryError,
          Image.DecompressionBombError) as e:
    raise FileCheckError(f"{what} file {path}: cannot decode it as an image ({e})") from None


def read_npy(path: str | os.PathLike, what: str = "depth",
             max_elements: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
  """A `.npy` array, its header checked before anything is allocated: a regular, non-empty file
  whose declared shape fits in `max_elements` and in the bytes the file holds; no pickled
  objects. Failures are `FileCheckError`s naming `what` and the file."""
  path = regular_file(path, f"{what} file")
  where = f"{what} file {path}"
  size = file_size(path)
  if size == 0:
    raise FileCheckError(f"{where}: is empty (0 bytes)")
  try:
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, fortran, dtype = read_header(f)
      offset = f.tell()
      if dtype.hasobject:
        raise FileCheckError(f"{where}: holds Python objects, not numbers")
      count = int(np.prod(shape, dtype=np.int64)) if shape else 1
      if count > max_elements:
        raise FileCheckError(f"{where}: declares shape {shape} ({count} elements), over the "
                             f"limit of {max_elements} (raise it with --max-pixels)")
      if count * dtype.itemsize > size - offset:
        raise FileCheckError(f"{where}: declares shape {shape} of {dtype} "
                             f"({count * dtype.itemsize} bytes) but holds {size - offset} bytes "
                             "of data (truncated?)")
      a = np.fromfile(f, dtype=dtype, count=count)
    return a.reshape(shape, order="F" if fortran else "C")
  except ValueError as e:
    if str(e).startswith(where):
      raise
    raise FileCheckError(f"{where}: cannot read it as a .npy array ({e})") from None
  except (OSError, EOFError) as e:
    raise FileCheckError(f"{where}: cannot read it as a .npy array ({e})") from None
