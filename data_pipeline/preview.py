"""`python -m data_pipeline.preview --out DIR`: the picture of a training batch, kept under its
original name. It renders on the device, so the program is the library's
(`diffcamera_jax.training.preview`); this entry point is imported by nothing."""
from absl import app

from diffcamera_jax.training import preview

if __name__ == "__main__":
  app.run(preview.main)
