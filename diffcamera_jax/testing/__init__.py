"""Helpers the test suite shares: tiny configs, random batches, reference implementations, runs of
the training program.

Test files import these, never each other (as `absl.testing` or `jax._src.test_util` serve their
suites). Nothing in the library imports this package; it sits above the commands in the house
(`docs/architecture.md`, checked by `tests/test_structure.py`).

- `batches`: the tiny config on small images, random batches (`Example` fields) of its shapes;
- `objective_calls`: the objective's losses of a dict batch, its prior image as a function;
- `sharded_steps`: the tiny model's train steps on a mesh, relative error, bytes per device;
- `scatter_reference`: slow, exact numpy references of the renderer (coverage, scatter);
- `lora_training`: LoRA training by masking one full parameter tree;
- `train_runs`: `python -m diffcamera_jax.train` in subprocesses on the tiny configs, and the
  checkpoints those runs leave.
"""
