"""Suite-wide setup: one persistent XLA compilation cache for the test session and the programs
its tests start, so the many short training runs compile each program once, not once each; and
the in-memory compiled programs released after each test module.

A cache directory the caller already set (`JAX_COMPILATION_CACHE_DIR`) is used as it is.

Each program XLA:CPU compiles keeps its code in its own small memory mappings. Kept for the
whole session, the suite's programs pass the kernel's limit on mappings per process
(`vm.max_map_count`, 65 530 by default) and the process dies in the next compilation; releasing
them per module keeps the peak to what one module needs (about half the limit for the largest);
a later module reloads what it needs from the disk cache.
"""
import gc
import os
import shutil
import tempfile

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
