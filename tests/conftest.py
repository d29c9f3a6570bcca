"""Suite-wide setup: one persistent XLA compilation cache for the test session and the programs
its tests start, so the many short training runs compile each program once, not once each.

A cache directory the caller already set (`JAX_COMPILATION_CACHE_DIR`) is used as it is.
"""
import os
import shutil
import tempfile

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


def pytest_unconfigure(config):
  del config
  for cache in _CREATED:
    shutil.rmtree(cache, ignore_errors=True)
