"""The training program.

    python -m diffcamera_jax.train --config=configs/default.py --workdir=workdir/default \
        [--config.train.num_steps=1000] [--config=configs/default.py:tiny]

Resumes automatically from the newest checkpoint in `--workdir`. On a TPU pod every worker runs
this same command (see `launch/`); `jax.distributed` connects them. SIGTERM saves a checkpoint and
exits cleanly.
"""
from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from diffcamera_jax import cli
from diffcamera_jax.training import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (`get_config(arg)`).",
                                lock_config=True)
flags.DEFINE_string("workdir", "workdir", "Checkpoints, TensorBoard events and sample grids.")
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "Join a multi-process run: auto-detect (TPU pods, SLURM, MPI), force, or never.")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (clusters JAX cannot detect).")
flags.DEFINE_integer("num_processes", 0, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", -1, "This process's id (with --coordinator_address).")
flags.DEFINE_integer("heartbeat_seconds", 100,
                     "Seconds without a heartbeat after which a peer process counts as dead and "
                     "the run ends (JAX's default, 100).", lower_bound=1)
flags.mark_flags_as_required(["config"])


class _QuietLibraries(logging.Filter):
  """Keeps library INFO chatter (Orbax's per-save internals, backend probing) out of the console."""
  _NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}jax{os.sep}_src{os.sep}", f"{os.sep}grain{os.sep}")

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not any(n in record.pathname for n in self._NOISY)


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for handler in logging.getLogger().handlers + logging.getLogger("absl").handlers:
    handler.addFilter(_QuietLibraries())
  distributed.initialize(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes,
                         FLAGS.process_id, FLAGS.heartbeat_seconds)
  from diffcamera_jax.training import trainer  # Imported after the runtime is up: it touches devices.
  try:
    trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except cli.UserError as error:  # config fields, paths (ConfigError is one)
    cli.fail("train", str(error), cli.EXIT_BAD_INPUT)
  except trainer.NonFiniteLossError as error:
    cli.fail("train", str(error), cli.EXIT_NON_FINITE)
  except trainer.BackgroundWorkError as error:
    cli.fail("train", str(error), cli.EXIT_STALLED)
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=cli.absl_flags_parser("train"))
