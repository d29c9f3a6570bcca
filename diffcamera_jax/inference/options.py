"""How a loaded model refocuses: the caller's choices, kept apart from what training fixed.

The exported config records training (the model, its objective, its data); everything here is
chosen per use and has a flag in `refocus` and `evaluate`.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
  """Inference settings of a `Refocuser`.

  `optics_prepass`: deblur the photo first where the optics explain its blur
  (`physics_deblur`: the camera that explains it, with a disparity map; one disk, without), so
  the model starts from an all-in-focus photo. Not learned: the benchmark reports it as its own
  method row ("optics deblur + model").
  `camera_search_threshold`: residual ratio below which a camera explains the photo.
  `uniform_search_min_gain`: evidence (log-likelihood gain per frequency) a uniform disk needs.
  `max_side`: the working resolution's longer side (None: the trained size).
  `batch_size`: most frames per sampling batch. `num_steps`: Euler steps (None: the export's
  `objective.sample_steps`). `max_memory`: bytes the compiled programs may plan for (None: 80 %
  of the accelerator's, half the free host memory on a CPU). `full_resolution`: compose frames
  at the photo's size (`compose`), else upscale the working frame.
  """

  optics_prepass: bool = True
  camera_search_threshold: float = 0.04
  uniform_search_min_gain: float = 0.65
  max_side: int | None = None
  batch_size: int = 8
  num_steps: int | None = None
  max_memory: int | None = None
  full_resolution: bool = True

  def __post_init__(self):
    if self.max_side is not None and int(self.max_side) < 8:
      raise ValueError(f"max_side must be >= 8 pixels, got {self.max_side}")
    if int(self.batch_size) < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
    if self.num_steps is not None and int(self.num_steps) < 1:
      raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
    if self.max_memory is not None and int(self.max_memory) < 2 ** 20:
      raise ValueError(f"max_memory must be at least 1 MiB, got {self.max_memory} bytes")
    for name in ("camera_search_threshold", "uniform_search_min_gain"):
      if not float(getattr(self, name)) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


__all__ = ["InferenceOptions"]
