"""The Grain host pipeline: source, per-host shard, shuffle, repeat, crop, cameras, batch.

    it = make_train_iterator(config)          # grain.DatasetIterator of host batches (numpy)
    batch = to_global_batch(next(it), mesh)   # global jax.Arrays sharded over ("data", "fsdp")

Everything before `mp_prefetch` is a `grain.MapDataset`, so an element is a pure function of the
seeds and its position: the iterator's state is a few integers (`get_state` / `set_state`, or
Orbax via `grain.checkpoint.CheckpointSave/CheckpointRestore`) and restoring it continues with
exactly the batch that would have come next. Hosts read disjoint, covering shards of the source.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np

from data_pipeline import HOST_BATCH_KEYS
from data_pipeline import cameras
from data_pipeline import transforms
# Threads that read and transform elements in each process (the main one, or each worker).
READ_THREADS = 4


def host_shard(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  """(index, count) of this host; defaults to `jax.process_index()` / `jax.process_count()`."""
  index = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"process_index must be in [0, process_count), got process_index={index}, "
                     f"process_count={count}")
  return index, count


def per_host_batch_size(global_batch_size: int, process_count: int) -> int:
  """The batch each host produces; the global batch must split evenly over hosts."""
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ValueError(f"config.data.batch_size={global_batch_size} must be a positive multiple of "
                     f"the process count {process_count}")
  return global_batch_size // process_count


def make_source(data_config: Any) -> grain.MapDataset:
  """A MapDataset of {"image", "disparity"} float32 elements from `config.data.source`."""
  height, width = _image_size(data_config)
  if data_config.source == "procedural":
    return grain.MapDataset.source(
        transforms.ProceduralScenes(int(data_config.procedural_seed), height, width))
  if data_config.source == "tfds":
    if not data_config.tfds_data_dir:
      raise ValueError("config.data.tfds_data_dir must name the prepared dataset's data dir "
                       "when config.data.source='tfds'")
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from data_pipeline import image_depth_folder  # noqa: F401  registers the builder
    source = tfds.data_source(data_config.tfds_name, split=data_config.split,
                              data_dir=data_config.tfds_data_dir, download=False)
    return grain.MapDataset.source(source).map(transforms.DecodeRecord())
  raise ValueError(f"config.data.source must be 'procedural' or 'tfds', got {data_config.source!r}")


def make_dataset(config: Any, process_index: int | None = None, process_count: int | None = None,
                 *, source: grain.MapDataset | None = None) -> grain.IterDataset:
  """The infinite, per-host IterDataset of host batches (see HOST_BATCH_KEYS).

  `source` replaces the config's source with any MapDataset of {"image", "disparity"} float32
  elements (its examples are cropped and resized to `config.data.image_size`).
  """
  data = config.data
  index, count = host_shard(process_index, process_count)
  batch_size = per_host_batch_size(int(data.batch_size), count)
  height, width = _image_size(data)
  seed = int(data.shuffle_seed)
  # Hosts draw different cameras for the same position in their shard.
  host_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])

  ds = make_source(data) if source is None else source
  if len(ds) < count:
    raise ValueError(f"the source has {len(ds)} examples, fewer than the {count} hosts")
  ds = ds[index::count]  # disjoint shards that together cover the source
  ds = ds.shuffle(seed=seed).repeat()  # a new order every epoch
  if source is not None or data.source != "procedural":  # procedural: drawn at the right size
    ds = ds.random_map(transforms.RandomCropResize(height, width), seed=host_seed)
  ds = ds.random_map(transforms.SampleCameras(cameras.CameraRanges.from_config(data)),
                     seed=host_seed + 1)
  ds = ds.batch(batch_size, drop_remainder=True)
  buffer = max(int(data.prefetch_buffer), READ_THREADS)  # fewer would idle reader threads
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS,
                                               prefetch_buffer_size=buffer))
  if int(data.num_workers) > 0:
    transforms.init_worker(-1, int(data.num_workers))  # Grain reads absl flags to start workers
    it_ds = it_ds.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=int(data.num_workers),
                                     per_worker_buffer_size=int(data.prefetch_buffer)),
        worker_init_fn=transforms.init_worker)
  return it_ds


def make_train_iterator(config: Any, process_index: int | None = None,
                        process_count: int | None = None, *,
                        source: grain.MapDataset | None = None) -> grain.DatasetIterator:
  """A checkpointable iterator of this host's batches (numpy dicts, leading dim = host batch)."""
  return iter(make_dataset(config, process_index, process_count, source=source))


def to_global_batch(host_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh,
                    batch_axes: Sequence[str] = ("data", "fsdp")) -> dict[str, jax.Array]:
  """Assembles each host's batch into global arrays sharded over `batch_axes` on dim 0.

  Axes absent from `mesh` are ignored, so the same call works on a mesh without, say, "fsdp".
  """
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  if not axes:
    raise ValueError(f"batch_axes {tuple(batch_axes)} name none of the mesh axes {mesh.axis_names}")
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axes))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in host_batch.items()}


def _image_size(data_config: Any) -> tuple[int, int]:
  size = tuple(int(s) for s in data_config.image_size)
  if len(size) != 2 or min(size) < 1:
    raise ValueError(f"config.data.image_size must be (H, W) with H, W >= 1, got {size}")
  return size

