"""Reading and writing `.safetensors` files with numpy only (no torch, no full-file reads).

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each tensor
name to `{dtype, shape, data_offsets}`, then the raw little-endian bytes. We memory-map the file,
so `read(name)` returns a lazy view: nothing is read from disk until a slice of it is used, and a
12B checkpoint never has to sit in host memory as a whole. Sharded checkpoints
(`model.safetensors.index.json` with a `weight_map` from tensor name to file) read the same way.
"""
import json
import os
import struct
from collections.abc import Mapping

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsFile:
  """One `.safetensors` file: header parsed at open, tensors memory-mapped on demand."""

  def __init__(self, path: str):
    self.path = path
    with open(path, "rb") as f:
      raw = f.read(8)
      if len(raw) != 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
      (size,) = struct.unpack("<Q", raw)
      if size > _MAX_HEADER:
        raise ValueError(f"{path}: header length {size} is implausible; not a safetensors file?")
      try:
        header = json.loads(f.read(size))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}: unreadable safetensors header ({e})") from None
    self._data_start = 8 + size
    self._metadata = header.pop("__metadata__", None) or {}
    self._entries = header
    available = os.path.getsize(path) - self._data_start
    try:
      beyond = sorted(n for n, e in header.items() if int(e["data_offsets"][1]) > available)
    except (KeyError, TypeError, IndexError, ValueError):
      raise ValueError(f"{path}: malformed safetensors header (entries need data_offsets)"
                       ) from None
    if beyond:
      raise ValueError(f"{path}: truncated: the data of tensor(s) {beyond[:5]}"
                       f"{' ...' if len(beyond) > 5 else ''} lies beyond the end of the file "
                       f"({available} bytes of tensor data present)")
    self._mmap = None

  def names(self) -> list[str]:
    return list(self._entries)

  def metadata(self) -> dict[str, str]:
    return dict(self._metadata)

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self._entry(name)["shape"])

  def dtype(self, name: str) -> np.dtype:
    code = self._entry(name)["dtype"]
    if code not in _DTYPES:
      raise ValueError(f"{self.path}: tensor {name!r} has unsupported dtype {code}")
    return _DTYPES[code]

  def read(self, name: str) -> np.ndarray:
    """A read-only memory-mapped view of tensor `name` (no bytes are read until used)."""
    entry = self._entry(name)
    dtype = self.dtype(name)
    begin, end = entry["data_offsets"]
    shape = tuple(entry["shape"])
    if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
      raise ValueError(f"{self.path}: tensor {name!r} byte range does not match its shape")
    if self._mmap is None:
      self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
    buf = self._mmap[self._data_start + begin:self._data_start + end]
    return buf.view(dtype).reshape(shape)

  def _entry(self, name: str) -> dict:
    try:
      return self._entries[name]
    except KeyError:
      raise KeyError(f"{self.path}: no tensor named {name!r}") from None


class SafetensorsCheckpoint:
  """A single `.safetensors` file, a sharded checkpoint's `*.index.json`, or a directory.

  A directory must hold exactly one index file or exactly one `.safetensors` file.
  """

  def __init__(self, path: str):
    path = os.fspath(path)
    if os.path.isdir(path):
      path = _pick_in_directory(path)
    if not os.path.exists(path):
      raise FileNotFoundError(f"no such checkpoint: {path}")
    self.path = path
    self._files: dict[str, SafetensorsFile] = {}
    self._where: dict[str, str] = {}
    if path.endswith(".json"):
      with open(path) as f:
        index = json.load(f)
      if "weight_map" not in index:
        raise ValueError(f"{path}: index file has no 'weight_map'")
      base = os.path.dirname(path)
      for name, file in index["weight_map"].items():
        self._where[name] = os.path.join(base, file)
      for file in sorted(set(self._where.values())):
        self._files[file] = SafetensorsFile(file)
        missing = [n for n, f in self._where.items() if f == file
                   and n not in set(self._files[file].names())]
        if missing:
          raise ValueError(f"{path}: index lists {missing[:5]} in {file}, which lacks them")
      self._metadata = dict(index.get("metadata") or {})
    else:
      single = SafetensorsFile(path)
      self._files[path] = single
      self._where = {n: path for n in single.names()}
      self._metadata = single.metadata()

  def names(self) -> list[str]:
    return list(self._where)

  def __contains__(self, name: str) -> bool:
    return name in self._where

  def metadata(self) -> dict[str, str]:
    return {str(k): str(v) for k, v in self._metadata.items()}

  def shape(self, name: str) -> tuple[int, ...]:
    return self._file(name).shape(name)

  def dtype(self, name: str) -> np.dtype:
    return self._file(name).dtype(name)

  def read(self, name: str) -> np.ndarray:
    return self._file(name).read(name)

  def _file(self, name: str) -> SafetensorsFile:
    try:
      return self._files[self._where[name]]
    except KeyError:
      raise KeyError(f"{self.path}: no tensor named {name!r}") from None


def _pick_in_directory(path: str) -> str:
  files = sorted(os.listdir(path))
  index = [f for f in files if f.endswith(".safetensors.index.json")]
  if len(index) == 1:
    return os.path.join(path, index[0])
  single = [f for f in files if f.endswith(".safetensors")]
  if not index and len(single) == 1:
    return os.path.join(path, single[0])
  raise ValueError(f"{path}: expected one *.safetensors.index.json or one *.safetensors file, "
                   f"found {index + single}")


def save_file(path: str, tensors: Mapping[str, np.ndarray],
              metadata: Mapping[str, str] | None = None) -> None:
  """Writes `tensors` (numpy arrays, any supported dtype) to `path` in safetensors format."""
  header: dict = {}
  if metadata:
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
  offset = 0
  arrays = []
  for name in sorted(tensors):
    array = np.ascontiguousarray(np.asarray(tensors[name]))
    if array.dtype not in _NAMES:
      raise ValueError(f"save_file: tensor {name!r} has unsupported dtype {array.dtype}")
    header[name] = {"dtype": _NAMES[array.dtype], "shape": list(array.shape),
                    "data_offsets": [offset, offset + array.nbytes]}
    offset += array.nbytes
    arrays.append(array)
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)  # 8-byte alignment of the data section, as the format advises
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for array in arrays:
      f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
