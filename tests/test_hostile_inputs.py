"""Careless and hostile inputs: no input or foreign file is ever overwritten, nothing blocks, sizes
are checked before allocation, and every bad file is one line naming it (exit code 2)."""
import hashlib
import json
import os
import resource
import signal
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from diffcamera_jax import export, exported, imageio, refocus, user_files
from diffcamera_jax.cli import UserError
from diffcamera_jax.weights import safetensors_io as sio


@pytest.fixture(autouse=True)
def _never_block():
  """A check that regresses into a blocking open fails the test instead of hanging the suite."""
  def timeout(*_):
    raise TimeoutError("an input check blocked")
  previous = signal.signal(signal.SIGALRM, timeout)
  signal.alarm(60)
  yield
  signal.alarm(0)
  signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  """A tiny exported DiT (the flags are checked before it is loaded; a few cases load it)."""
  import flax.linen as nn
  import jax
  from diffcamera_jax.configs.default import get_config
  from diffcamera_jax.models import build_model, example_inputs
  d = tmp_path_factory.mktemp("model")
  config = get_config("tiny")
  net, codec = build_model(config)
  params = net.init({"params": jax.random.key(0)}, *example_inputs(codec, (32, 32)))["params"]
  exported.save_exported(str(d / "model"), config, nn.meta.unbox(params))
  return d / "model"


def _digest(path) -> str:
  return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _photo(path, size=(20, 28)):
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), np.uint8)).save(path)


def _refocus(capsys, model, image, *extra):
  code = refocus.main(["--model", str(model), "--image", str(image), "--quiet", *extra])
  err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
  return code, err


# ---------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("case", ["out_is_image", "first_frame", "gif", "save_depth", "sheet"])
def test_no_output_overwrites_an_input(tmp_path, capsys, model, case):
  photo = tmp_path / "photo.png"
  _photo(photo)
  one, two = ["--focus", "0.5,0.5", "--blur", "3"], ["--focus", "0.5,0.5", "--blur", "3",
                                                     "--blur", "6"]
  weights = tmp_path / "weights.safetensors"
  weights.write_bytes(b"x")
  maps = {"first_frame": tmp_path / "x_000.png", "gif": tmp_path / "anim.gif",
          "sheet": tmp_path / "a_sheet.png"}
  for path in maps.values():
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(path)
  args = {
      "out_is_image": [*one, "--out", str(photo)],
      "first_frame": [*two, "--out", str(tmp_path / "x.png"), "--depth", str(maps["first_frame"])],
      "gif": [*one, "--gif", "--out", str(tmp_path / "anim.png"), "--depth", str(maps["gif"])],
      "save_depth": [*one, "--out", str(tmp_path / "o.png"), "--depth-model", str(weights),
                     "--save-depth", str(photo)],
      "sheet": [*two, "--out", str(tmp_path / "a.png"), "--depth", str(maps["sheet"])],
  }[case]
  before = {p: _digest(p) for p in tmp_path.iterdir()}
  code, err = _refocus(capsys, model, photo, *args)
  assert code == 2 and len(err) == 1 and "would overwrite the input" in err[0], err
  assert {p: _digest(p) for p in tmp_path.iterdir()} == before


def test_an_output_that_is_a_directory_is_refused_before_sampling(tmp_path, capsys, model):
  photo = tmp_path / "photo.png"
  _photo(photo)
  (tmp_path / "out.png").mkdir()
  code, err = _refocus(capsys, model, photo, "--focus", "0.5,0.5", "--blur", "3",
                       "--out", str(tmp_path / "out.png"))
  assert code == 2 and err == [f"refocus: error: --out {tmp_path / 'out.png'}: is an existing "
                               "directory, not a file to write"]


def test_outputs_are_written_whole_or_not_at_all(tmp_path):
  out = tmp_path / "kept.png"
  out.write_bytes(b"earlier result")
  with pytest.raises(RuntimeError):
    with user_files.atomic_output(out) as tmp:
      open(tmp, "wb").write(b"half")
      raise RuntimeError("the writer failed")
  assert out.read_bytes() == b"earlier result" and os.listdir(tmp_path) == ["kept.png"]
  imageio.save_image(out, np.zeros((4, 4, 3)))
  assert Image.open(out).size == (4, 4) and os.listdir(tmp_path) == ["kept.png"]
  assert os.stat(out).st_mode & 0o777 == 0o666 & ~user_files._umask()


