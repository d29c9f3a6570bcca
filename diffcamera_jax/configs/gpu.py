"""One GPU: the in-context DiT-B in pixel mode at 256^2, bf16 compute, procedural or TFDS data."""
import ml_collections

from diffcamera_jax.configs import default


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """Single-GPU training; `arg='tfds'` reads the prepared `image_depth_folder` dataset,
  `arg='paper'` trains the paper's formulation (`default.apply_paper`) on the procedural scenes."""
  config = default.get_config()
  config.data.image_size = (256, 256)
  config.data.batch_size = 32
  config.data.num_workers = 8
  config.model.size = "B"
  config.model.patch_size = 8
  # CoC radii reach 20 px at 256^2: the deconvolution bank scales with the image (pixels).
  config.model.restorer.radii = (2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0)
  config.model.restorer.widths = (32, 64, 128)
  config.model.restorer.depth_widths = (32, 64, 128)
  config.model.dtype = "bfloat16"
  config.optim.learning_rate = 3e-4
  config.optim.warmup_steps = 1000
  config.train.num_steps = 200_000
  config.train.log_every = 100
  config.train.eval_every = 5000
  config.train.checkpoint_every = 2000
  config.eval.num_scenes = 32
  if arg == "tfds":
    config.data.source = "tfds"
    config.data.tfds_data_dir = "/data/tfds"
  elif arg == "paper":
    default.apply_paper(config, pixel_widths=(32, 64, 128))
  elif arg:
    raise ValueError(f"configs/gpu.py: unknown variant {arg!r} (expected '', 'tfds' or 'paper')")
  return config
