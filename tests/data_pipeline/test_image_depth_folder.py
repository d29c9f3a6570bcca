"""The image_depth_folder TFDS builder: ArrayRecord output, map normalisation, bad files."""
import pathlib

import numpy as np
import pytest
from PIL import Image

from diffcamera_jax.configs import default
from data_pipeline import image_depth_folder
from data_pipeline import pipeline
from data_pipeline.image_depth_folder import reading


def _write_image(path: pathlib.Path, rng, height, width, fmt="PNG"):
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = (rng.random((height, width, 3)) * 255).astype(np.uint8)
  Image.fromarray(pixels).save(path, format=fmt)
  return pixels


def _make_folder(root: pathlib.Path) -> dict:
  """Good pairs (16-bit PNG and .npy maps, two sizes, a sub-folder) and one of each bad kind."""
  rng = np.random.default_rng(0)
  images, maps = root / "images", root / "maps"
  good = {}
  (maps / "sub").mkdir(parents=True)
  good["a.png"] = (_write_image(images / "a.png", rng, 12, 16), rng.random((12, 16)) + 0.5)
  np.save(maps / "a.npy", good["a.png"][1])
  pixels = _write_image(images / "sub" / "b.png", rng, 20, 10)
  stored = (rng.random((20, 10)) * 60000 + 100).astype(np.uint16)
  Image.fromarray(stored).save(maps / "sub" / "b.png")
  good["sub/b.png"] = (pixels, stored.astype(np.float64))
  bad = {}
  (images / "corrupt.jpg").write_bytes(b"not an image at all")
  np.save(maps / "corrupt.npy", np.ones((4, 4)))
  bad["corrupt.jpg"] = (images / "corrupt.jpg", "cannot decode it as an image")
  _write_image(images / "mis_sized.png", rng, 8, 8)
  np.save(maps / "mis_sized.npy", np.ones((8, 9)))
  bad["mis_sized.png"] = (maps / "mis_sized.npy", "differs from image size")
  _write_image(images / "nan.png", rng, 6, 6)
  nan_map = np.ones((6, 6))
  nan_map[2, 3] = np.nan
  np.save(maps / "nan.npy", nan_map)
  bad["nan.png"] = (maps / "nan.npy", "NaN")
  _write_image(images / "negative.png", rng, 6, 6)
  np.save(maps / "negative.npy", -np.ones((6, 6)))
  bad["negative.png"] = (maps / "negative.npy", "negative")
  _write_image(images / "orphan.png", rng, 6, 6)
  bad["orphan.png"] = (images / "orphan.png", "no matching map")
  (maps / "truncated.npy").write_bytes(b"\x93NUMPY garbage")
  _write_image(images / "truncated.png", rng, 6, 6)
  bad["truncated.png"] = (maps / "truncated.npy", "cannot read it as a .npy array")
  return {"good": good, "bad": bad}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("photos")
  return root, _make_folder(root)


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory):
  root, _ = folder
  data_dir = tmp_path_factory.mktemp("tfds")
  return image_depth_folder.prepare(root, data_dir, skip_bad=True), data_dir


def test_each_bad_file_is_reported_with_its_path(folder):
  root, files = folder
  pairs = {p.key: p for p in reading.find_pairs(root)}
  for key, (path, reason) in files["bad"].items():
    with pytest.raises(reading.BadFileError, match=reason) as info:
      reading.read_pair(pairs[key], "disparity")
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_prepare_stops_at_a_bad_file_naming_it(folder, tmp_path):
  root, files = folder
  with pytest.raises(reading.BadFileError) as info:
    image_depth_folder.prepare(root, tmp_path)
  assert info.value.path in {str(path) for path, _ in files["bad"].values()}


def test_skip_bad_writes_the_good_examples_and_lists_the_bad(folder, prepared):
  _, files = folder
  builder, data_dir = prepared
  skipped = {item["path"] for item in builder.info.metadata["skipped"]}
  assert skipped == {str(path) for path, _ in files["bad"].values()}
  source = image_depth_folder.data_source(data_dir, split="train")
  assert len(source) == len(files["good"])
  for record in (source[i] for i in range(len(source))):
    key = record["key"].decode() if isinstance(record["key"], bytes) else record["key"]
    pixels, values = files["good"][key]
    np.testing.assert_array_equal(record["image"], pixels)
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(reading.dequantize_disparity(record["disparity"]), expected,
                               atol=0.5 / reading.DISPARITY_LEVELS + 1e-7)


def test_depth_maps_become_normalised_inverse_depth():
  depth = np.array([[1.0, 2.0], [4.0, 8.0]])
  disparity = reading.to_disparity(depth, "depth")
  inverse = 1.0 / depth
  np.testing.assert_allclose(disparity, (inverse - inverse.min()) / (inverse.max() - inverse.min()),
                             rtol=1e-6)
  assert disparity[0, 0] == 1.0 and disparity[1, 1] == 0.0  # nearest -> 1
  with pytest.raises(reading.BadFileError, match="<= 0"):
    reading.to_disparity(np.array([[0.0, 1.0]]), "depth", "m.png")
  np.testing.assert_array_equal(reading.to_disparity(np.full((2, 2), 3.0), "disparity"), 0.0)
  with pytest.raises(ValueError, match="kind"):
    reading.to_disparity(depth, "inverse")