def test_export_never_touches_a_foreign_folder(tmp_path, model):
  from diffcamera_jax.configs.default import get_config
  foreign = tmp_path / "project"
  foreign.mkdir()
  (foreign / "config.json").write_text('{"mine": 1}')
  with pytest.raises(UserError, match="holds files that are not an export"):
    exported.save_exported(str(foreign), get_config("tiny"), {"w": np.zeros(2)}, replace=True)
  assert (foreign / "config.json").read_text() == '{"mine": 1}'
  assert sorted(os.listdir(tmp_path)) == ["project"]
  # an earlier export is replaced only when asked, and whole
  target = tmp_path / "export"
  exported.save_exported(str(target), get_config("tiny"), {"w": np.zeros(2)})
  with pytest.raises(FileExistsError):
    exported.save_exported(str(target), get_config("tiny"), {"w": np.ones(2)})
  exported.save_exported(str(target), get_config("tiny"), {"w": np.ones(2)}, replace=True)
  _, params = exported.load_exported(str(target))
  np.testing.assert_array_equal(params["w"], np.ones(2))
  assert sorted(os.listdir(tmp_path)) == ["export", "project"]


def test_export_flag_errors_are_one_line(capsys):
  assert export.main(["--workdir"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("export: error:")


# ---------------------------------------------------------------------------- nothing blocks


def test_fifos_are_refused_without_opening_them(tmp_path, capsys, model):
  fifo = str(tmp_path / "pipe.safetensors")
  os.mkfifo(fifo)
  npy = str(tmp_path / "pipe.npy")
  os.mkfifo(npy)
  for read in (lambda: imageio.load_image(fifo), lambda: imageio.load_disparity(fifo),
               lambda: imageio.load_disparity(npy), lambda: sio.SafetensorsCheckpoint(fifo)):
    with pytest.raises(ValueError, match="FIFO"):
      read()
  folder = tmp_path / "weights"
  folder.mkdir()
  os.mkfifo(folder / "model.safetensors")
  photo = tmp_path / "photo.png"
  _photo(photo)
  for flag, path in (("--depth-model", fifo), ("--depth-model", str(folder))):
    code, err = _refocus(capsys, model, photo, "--focus", "0.5,0.5", "--blur", "2",
                         "--out", str(tmp_path / "o.png"), flag, path)
    assert code == 2 and len(err) == 1 and "FIFO" in err[0], err


@pytest.mark.parametrize("extra", [["--blur", "1e9"], ["--blur", "-1"], ["--blur", "nan"],
                                   ["--blur", "151"]] + [[*("--blur", "1") * 300]])
def test_user_numbers_are_bounded(tmp_path, capsys, model, extra):
  photo = tmp_path / "photo.png"
  _photo(photo)
  code, err = _refocus(capsys, model, photo, "--focus", "0.5,0.5", *extra,
                       "--out", str(tmp_path / "o.png"))
  assert code == 2 and len(err) == 1 and ("--blur" in err[0] or "frames" in err[0]), err


# ---------------------------------------------------------------------------- memory


def _peak_rss_growth(read) -> int:
  """Bytes by which this process's peak RSS grew while `read()` ran (raising ValueError)."""
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  with pytest.raises(ValueError) as error:
    read()
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before, str(error.value)


def _png_of_one_colour(path, width, height):
  """A valid PNG of width x height black pixels, written row by row (a few hundred KB)."""
  raw = zlib.compressobj(9)
  row = b"\x00" + b"\x00" * (3 * width)
  data = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
  chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                              + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_huge_images_are_refused_from_their_header(tmp_path):
  big = tmp_path / "big.png"
  _png_of_one_colour(big, 12000, 12000)
  assert os.path.getsize(big) < 1_000_000
  grew, message = _peak_rss_growth(lambda: imageio.load_image(big))
  assert grew < 200 * 2 ** 20 and "144 megapixels" in message and str(big) in message
  medium = tmp_path / "medium.png"
  _png_of_one_colour(medium, 3000, 2000)
  grew, message = _peak_rss_growth(lambda: imageio.load_image(medium, max_pixels=5_000_000))
  assert "--max-pixels" in message


def test_npy_headers_are_checked_before_allocation(tmp_path):
  huge = tmp_path / "huge.npy"
  header = {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)}
  with open(huge, "wb") as f:
    np.lib.format.write_array_header_1_0(f, header)
    f.write(b"\x00" * 64)
  grew, message = _peak_rss_growth(lambda: imageio.load_disparity(huge))
  assert grew < 200 * 2 ** 20 and "10000000000 elements" in message
  short = tmp_path / "short.npy"
  header["shape"] = (64, 64)
  with open(short, "wb") as f:
    np.lib.format.write_array_header_1_0(f, header)
    f.write(b"\x00" * 100)
  with pytest.raises(ValueError, match="truncated"):
    imageio.load_disparity(short)
  (tmp_path / "empty.npy").write_bytes(b"")
  with pytest.raises(ValueError, match=r"empty.npy: is empty"):
    imageio.load_disparity(tmp_path / "empty.npy")
  np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match="Python objects"):
    imageio.load_disparity(tmp_path / "objects.npy")


