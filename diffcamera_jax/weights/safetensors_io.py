"""Reading and writing `.safetensors` files with numpy only (no torch, no full-file reads).

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each tensor
name to `{dtype, shape, data_offsets}`, then the raw little-endian bytes. We memory-map the file,
so `read(name)` returns a lazy view: nothing is read from disk until a slice of it is used, and a
12B checkpoint never has to sit in host memory as a whole. Sharded checkpoints
(`model.safetensors.index.json` with a `weight_map` from tensor name to file) read the same way.

Paths with a scheme (`gs://...`, anything `etils.epath` opens) are streamed instead: the header
is read once and each tensor's byte range is read when asked for, so a checkpoint in a bucket
loads leaf by leaf without a local copy. `stream=True` takes that path for local files too.
"""
import json
import os
import struct
from collections.abc import Mapping

import ml_dtypes
import numpy as np
from etils import epath

_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2), "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32), "I16": np.dtype(np.int16), "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def is_remote(path: str) -> bool:
  """True for paths with a scheme (`gs://bucket/...`): read through `etils.epath`."""
  return "://" in str(path)


class SafetensorsFile:
  """One `.safetensors` file: header parsed at open, tensors memory-mapped (local) or read by
  byte range (remote, or `stream=True`) on demand."""

  def __init__(self, path: str, stream: bool | None = None):
    self.path = str(path)
    self.stream = is_remote(self.path) if stream is None else bool(stream)
    with self._open() as f:
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
    total = epath.Path(path).stat().length if self.stream else os.path.getsize(path)
    available = total - self._data_start
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

  def _open(self):
    return epath.Path(self.path).open("rb") if self.stream else open(self.path, "rb")

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
    """Tensor `name`, read-only: a memory-mapped view (no bytes are read until used), or, when
    streaming, its byte range read now."""
    entry = self._entry(name)
    dtype = self.dtype(name)
    begin, end = entry["data_offsets"]
    shape = tuple(entry["shape"])
    if end - begin != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
      raise ValueError(f"{self.path}: tensor {name!r} byte range does not match its shape")
    if self.stream:
      with self._open() as f:
        f.seek(self._data_start + begin)
        data = f.read(end - begin)
      if len(data) != end - begin:
        raise ValueError(f"{self.path}: tensor {name!r} is cut short (truncated file)")
      return np.frombuffer(data, dtype).reshape(shape)
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
  """A single `.safetensors` file, a sharded checkpoint's `*.index.json`, or a directory, local
  (memory-mapped) or remote (`gs://...`, streamed; `stream=True` streams local files too).

  A directory must hold exactly one index file or exactly one `.safetensors` file.
  """

  def __init__(self, path: str, stream: bool | None = None):
    path = os.fspath(path)
    stream = is_remote(path) if stream is None else bool(stream)
    where = epath.Path(path)
    if where.is_dir():
      path = _pick_in_directory(path)
    elif not where.exists():
      raise FileNotFoundError(f"no such checkpoint: {path}")
    self.path = path
    self._files: dict[str, SafetensorsFile] = {}
    self._where: dict[str, str] = {}
    if path.endswith(".json"):
      index = json.loads(epath.Path(path).read_text())
      if "weight_map" not in index:
        raise ValueError(f"{path}: index file has no 'weight_map'")
      base = epath.Path(path).parent
      for name, file in index["weight_map"].items():
        self._where[name] = str(base / file)
      for file in sorted(set(self._where.values())):
        self._files[file] = SafetensorsFile(file, stream)
        missing = [n for n, f in self._where.items() if f == file
                   and n not in set(self._files[file].names())]
        if missing:
          raise ValueError(f"{path}: index lists {missing[:5]} in {file}, which lacks them")
      self._metadata = dict(index.get("metadata") or {})
    else:
      single = SafetensorsFile(path, stream)
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
  files = sorted(p.name for p in epath.Path(path).iterdir())
  index = [f for f in files if f.endswith(".safetensors.index.json")]
  if len(index) == 1:
    return str(epath.Path(path) / index[0])
  single = [f for f in files if f.endswith(".safetensors")]
  if not index and len(single) == 1:
    return str(epath.Path(path) / single[0])
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
