"""Suite-wide setup: one persistent XLA compilation cache for the test session and the programs
its tests start, so the many short training runs compile each program once, not once each; the
in-memory compiled programs released after each test module; and `build_once`, for fixtures that
several test files share (a training run, say), built once per session even when the suite runs
in several worker processes (pytest-xdist).

A cache directory the caller already set (`JAX_COMPILATION_CACHE_DIR`) is used as it is.

Each program XLA:CPU compiles keeps its code in its own small memory mappings. Kept for the
whole session, the suite's programs pass the kernel's limit on mappings per process
(`vm.max_map_count`, 65 530 by default) and the process dies in the next compilation; releasing
them per module keeps the peak to what one module needs (about half the limit for the largest);
a later module reloads what it needs from the disk cache.
"""
import fcntl
import gc
import os
import pathlib
import shutil
import tempfile
from typing import Callable

import pytest

_CREATED = []


def pytest_configure(config):
  del config
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  cache = tempfile.mkdtemp(prefix="diffcamera-jax-cache-")
  _CREATED.append(cache)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_collection_modifyitems(config, items):
  """Test files with end-to-end (`slow`) tests first, the rest in their order: parallel workers
  then start on the long files and end on short ones, instead of one long file finishing alone."""
  del config
  slow_files = {item.path for item in items if item.get_closest_marker("slow")}
  items.sort(key=lambda item: item.path not in slow_files)


def pytest_unconfigure(config):
  del config
  for cache in _CREATED:
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  yield
  import jax  # here, not at the top: JAX reads the cache settings above when first imported
  jax.clear_caches()
  gc.collect()


@pytest.fixture(scope="session")
def build_once(tmp_path_factory) -> Callable[[str, Callable[[pathlib.Path], None]], pathlib.Path]:
  """`build_once(name, make)`: the folder `make(folder)` filled, built by the first worker that
  asks and reused by every other test and worker of this session. Users must not modify it.

  Under pytest-xdist each worker has its own temporary root below the session's; the folder sits
  in that shared parent, and a file lock makes the others wait while one builds. A failed build
  leaves no mark, so the next user builds again (and fails the same way, with its own report).
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent

  def build(name: str, make: Callable[[pathlib.Path], None]) -> pathlib.Path:
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with open(root / f"shared-{name}.lock", "w") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        make(folder)
        done.touch()
    return folder

  return build
