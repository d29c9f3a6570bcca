"""The numpy safetensors reader/writer agrees with the reference `safetensors` library."""
import json
import os

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from diffcamera_jax.weights import safetensors_io as sio


def test_writer_output_reads_back_with_the_reference_library(tmp_path):
  rng = np.random.default_rng(0)
  tensors = {"a": rng.normal(size=(3, 4)).astype(np.float32),
             "b/c": rng.normal(size=(5,)).astype(np.float16),
             "i": np.arange(6, dtype=np.int64).reshape(2, 3)}
  path = str(tmp_path / "x.safetensors")
  sio.save_file(path, tensors, metadata={"k": "v"})
  ref = safetensors.numpy.load_file(path)
  for name, value in tensors.items():
    np.testing.assert_array_equal(ref[name], value)
  assert sio.SafetensorsFile(path).metadata() == {"k": "v"}


def test_reader_matches_the_reference_library_including_bf16(tmp_path):
  rng = np.random.default_rng(1)
  tensors = {"w": rng.normal(size=(4, 6)).astype(np.float32), "s": np.full((), 2.5, np.float32)}
  path = str(tmp_path / "y.safetensors")
  safetensors.numpy.save_file(tensors, path)
  f = sio.SafetensorsCheckpoint(path)
  assert sorted(f.names()) == ["s", "w"] and f.shape("w") == (4, 6)
  np.testing.assert_array_equal(f.read("w"), tensors["w"])
  np.testing.assert_array_equal(f.read("s"), tensors["s"])
  bf16 = tensors["w"].astype(ml_dtypes.bfloat16)
  sio.save_file(str(tmp_path / "z.safetensors"), {"w": bf16})
  got = sio.SafetensorsCheckpoint(str(tmp_path / "z.safetensors")).read("w")
  assert got.dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(got.astype(np.float32), bf16.astype(np.float32))


def test_read_is_a_lazy_memory_map(fixtures_dir):
  f = sio.SafetensorsCheckpoint(os.path.join(fixtures_dir, "transformer_original.safetensors"))
  view = f.read("img_in.weight")
  assert isinstance(view.base, np.memmap) or isinstance(view.base.base, np.memmap)
  assert not view.flags.writeable


def test_sharded_index_lists_every_tensor(fixtures_dir):
  directory = os.path.join(fixtures_dir, "transformer")
  with open(os.path.join(directory, "diffusion_pytorch_model.safetensors.index.json")) as fh:
    index = json.load(fh)
  ckpt = sio.SafetensorsCheckpoint(directory)
  assert len(set(index["weight_map"].values())) > 1
  assert sorted(ckpt.names()) == sorted(index["weight_map"])


def test_corrupt_or_ambiguous_inputs_raise(tmp_path):
  bad = tmp_path / "bad.safetensors"
  bad.write_bytes(b"\x05\x00")
  with pytest.raises(ValueError, match="shorter than 8 bytes"):
    sio.SafetensorsFile(str(bad))
  bad.write_bytes((10).to_bytes(8, "little") + b"not json!!")
  with pytest.raises(ValueError, match="safetensors header: is not valid JSON"):
    sio.SafetensorsFile(str(bad))
  sio.save_file(str(tmp_path / "two.safetensors"), {"a": np.zeros(1, np.float32)})
  with pytest.raises(ValueError, match="expected one"):
    sio.SafetensorsCheckpoint(str(tmp_path))
  with pytest.raises(KeyError, match="no tensor named 'nope'"):
    sio.SafetensorsCheckpoint(str(tmp_path / "two.safetensors")).read("nope")
  with pytest.raises(FileNotFoundError):
    sio.SafetensorsCheckpoint(str(tmp_path / "missing.safetensors"))
