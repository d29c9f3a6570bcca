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
import re
import struct
from collections.abc import Mapping

import ml_dtypes
import numpy as np
from etils import epath

from diffcamera_jax import user_files

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


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string, escapes included


def _structure_ok(blob: bytes, chunk: int = 1 << 22) -> bool:
  """Whether the JSON `blob`, string contents aside, nests no deeper than a safetensors header
  (object -> entry -> list) and holds no more lists than its entries need: checked on the bytes,
  in chunks, so a header of millions of nested or empty lists is refused before Python builds
  them."""
  bare = _STRINGS.sub(b'""', blob)
  if bare.count(b"[") > 2 * bare.count(b"{"):
    return False
  depth = 0
  for start in range(0, len(bare), chunk):
    part = np.frombuffer(bare, np.uint8, count=min(chunk, len(bare) - start), offset=start)
    step = ((part == ord("[")) | (part == ord("{"))).astype(np.int32) - (
        (part == ord("]")) | (part == ord("}"))).astype(np.int32)
    running = depth + np.cumsum(step)
    if running.size and int(running.max()) > 3:
      return False
    depth = int(running[-1]) if running.size else depth
  return True


def _whole(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def check_header(path: str, blob: bytes, available: int) -> tuple[dict, dict]:
  """The parsed header `blob` of `path` as (metadata, {name: entry}), every entry checked: an
  object with a string dtype, a shape of non-negative integers, integer data offsets within the
  `available` data bytes matching shape x dtype size, and no two tensors' bytes overlapping.
  Raises ValueError naming the file (and the tensor) otherwise."""
  if not _structure_ok(blob):
    raise ValueError(f"{path}: malformed safetensors header (nested deeper than "
                     "name -> {dtype, shape, data_offsets})")
  header = user_files.parse_json(blob, f"{path}: safetensors header")
  if not isinstance(header, dict):
    raise ValueError(f"{path}: malformed safetensors header (a JSON {type(header).__name__}, "
                     "not an object)")
  metadata = header.pop("__metadata__", None) or {}
  if not isinstance(metadata, dict):
    raise ValueError(f"{path}: malformed safetensors header (__metadata__ is a "
                     f"{type(metadata).__name__}, not an object)")
  spans = []
  for name, entry in header.items():
    bad = lambda why, name=name: ValueError(
        f"{path}: malformed safetensors header (tensor {name!r}: {why})")
    if not isinstance(entry, dict):
      raise bad(f"a {type(entry).__name__}, not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
      raise bad(f"dtype {dtype!r} is not a string")
    if not isinstance(shape, list) or not all(_whole(n) and n >= 0 for n in shape):
      raise bad(f"shape {shape!r} is not a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_whole, offsets))
        or not 0 <= offsets[0] <= offsets[1]):
      raise bad(f"data_offsets {offsets!r} are not two integers 0 <= begin <= end")
    if dtype in _DTYPES:
      need = int(np.prod(shape, dtype=object)) * _DTYPES[dtype].itemsize
      if offsets[1] - offsets[0] != need:
        raise bad(f"{offsets[1] - offsets[0]} bytes for shape {shape} of {dtype} ({need} bytes)")
    spans.append((offsets[0], offsets[1], name))
  beyond = sorted(name for _, end, name in spans if end > available)
  if beyond:
    raise ValueError(f"{path}: truncated: the data of tensor(s) {beyond[:5]}"
                     f"{' ...' if len(beyond) > 5 else ''} lies beyond the end of the file "
                     f"({available} bytes of tensor data present)")
  spans.sort()
  for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
    if begin < end:
      raise ValueError(f"{path}: malformed safetensors header (tensors {first!r} and "
                       f"{second!r} share bytes)")
  return metadata, header


class SafetensorsFile:
  """One `.safetensors` file: header parsed at open, tensors memory-mapped (local) or read by
  byte range (remote, or `stream=True`) on demand."""

  def __init__(self, path: str, stream: bool | None = None):
    self.path = str(path)
    self.stream = is_remote(self.path) if stream is None else bool(stream)
    if not is_remote(self.path):
      user_files.regular_file(self.path, "weights file")
    total = epath.Path(path).stat().length if is_remote(self.path) else os.path.getsize(path)
    with self._open() as f:
      raw = f.read(8)
      if len(raw) != 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
      (size,) = struct.unpack("<Q", raw)
      if size > min(_MAX_HEADER, total - 8):
        raise ValueError(f"{path}: header length {size} is implausible for a file of {total} "
                         "bytes; not a safetensors file?")
      blob = f.read(size)
    self._data_start = 8 + size
    self._metadata, self._entries = check_header(self.path, blob, total - self._data_start)
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
    elif not is_remote(path):
      user_files.regular_file(path, "checkpoint")
    elif not where.exists():
      raise FileNotFoundError(f"no such checkpoint: {path}")
    self.path = path
    self._files: dict[str, SafetensorsFile] = {}
    self._where: dict[str, str] = {}
    if path.endswith(".json"):
      index = user_files.read_json_object(path, "checkpoint index")
      weight_map = index.get("weight_map")
      if not isinstance(weight_map, dict) or not all(
          isinstance(f, str) and f for f in weight_map.values()):
        raise ValueError(f"{path}: index file needs a 'weight_map' object of tensor name -> "
                         "file name")
      base = epath.Path(path).parent
      for name, file in weight_map.items():
        self._where[name] = str(base / file)
      for file in sorted(set(self._where.values())):
        self._files[file] = SafetensorsFile(file, stream)
        missing = [n for n, f in self._where.items() if f == file
                   and n not in set(self._files[file].names())]
        if missing:
          raise ValueError(f"{path}: index lists {missing[:5]} in {file}, which lacks them")
      metadata = index.get("metadata") or {}
      if not isinstance(metadata, dict):
        raise ValueError(f"{path}: index 'metadata' must be an object")
      self._metadata = dict(metadata)
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
