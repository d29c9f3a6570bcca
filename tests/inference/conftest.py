"""Shared inputs of the inference tests."""
import numpy as np
import pytest


@pytest.fixture
def layered_disparity():
  """`(h, w) -> [h, w]` disparity of three flat layers in a blocky pattern (exact for strips)."""
  def make(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.full((h, w), 0.2, np.float32)
    d[(yy // 50 + xx // 60) % 3 == 1] = 0.5
    d[(yy // 45 + xx // 35) % 4 == 0] = 0.9
    return d
  return make