def test_split_folders_become_splits(tmp_path):
  rng = np.random.default_rng(1)
  for split in ("train", "validation"):
    _write_image(tmp_path / split / "images" / "x.png", rng, 4, 4)
  assert set(reading.find_splits(tmp_path)) == {"train", "validation"}
  with pytest.raises(FileNotFoundError, match="images"):
    reading.find_splits(tmp_path / "train" / "images")
  with pytest.raises(FileNotFoundError, match="missing"):
    reading.find_splits(tmp_path / "missing")


def test_prepare_rejects_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="map_kind"):
    image_depth_folder.prepare(tmp_path, tmp_path, map_kind="inverse")
  with pytest.raises(FileNotFoundError, match="source_dir"):
    image_depth_folder.prepare(tmp_path / "missing", tmp_path)


def test_grain_pipeline_reads_the_prepared_dataset(prepared):
  _, data_dir = prepared
  config = default.get_config("tiny")
  config.data.source = "tfds"
  config.data.tfds_name = "image_depth_folder/disparity"
  config.data.tfds_data_dir = str(data_dir)
  batch = next(pipeline.make_train_iterator(config, process_index=0, process_count=1))
  height, width = config.data.image_size
  assert batch["image"].shape == (config.data.batch_size, height, width, 3)
  assert batch["disparity"].shape == (config.data.batch_size, height, width)
  for key in ("image", "disparity"):
    assert batch[key].dtype == np.float32 and 0.0 <= batch[key].min() and batch[key].max() <= 1.0
  assert len({batch["image"][i].tobytes() for i in range(config.data.batch_size)}) > 1  # crops
  # Worker processes receive the pickled ArrayRecord source and produce the same batch.
  config.data.num_workers = 2
  it = pipeline.make_train_iterator(config, process_index=0, process_count=1)
  from_workers = next(it)
  for key in batch:
    np.testing.assert_array_equal(from_workers[key], batch[key], err_msg=key)
  del it, from_workers


DEPTH_MODEL = pathlib.Path(__file__).parents[1] / "fixtures" / "depth" / "tiny_a"


def test_depth_model_fills_missing_maps_through_the_cli(tmp_path):
  """`python -m data_pipeline.image_depth_folder --depth-model W`: photos without a map get one
  estimated (a tiny random Depth Anything), batched; the photo with a map keeps it."""
  import subprocess
  import sys
  rng = np.random.default_rng(3)
  root = tmp_path / "photos"
  for name, (h, w) in {"a.png": (30, 40), "b.png": (30, 40), "c.png": (36, 24),
                       "mapped.png": (10, 12)}.items():
    _write_image(root / "images" / name, rng, h, w)
  kept = rng.random((10, 12)) + 0.1
  (root / "maps").mkdir()
  np.save(root / "maps" / "mapped.npy", kept)
  data_dir = tmp_path / "tfds"
  proc = subprocess.run(
      [sys.executable, "-m", "data_pipeline.image_depth_folder", f"--source_dir={root}",
       f"--data_dir={data_dir}", "--depth-model", str(DEPTH_MODEL), "--depth_batch_size=2"],
      cwd=pathlib.Path(__file__).parents[2], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "depth estimated for 3" in proc.stdout
  assert "estimating depth" in proc.stderr  # the progress bar
  source = image_depth_folder.data_source(data_dir)
  examples = {source[i]["key"].decode(): source[i] for i in range(len(source))}
  assert sorted(examples) == ["a.png", "b.png", "c.png", "mapped.png"]
  for key in ("a.png", "b.png", "c.png"):
    disparity = reading.dequantize_disparity(examples[key]["disparity"])
    assert disparity.shape == examples[key]["image"].shape[:2]
    assert disparity.min() == 0 and disparity.max() == 1
  np.testing.assert_allclose(reading.dequantize_disparity(examples["mapped.png"]["disparity"]),
                             reading.to_disparity(kept, "disparity"), atol=1 / 65535)


def test_depth_model_errors_are_one_line(tmp_path):
  import subprocess
  import sys
  _write_image(tmp_path / "photos" / "images" / "a.png", np.random.default_rng(0), 8, 8)
  proc = subprocess.run(
      [sys.executable, "-m", "data_pipeline.image_depth_folder",
       f"--source_dir={tmp_path / 'photos'}", f"--data_dir={tmp_path / 'tfds'}",
       f"--depth-model={tmp_path / 'missing.safetensors'}"],
      cwd=pathlib.Path(__file__).parents[2], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "missing.safetensors" in lines[0], proc.stderr