def test_a_png_with_a_giant_text_chunk_is_one_line(tmp_path):
  info = PngImagePlugin.PngInfo()
  info.add_text("comment", "a" * 70_000_000, zip=True)
  path = tmp_path / "text.png"
  Image.new("RGB", (8, 8)).save(path, pnginfo=info)
  with pytest.raises(ValueError, match=f"image file {path}: cannot decode"):
    imageio.load_image(path)


# ---------------------------------------------------------------------------- weights files


def _safetensors(path, header: bytes, data: bytes = b""):
  path.write_bytes(struct.pack("<Q", len(header)) + header + data)
  return str(path)


GOOD_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("header", [
    b"[1, 2]", b"7", b"null", b'"text"',
    json.dumps({"__metadata__": [1], "a": GOOD_ENTRY}).encode(),
    json.dumps({"a": {**GOOD_ENTRY, "dtype": ["F32"]}}).encode(),
    json.dumps({"a": {**GOOD_ENTRY, "data_offsets": ["0", "8"]}}).encode(),
    json.dumps({"a": {**GOOD_ENTRY, "data_offsets": [0.0, 8.0]}}).encode(),
    json.dumps({"a": {**GOOD_ENTRY, "data_offsets": [8, 0]}}).encode(),
    json.dumps({"a": {**GOOD_ENTRY, "shape": "2"}}).encode(),
    json.dumps({"a": {**GOOD_ENTRY, "shape": 2}}).encode(),
    json.dumps({"a": {**GOOD_ENTRY, "shape": [True]}}).encode(),
    json.dumps({"a": {**GOOD_ENTRY, "shape": [3]}}).encode(),
    json.dumps({"a": [1]}).encode(),
    json.dumps({"a": GOOD_ENTRY, "b": {**GOOD_ENTRY, "data_offsets": [4, 12]}}).encode(),
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"a": "\xff\xfe"}',
], ids=["list", "number", "null", "string", "metadata_list", "dtype_list", "offsets_strings",
        "offsets_floats", "offsets_reversed", "shape_string", "shape_scalar", "shape_bool",
        "shape_mismatch", "entry_list", "overlap", "deep_lists", "deep_entry", "not_utf8"])
def test_malformed_safetensors_headers_are_one_line(tmp_path, header):
  path = _safetensors(tmp_path / "w.safetensors", header, b"\x00" * 16)
  with pytest.raises(ValueError) as error:
    sio.SafetensorsCheckpoint(path).names()
  assert path in str(error.value) and "\n" not in str(error.value)


def test_a_huge_header_of_empty_lists_is_refused_cheaply(tmp_path):
  body = b'{"a": [' + b"[]," * (33 * 2 ** 20) + b"[]]}"
  path = _safetensors(tmp_path / "w.safetensors", body)
  grew, message = _peak_rss_growth(lambda: sio.SafetensorsCheckpoint(path))
  assert grew < 600 * 2 ** 20 and "malformed safetensors header" in message


def test_directories_loops_and_bad_indexes_are_one_line(tmp_path):
  (tmp_path / "dir.safetensors").mkdir()
  loop = tmp_path / "loop.safetensors"
  os.symlink(loop, loop)
  good = tmp_path / "shard.safetensors"
  sio.save_file(str(good), {"a": np.zeros(2, np.float32)})
  cases = {str(tmp_path / "dir.safetensors"): "expected one",
           str(loop): "cannot be read"}
  for text, why in ((b'{"weight_map": [1]}', "weight_map"), (b'{"weight_map": 3}', "weight_map"),
                    (b'{"weight_map": {"a": "dir.safetensors"}}', "directory"),
                    (b"not json", "not valid JSON"), (b"[1]", "JSON object"),
                    (b'{"weight_map": {"a": "shard.safetensors"}, "metadata": [1]}', "metadata")):
    index = tmp_path / f"i{len(cases)}.safetensors.index.json"
    index.write_bytes(text)
    cases[str(index)] = why
  for path, why in cases.items():
    with pytest.raises(ValueError, match=why) as error:
      sio.SafetensorsCheckpoint(path)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------- model folders


@pytest.mark.parametrize("text,why", [
    (b"[1, 2]", "must hold a JSON object, got list"),
    (b"{not json", "is not valid JSON"),
    (b'{"a": "\xff"}', "is not UTF-8"),
])
def test_bad_model_configs_are_one_line(tmp_path, capsys, text, why):
  folder = tmp_path / "model"
  (folder / "params").mkdir(parents=True)
  (folder / "config.json").write_bytes(text)
  photo = tmp_path / "photo.png"
  _photo(photo)
  code, err = _refocus(capsys, folder, photo, "--focus", "0.5,0.5", "--blur", "2",
                       "--out", str(tmp_path / "o.png"))
  assert code == 2 and len(err) == 1 and why in err[0] and "config.json" in err[0], err


