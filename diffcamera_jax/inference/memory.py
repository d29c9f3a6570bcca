"""Memory budgets of a refocusing call: the accelerator's (compiled programs) and the host's.

Programs are planned, not guessed: each is compiled ahead of time and its memory plan read
(`compiled_bytes`); a call's host arrays are bounded by `host_bytes`, measured
(`benchmarks/host_memory.py`).
"""
from __future__ import annotations

import os
import re

import jax

_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}

# Host bytes a call holds per photo pixel (the photo, its disparity, the deblurred photo, the
# band-split copies and the full-resolution render's buffers, which on a CPU live in host memory
# too) and per frame and pixel (the frame, its render, the composition's temporaries). Measured
# peak RSS growth (benchmarks/host_memory.py, 1.5 and 6 megapixels, 1 and 4 frames, with and
# without the optics pre-pass) stays below these plus a fixed part (compiling the programs for
# the photo's size).
HOST_BYTES_FIXED = 256 * 2 ** 20
HOST_BYTES_PER_PIXEL = 80
HOST_BYTES_PER_FRAME_PIXEL = 84


class MemoryBudgetError(ValueError):
  """A call needs more memory than its budget allows, even one frame at a time."""


def parse_bytes(text: str) -> int:
  """`"8G"`, `"512M"`, `"1.5G"` or a plain byte count -> bytes (binary units); ValueError else."""
  match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
  if not match:
    raise ValueError(f"expected a size like 8G, 512M or 1.5G, got {text!r}")
  value = float(match.group(1)) * _UNITS[match.group(2).upper()]
  if value < 2 ** 20:
    raise ValueError(f"a memory budget below 1M cannot hold a frame, got {text!r}")
  return int(value)


def host_budget() -> int:
  """Host memory a call may use: half of what is available now."""
  try:
    return int(0.5 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
  except (ValueError, OSError):
    return 4 * 2 ** 30


def default_memory_budget() -> int:
  """Bytes the inference programs may plan for: 80 % of the first accelerator's memory limit, or
  `host_budget` on a CPU backend."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
      return int(0.8 * stats["bytes_limit"])
  return host_budget()


def host_bytes(image_hw: tuple[int, int], frames: int) -> int:
  """Host memory a call on one photo of `image_hw` with `frames` cameras plans for."""
  pixels = int(image_hw[0]) * int(image_hw[1])
  return HOST_BYTES_FIXED + pixels * (HOST_BYTES_PER_PIXEL + frames * HOST_BYTES_PER_FRAME_PIXEL)


def check_host(image_hw: tuple[int, int], frames: int, budget: int) -> int:
  """`host_bytes` of a call; MemoryBudgetError when over `budget`."""
  need = host_bytes(image_hw, frames)
  if need > budget:
    raise MemoryBudgetError(
        f"a {image_hw[1]}x{image_hw[0]} photo with {frames} frame(s) needs "
        f"{need / 2 ** 30:.2f} GiB of host memory, over its {budget / 2 ** 30:.2f} GiB "
        "budget (half the host memory available): ask for fewer frames or pass a smaller photo")
  return need


def compiled_bytes(compiled) -> int:
  """Peak bytes of a compiled XLA program: arguments + temporaries + outputs (less aliasing)."""
  m = compiled.memory_analysis()
  if m is None:  # a backend without the analysis: assume it fits
    return 0
  return int(m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
             - m.alias_size_in_bytes)


__all__ = ["MemoryBudgetError", "check_host", "compiled_bytes", "default_memory_budget",
           "host_budget", "host_bytes", "parse_bytes"]
