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
    "S": ModelSize(width=128, depth=2, num_heads=2),
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


def dit_forward_flops(size: ModelSize, grid_tokens: int, patch_dim: int, depth_patch_dim: int,
                      depth_mode: str = "fold", camera_features: int = 6,
                      camera_frequencies: int = 8) -> dict[str, float]:
  """Analytic matmul FLOPs (2 per multiply-add) of one DiT forward pass on one sequence.

  `grid_tokens`: target tokens N; `patch_dim`: values per latent patch (p*p*C);
  `depth_patch_dim`: disparity values per depth patch. Returns `embed` (the input projections,
  whose input gradients a train step does not need) and `body` (everything else: blocks,
  attention scores and mixing, final layer, conditioning). Elementwise work is not counted.
  """
  w, n, depth = size.width, grid_tokens, size.depth
  streams = 2 if depth_mode == "fold" else 3
  length = size.num_camera_tokens + streams * n
  fourier = camera_features * (2 * camera_frequencies + 1)
  embed = (2.0 * n * w * (2 * patch_dim + depth_patch_dim)
           + 2.0 * fourier * size.num_camera_tokens * w)
  per_block = (2.0 * length * w * (3 * w + w + 2 * size.mlp_ratio * w)  # qkv, out, mlp
               + 4.0 * length * length * w  # q.k^T and attention-weighted values
               + 2.0 * w * 6 * w)  # adaLN modulation
  final = 2.0 * n * w * patch_dim + 2.0 * w * 2 * w
  timestep = 2.0 * 256 * w + 2.0 * w * w
  return {"embed": embed, "body": depth * per_block + final + timestep}


def dit_train_flops(forward: dict[str, float], num_sequences: int) -> float:
  """FLOPs of forward + backward over `num_sequences`: the backward costs twice the forward,
  except that the input projections need only their weight gradients (once)."""
  return num_sequences * (3.0 * forward["body"] + 2.0 * forward["embed"])