@pytest.mark.parametrize("size", ["abc", [-32, 32], 32, [32.5, 32]])
def test_a_bad_trained_size_names_the_field(size):
  from diffcamera_jax.configs.default import get_config
  from diffcamera_jax.inference.refocuser import Refocuser
  import ml_collections
  fields = get_config("tiny").to_dict()
  fields["data"]["image_size"] = size  # as a hand-edited config.json would hold it
  with pytest.raises(ValueError, match="data.image_size"):
    Refocuser(ml_collections.ConfigDict(fields), {})


def test_flux_weight_flags_are_refused_for_a_dit(tmp_path, capsys, model):
  photo = tmp_path / "photo.png"
  _photo(photo)
  code, err = _refocus(capsys, model, photo, "--focus", "0.5,0.5", "--blur", "2",
                       "--out", str(tmp_path / "o.png"), "--base-weights", "/nowhere")
  assert code == 2 and len(err) == 1 and "FLUX exports only" in err[0], err


# ---------------------------------------------------------------------------- dataset builder


def test_builder_reports_or_skips_hostile_files(tmp_path):
  from data_pipeline.image_depth_folder import reading
  images, maps = tmp_path / "images", tmp_path / "maps"
  images.mkdir()
  maps.mkdir()
  _png_of_one_colour(images / "bomb.png", 12000, 12000)
  (maps / "empty.npy").write_bytes(b"")
  with pytest.raises(reading.BadFileError, match="megapixels"):
    reading.read_image(images / "bomb.png")
  with pytest.raises(reading.BadFileError, match="is empty"):
    reading.read_map(maps / "empty.npy")


@pytest.mark.parametrize("damage", ["truncate", "zero_manifest"])
def test_a_damaged_params_folder_is_one_line(tmp_path, capsys, model, damage):
  import shutil
  copy = tmp_path / "model"
  shutil.copytree(model, copy)
  if damage == "truncate":
    data = max((p for p in (copy / "params").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)
    os.truncate(data, 100)
  else:
    manifest = copy / "params" / "manifest.ocdbt"
    manifest.write_bytes(b"\x00" * manifest.stat().st_size)
  photo = tmp_path / "photo.png"
  _photo(photo)
  code, err = _refocus(capsys, copy, photo, "--focus", "0.5,0.5", "--blur", "2",
                       "--out", str(tmp_path / "o.png"))
  assert code == 2 and len(err) == 1 and "params/ cannot be restored" in err[0], err
  assert not (tmp_path / "o.png").exists()


def test_the_host_side_of_a_call_is_inside_the_memory_plan(model):
  from diffcamera_jax.inference import memory
  from diffcamera_jax.inference.refocuser import MemoryBudgetError, Refocuser
  refocuser = Refocuser.load(str(model))
  plan = refocuser.plan_for((600, 800), 3)
  assert plan.host_bytes == memory.host_bytes((600, 800), 3) and "host arrays" in plan.describe()
  refocuser.host_budget = memory.host_bytes((600, 800), 3) - 1
  with pytest.raises(MemoryBudgetError, match="host memory"):
    refocuser.plan_for((600, 800), 3)
  with pytest.raises(MemoryBudgetError, match="host memory"):  # before any work is done
    refocuser.refocus(np.zeros((600, 800, 3), np.float32), (0.5, 0.5), [1.0, 2.0, 3.0])


def test_depth_anything_config_of_the_wrong_shape_is_one_line(tmp_path):
  from diffcamera_jax.depth import load_depth_model
  folder = tmp_path / "da"
  folder.mkdir()
  sio.save_file(str(folder / "model.safetensors"),  # a transformers-layout name
                {"backbone.embeddings.cls_token": np.zeros((1, 1, 8), np.float32)})
  (folder / "config.json").write_text("[1, 2]")
  with pytest.raises(ValueError, match="must hold a JSON object, got list") as error:
    load_depth_model(str(folder))
  assert "\n" not in str(error.value)


def test_builder_data_dir_that_is_a_file_is_one_line(tmp_path):
  import subprocess
  import sys
  source = tmp_path / "src"
  (source / "images").mkdir(parents=True)
  _photo(source / "images" / "a.png")
  blocker = tmp_path / "data"
  blocker.write_text("kept")
  result = subprocess.run([sys.executable, "-m", "data_pipeline.image_depth_folder",
                           f"--source_dir={source}", f"--data_dir={blocker}"],
                          capture_output=True, text=True, timeout=300)
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode == 2 and len(lines) == 1 and "--data_dir" in lines[0], lines
  assert blocker.read_text() == "kept"
