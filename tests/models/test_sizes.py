"""Named sizes and the analytic FLOP count (checked against XLA's cost analysis)."""
import flax.linen as nn
import jax
import pytest

from diffcamera_jax.models import example_inputs
from diffcamera_jax.models.dit import DiT
from diffcamera_jax.models.latents import LatentCodec
from diffcamera_jax.models.sizes import SIZES, ModelSize, dit_forward_flops, get_size


def test_named_sizes_grow_and_unknown_names_fail():
  widths = [SIZES[n].width for n in ("tiny", "S", "B", "L", "XL")]
  assert widths == sorted(widths)
  assert get_size("XL").head_dim == 72
  with pytest.raises(ValueError, match="'M'"):
    get_size("M")


@pytest.mark.parametrize("depth_mode", ["fold", "tokens"])
def test_analytic_forward_flops_match_xla(depth_mode):
  size = ModelSize(width=128, depth=2, num_heads=2, num_camera_tokens=3)
  model = DiT(size, patch_size=4, depth_mode=depth_mode)
  inputs = example_inputs(LatentCodec(params=None), (32, 48), batch_size=2)
  params = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"])
  xla = jax.jit(model.apply).lower({"params": params}, *inputs).cost_analysis()["flops"]
  analytic = dit_forward_flops(size, grid_tokens=8 * 12, patch_dim=48, depth_patch_dim=16,
                               depth_mode=depth_mode)
  assert xla / (2 * (analytic["embed"] + analytic["body"])) == pytest.approx(1.0, abs=0.10)


def test_unknown_activation_is_named():
  model = DiT(get_size("tiny"), patch_size=4, mlp_activation="swish9")
  with pytest.raises(ValueError, match="mlp_activation"):
    jax.eval_shape(model.init, jax.random.key(0),
                   *example_inputs(LatentCodec(params=None), (16, 16)))
