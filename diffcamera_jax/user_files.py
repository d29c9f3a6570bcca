"""The files a user names: read only regular files, never write over an input, write atomically.

Every check raises a `ValueError` (`cli.UserError`, or `checked_files.FileCheckError` from the
reading side, re-exported here) whose message names the flag and the path, so the programs report
it as one line with exit code 2. Paths with a scheme (`gs://...`) are left to `etils.epath`: a
bucket holds no FIFOs, and its objects are replaced whole.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Iterator, Mapping

from etils import epath

from data_pipeline.checked_files import (MissingFileError, file_size, is_remote,  # noqa: F401
                                         regular_file)
from diffcamera_jax.cli import UserError


def _same(a: str, b: str) -> bool:
  if os.path.realpath(a) == os.path.realpath(b):
    return True
  try:
    return os.path.samefile(a, b)  # hard links, bind mounts
  except OSError:
    return False


def refuse_overwriting(outputs: Mapping[str, str], inputs: Mapping[str, str | None]) -> None:
  """Raises `UserError` when an output path names an input file, another output, or an existing
  directory. `outputs` and `inputs` map a label (e.g. `"--out"`, `"frame 0"`) to a path; inputs
  that are None (not given) are skipped; a directory input covers the files inside it."""
  seen: dict[str, str] = {}
  for label, out in outputs.items():
    if is_remote(out):
      continue
    if os.path.isdir(out):
      raise UserError(f"{label} {out}: is an existing directory, not a file to write")
    real = os.path.realpath(out)
    if real in seen:
      raise UserError(f"{label} {out}: is also {seen[real]}; the outputs would overwrite each other")
    seen[real] = label
    for name, given in inputs.items():
      if given is None or is_remote(given):
        continue
      inside = os.path.isdir(given) and real.startswith(os.path.realpath(given) + os.sep)
      if inside or (os.path.exists(out) and _same(out, given)) or real == os.path.realpath(given):
        raise UserError(f"{label} {out}: would overwrite the input {name} {given}")


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary path in `path`'s folder; when the block succeeds it is renamed to `path`
  (so a reader never sees half a file and a failure leaves any earlier `path` as it was), and when
  it fails the temporary file is removed. The temporary name keeps `path`'s extension, for writers
  that choose the format from it."""
  path = os.fspath(path)
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  stem, ext = os.path.splitext(os.path.basename(path))
  fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{ext}", dir=folder)
  os.close(fd)
  os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the output gets the usual mode
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


MAX_JSON_BYTES = 64 * 1024 * 1024  # a model config or checkpoint index; real ones are < 1 MB


def parse_json(text: bytes | str, where: str) -> object:
  """JSON `text` as Python values; `UserError` naming `where` when it is not UTF-8, not JSON, or
  nested too deeply for the parser."""
  try:
    if isinstance(text, bytes):
      text = text.decode("utf-8")
    return json.loads(text)
  except UnicodeDecodeError as error:
    raise UserError(f"{where}: is not UTF-8 text (byte {error.start})") from None
  except json.JSONDecodeError as error:
    raise UserError(f"{where}: is not valid JSON ({error.msg} at line {error.lineno} "
                    f"column {error.colno})") from None
  except RecursionError:
    raise UserError(f"{where}: JSON nested too deeply") from None


def read_json_object(path: str | os.PathLike, what: str,
                     max_bytes: int = MAX_JSON_BYTES) -> dict:
  """A local or remote JSON file that must hold an object (a dict); `UserError` naming `what` and
  the path for a non-regular file, one over `max_bytes`, bad text or another top-level type."""
  path = os.fspath(path)
  where = f"{what} {path}"
  if is_remote(path):
    data = epath.Path(path).read_bytes()
  else:
    regular_file(path, what)
    if file_size(path) > max_bytes:
      raise UserError(f"{where}: {file_size(path)} bytes is too large for a JSON {what}")
    with open(path, "rb") as f:
      data = f.read()
  value = parse_json(data, where)
  if not isinstance(value, dict):
    raise UserError(f"{where}: must hold a JSON object, got {type(value).__name__}")
  return value
