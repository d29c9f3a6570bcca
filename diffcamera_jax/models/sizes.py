"""Named model sizes for the in-context DiT.

`B`, `L` and `XL` follow the DiT paper (Peebles & Xie, 2023). `S` is our CPU-laptop size, smaller
than DiT-S so that one training step of the default config runs well under a second on two CPU
cores; `tiny` is for tests.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelSize:
  """Transformer hyper-parameters that a size name fixes."""
  width: int  # token embedding dimension
  depth: int  # number of transformer blocks
  num_heads: int
  mlp_ratio: int = 4
  num_camera_tokens: int = 4

  @property
  def head_dim(self) -> int:
    return self.width // self.num_heads


SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(width=64, depth=2, num_heads=2, num_camera_tokens=2),
    "S": ModelSize(width=128, depth=4, num_heads=2),
    "B": ModelSize(width=768, depth=12, num_heads=12),
    "L": ModelSize(width=1024, depth=24, num_heads=16),
    "XL": ModelSize(width=1152, depth=28, num_heads=16),
}


def get_size(name: str) -> ModelSize:
  """Returns the named size; raises a ValueError listing the valid names otherwise."""
  if name not in SIZES:
    raise ValueError(f"model size {name!r} is unknown; expected one of {sorted(SIZES)}")
  size = SIZES[name]
  if size.width % size.num_heads or size.head_dim % 4:
    raise ValueError(f"model size {name!r}: head_dim must be a multiple of 4 for 2-D RoPE")
  return size
