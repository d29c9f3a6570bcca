"""Checkpoint loading: problems reported by name, target dtype, placement into a sharding."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcamera_jax import weights
from diffcamera_jax.models import flux
from diffcamera_jax.weights import safetensors_io as sio

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _abstract(transformer_config, transformer_io, dtype=jnp.float32):
  model = flux.FluxTransformer(flux.FluxConfig.from_diffusers(transformer_config),
                               param_dtype=dtype)
  io = transformer_io
  return jax.eval_shape(model.init, jax.random.key(0), io["img"], io["img_ids"], io["txt"],
                        io["txt_ids"], io["timesteps"], io["y"], io["guidance"])["params"]


def test_missing_extra_and_misshapen_tensors_are_all_named(tmp_path, fixtures_dir,
                                                           transformer_config, transformer_io):
  src = sio.SafetensorsCheckpoint(os.path.join(fixtures_dir, "transformer_original.safetensors"))
  tensors = {n: np.array(src.read(n)) for n in src.names()}
  del tensors["double_blocks.1.txt_attn.qkv.bias"]
  tensors["double_blocks.0.img_attn.bogus.weight"] = np.zeros((2, 2), np.float32)
  tensors["img_in.weight"] = np.zeros((32, 15), np.float32)
  path = str(tmp_path / "broken.safetensors")
  sio.save_file(path, tensors)
  with pytest.raises(ValueError) as err:
    weights.load_flux_transformer(path, _abstract(transformer_config, transformer_io))
  message = str(err.value)
  assert "missing tensor(s) ['double_blocks.1.txt_attn.qkv.bias']" in message
  assert "double_blocks.0.img_attn.bogus.weight" in message
  assert "wrong shape for params leaf img_in/kernel" in message and "(15, 32)" in message


def test_layout_mismatch_and_non_flux_files_raise(tmp_path, fixtures_dir, transformer_config,
                                                  transformer_io):
  abstract = _abstract(transformer_config, transformer_io)
  with pytest.raises(ValueError, match="'diffusers' layout"):
    weights.load_flux_transformer(os.path.join(fixtures_dir, "transformer"), abstract,
                                  layout="original")
  path = str(tmp_path / "other.safetensors")
  sio.save_file(path, {"w": np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match="not a FLUX transformer checkpoint"):
    weights.load_flux_transformer(path, abstract)


def test_prefixed_original_file_and_target_dtype(tmp_path, fixtures_dir, transformer_config,
                                                 transformer_io):
  src = sio.SafetensorsCheckpoint(os.path.join(fixtures_dir, "transformer_original.safetensors"))
  path = str(tmp_path / "comfy.safetensors")
  sio.save_file(path, {f"model.diffusion_model.{n}": np.array(src.read(n)) for n in src.names()})
  params = weights.load_flux_transformer(
      path, _abstract(transformer_config, transformer_io, jnp.bfloat16))
  kernel = params["double_blocks_0"]["img_attn"]["qkv"]["kernel"]
  assert kernel.dtype == jnp.bfloat16
  expected = np.array(src.read("double_blocks.0.img_attn.qkv.weight")).T
  np.testing.assert_array_equal(np.asarray(kernel), expected.astype(jnp.bfloat16))


def test_leaves_are_placed_into_the_target_sharding(fixtures_dir):
  script = textwrap.dedent(f"""
    import json, os, jax, numpy as np, flax.linen as nn
    from diffcamera_jax.configs import default
    from diffcamera_jax import weights, sharding
    from diffcamera_jax.models import flux
    F = {os.path.abspath(fixtures_dir)!r}
    config = default.get_config(); config.mesh.shape = (1, 4, 1)
    mesh = sharding.make_mesh(config); rules = sharding.logical_rules(config)
    cfg = flux.FluxConfig.from_diffusers(json.load(open(F + "/transformer/config.json")))
    model = flux.FluxTransformer(cfg, scan_layers=True)
    args = (np.zeros((1, 8, 16)), np.zeros((8, 3)), np.zeros((1, 2, 24)), np.zeros((2, 3)),
            np.zeros(1), np.zeros((1, 12)), np.zeros(1))
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      boxed = jax.eval_shape(model.init, jax.random.key(0), *args)["params"]
    shardings = sharding.logical_shardings(boxed, mesh, rules)
    placed = weights.load_flux_transformer(F + "/transformer", boxed, shardings=shardings)
    plain = weights.load_flux_transformer(F + "/transformer", boxed)
    for a, b, s in zip(jax.tree.leaves(placed), jax.tree.leaves(plain), jax.tree.leaves(shardings)):
      assert a.sharding == s, (a.sharding, s)
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    qkv = placed["double_blocks"]["img_attn"]["qkv"]["kernel"]
    assert qkv.shape == (2, 32, 96) and len({{d.device for d in qkv.addressable_shards}}) == 4
    assert qkv.addressable_shards[0].data.shape == (2, 8, 96), qkv.addressable_shards[0].data.shape
    print("OK")
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu", PYTHONPATH=os.path.abspath(ROOT))
  result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, cwd=os.path.abspath(ROOT))
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_streamed_reading_gives_the_same_params_one_tensor_at_a_time(
    fixtures_dir, transformer_config, transformer_io, monkeypatch):
  """The bucket path (`gs://`, any `etils.epath` path) streams each tensor's byte range; taken
  here on local files (`stream=True`): the sharded diffusers transformer loads exactly as
  memory-mapped, and no read spans more than one tensor."""
  reads = []
  real_open = sio.SafetensorsFile._open

  def counting_open(self):
    handle = real_open(self)
    if self.stream:
      read = handle.read
      handle.read = lambda n=-1: reads.append(n) or read(n)
    return handle

  monkeypatch.setattr(sio.SafetensorsFile, "_open", counting_open)
  abstract = _abstract(transformer_config, transformer_io)
  path = os.path.join(fixtures_dir, "transformer")
  mapped = weights.load_flux_transformer(path, abstract)
  streamed = weights.load_flux_transformer(path, abstract, stream=True)
  jax.tree_util.tree_map(np.testing.assert_array_equal, streamed, mapped)
  ckpt = sio.SafetensorsCheckpoint(path, stream=True)
  largest = max(int(np.prod(ckpt.shape(n))) * ckpt.dtype(n).itemsize for n in ckpt.names())
  assert reads and -1 not in reads and max(reads) <= max(largest, 1 << 20)
  assert sio.is_remote("gs://bucket/flux1-dev.safetensors") and not sio.is_remote(path)


def test_text_embeddings_read_through_epath(tmp_path):
  from diffcamera_jax.models import flux_diffcamera
  txt = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
  np.savez(tmp_path / "prompt.npz", txt=txt, y=np.ones(4, np.float32))
  sio.save_file(str(tmp_path / "prompt.safetensors"), {"txt": txt})
  for name in ("prompt.npz", "prompt.safetensors"):
    loaded = flux_diffcamera.load_text_embeddings(str(tmp_path / name), 8, 4)
    np.testing.assert_array_equal(loaded["text_tokens"], txt)
  with pytest.raises(FileNotFoundError, match="text embeddings"):
    flux_diffcamera.load_text_embeddings(str(tmp_path / "none.npz"), 8, 4)
