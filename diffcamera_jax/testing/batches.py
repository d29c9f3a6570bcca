"""The tiny config on small images, and random batches of its shapes (train-step, objective and
model tests, and the subprocess scripts of the sharded and multi-process train-step tests)."""
import numpy as np

from diffcamera_jax.configs.default import get_config


def tiny_config(batch_size: int = 8, image_size=(16, 16)):
  """The tiny config on small images; full-depth dropout and stacking so every branch runs."""
  config = get_config("tiny")
  config.data.batch_size = batch_size
  config.data.image_size = tuple(image_size)
  config.model.patch_size = 4
  config.optim.warmup_steps = 2
  config.train.num_steps = 100
  return config


def random_batch(seed: int, batch_size: int, image_size=(16, 16)) -> dict:
  """A device example (`objective.Example` fields, as a dict) of random values with the right shapes and ranges.

  The multi-focus image is the exact mask blend of the two targets, as for an ideal renderer.
  """
  rs = np.random.RandomState(seed)
  h, w = image_size
  img = lambda: rs.uniform(0, 1, (batch_size, h, w, 3)).astype(np.float32)
  target, target_2 = img(), img()
  disparity = rs.uniform(0, 1, (batch_size, h, w)).astype(np.float32)
  mask = (rs.uniform(0, 1, (batch_size, h, w)) > 0.5).astype(np.float32)
  return {
      "image": img(), "reference": img(), "target": target, "target_2": target_2,
      "disparity": disparity, "stack_mask": mask,
      "multifocus": mask[..., None] * target + (1 - mask[..., None]) * target_2,
      "source_focus": rs.uniform(0, 1, (batch_size, 2)).astype(np.float32),
      "source_blur": rs.uniform(0, 4, (batch_size,)).astype(np.float32),
      "target_focus": rs.uniform(0, 1, (batch_size, 2)).astype(np.float32),
      "target_focus_2": rs.uniform(0, 1, (batch_size, 2)).astype(np.float32),
      "target_blur": rs.uniform(0, 4, (batch_size,)).astype(np.float32),
      "aperture_blades": rs.choice([0, 5, 6], batch_size).astype(np.int32),
      "aperture_rotation": rs.uniform(0, np.pi, (batch_size,)).astype(np.float32),
      "target_focus_disparity": rs.uniform(0, 1, (batch_size,)).astype(np.float32),
      "target_focus_disparity_2": rs.uniform(0, 1, (batch_size,)).astype(np.float32),
  }


def random_example(seed: int, batch_size: int, image_size=(16, 16)):
  """`random_batch` as an `objective.Example`."""
  from diffcamera_jax.objective.example import Example
  return Example.from_dict(random_batch(seed, batch_size, image_size))
