"""The Grain host pipeline: batch format, determinism, host shards, exact resume, global batches."""
import dataclasses

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from diffcamera_jax.configs import default
from data_pipeline import pipeline
from data_pipeline import procedural
from data_pipeline import transforms

BATCH_TABLE = {  # docs/architecture.md, "Host batch": key -> (trailing shape, dtype)
    "image": ("HW3", np.float32), "disparity": ("HW", np.float32),
    "source_focus": ((2,), np.float32), "source_blur": ((), np.float32),
    "target_focus": ((2,), np.float32), "target_focus_2": ((2,), np.float32),
    "target_blur": ((), np.float32), "aperture_blades": ((), np.int32),
    "aperture_rotation": ((), np.float32),
}


def _config(**data):
  config = default.get_config("tiny")
  for key, value in data.items():
    setattr(config.data, key, value)
  return config


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


@dataclasses.dataclass(frozen=True)
class IndexedScenes:
  """A finite source whose image encodes the example's index (constant colour index / 100)."""
  length: int
  size: int = 16

  def __len__(self):
    return self.length

  def __getitem__(self, index):
    return {"image": np.full((self.size, self.size, 3), index / 100, np.float32),
            "disparity": np.linspace(0, 1, self.size ** 2, dtype=np.float32).reshape(self.size, -1)}


def _indices(batch):
  return np.round(batch["image"].mean(axis=(1, 2, 3)) * 100).astype(int).tolist()


def test_host_batches_follow_the_architecture_table():
  config = _config()
  batch = next(pipeline.make_train_iterator(config, process_index=0, process_count=1))
  assert set(batch) == set(BATCH_TABLE) == set(pipeline.HOST_BATCH_KEYS)
  b, (h, w) = config.data.batch_size, config.data.image_size
  for key, (shape, dtype) in BATCH_TABLE.items():
    shape = {"HW3": (h, w, 3), "HW": (h, w)}.get(shape, shape)
    assert batch[key].shape == (b, *shape) and batch[key].dtype == dtype, key
  max_blur = config.data.blur_range[1] * max(h, w) / config.data.blur_reference_size
  assert batch["target_blur"].max() <= max_blur and batch["source_blur"].min() >= 0


def test_procedural_examples_are_the_shuffled_scenes_drawn_at_the_training_size():
  config = _config()
  batch = next(pipeline.make_train_iterator(config, process_index=1, process_count=2))
  # Host 1 of 2 reads positions 1, 3, 5, ... of the source, in its own seeded shuffle order.
  positions = grain.MapDataset.range(transforms.PROCEDURAL_LENGTH)[1::2].shuffle(
      seed=config.data.shuffle_seed)
  h, w = config.data.image_size
  for b in range(batch["image"].shape[0]):
    image, disparity = procedural.make_scene(config.data.procedural_seed, positions[b], h, w)
    np.testing.assert_array_equal(batch["image"][b], image)
    np.testing.assert_array_equal(batch["disparity"][b], disparity)


def test_same_seed_gives_the_same_batches_and_another_seed_does_not():
  a = _take(pipeline.make_train_iterator(_config(), 0, 1), 3)
  b = _take(pipeline.make_train_iterator(_config(), 0, 1), 3)
  _assert_batches_equal(a, b)
  c = _take(pipeline.make_train_iterator(_config(shuffle_seed=1), 0, 1), 3)
  assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_hosts_read_disjoint_shards_that_cover_the_data():
  config = _config(batch_size=3)  # 3 hosts x 1 example
  source = grain.MapDataset.source(IndexedScenes(24))
  seen = []
  for host in range(3):
    it = pipeline.make_train_iterator(config, host, 3, source=source)
    epoch_1 = sum((_indices(b) for b in _take(it, 8)), [])
    epoch_2 = sum((_indices(b) for b in _take(it, 8)), [])
    assert sorted(epoch_1) == sorted(epoch_2) and epoch_1 != epoch_2  # reshuffled each epoch
    seen.append(set(epoch_1))
  assert sum(len(s) for s in seen) == 24 and set().union(*seen) == set(range(24))


def test_hosts_draw_different_cameras():
  a = next(pipeline.make_train_iterator(_config(batch_size=8), 0, 2))
  b = next(pipeline.make_train_iterator(_config(batch_size=8), 1, 2))
  assert a["image"].shape[0] == 4
  assert not np.array_equal(a["target_focus"], b["target_focus"])


def test_iterator_state_resumes_with_exactly_the_next_batch():
  it = pipeline.make_train_iterator(_config(), 0, 1)
  _take(it, 3)
  state = it.get_state()
  expected = _take(it, 2)
  resumed = pipeline.make_train_iterator(_config(), 0, 1)
  resumed.set_state(state)
  _assert_batches_equal(_take(resumed, 2), expected)


def test_iterator_resumes_through_an_orbax_checkpoint(tmp_path):
  it = pipeline.make_train_iterator(_config(), 0, 1)
  _take(it, 2)
  with ocp.CheckpointManager(tmp_path, item_names=("data_iter",)) as manager:
    manager.save(2, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
    manager.wait_until_finished()
  expected = _take(it, 2)
  resumed = pipeline.make_train_iterator(_config(), 0, 1)
  with ocp.CheckpointManager(tmp_path, item_names=("data_iter",)) as manager:
    restore = grain.checkpoint.CheckpointRestore(resumed)
    manager.restore(2, args=ocp.args.Composite(data_iter=restore))
  _assert_batches_equal(_take(resumed, 2), expected)


def test_worker_processes_give_the_same_batches_and_resume_exactly():
  in_process = _take(pipeline.make_train_iterator(_config(), 0, 1), 4)
  it = pipeline.make_train_iterator(_config(num_workers=2), 0, 1)
  _assert_batches_equal(_take(it, 2), in_process[:2])
  state = it.get_state()
  resumed = pipeline.make_train_iterator(_config(num_workers=2), 0, 1)
  resumed.set_state(state)
  _assert_batches_equal(_take(resumed, 2), in_process[2:])
  del it, resumed


def test_to_global_batch_shards_over_the_batch_axes():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
  host = next(pipeline.make_train_iterator(_config(), 0, 1))
  global_batch = pipeline.to_global_batch(host, mesh)
  for key, value in global_batch.items():
    assert isinstance(value, jax.Array) and value.shape == host[key].shape
    assert value.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_array_equal(np.asarray(value), host[key])
  with pytest.raises(ValueError, match="batch_axes"):
    pipeline.to_global_batch(host, mesh, batch_axes=("model",))


@pytest.mark.parametrize("kwargs,match", [
    (dict(process_index=2, process_count=2), "process_index"),
    (dict(process_index=0, process_count=0), "process_index"),
])
def test_bad_host_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pipeline.make_dataset(_config(), **kwargs)


@pytest.mark.parametrize("data,match", [
    (dict(batch_size=5), "batch_size"),
    (dict(source="imagenet"), "config.data.source"),
    (dict(source="tfds", tfds_data_dir=""), "tfds_data_dir"),
    (dict(image_size=(0, 8)), "image_size"),
])
def test_bad_config_names_the_field(data, match):
  with pytest.raises(ValueError, match=match):
    pipeline.make_dataset(_config(**data), process_index=0, process_count=2)
