"""Stop requests: SIGTERM (TPU preemption / maintenance) becomes "checkpoint now, exit cleanly".

Single process: a SIGTERM handler sets a flag the loop polls each step. Several processes: every
process must stop at the same step, so the decision is JAX's preemption sync point (the runtime's
preemption service, fed by SIGTERM on any host) combined with an all-reduce of the local flags.
"""
from __future__ import annotations

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequest:
  """Polled by the training loop; installs a SIGTERM handler on construction (main thread)."""

  def __init__(self) -> None:
    self._local = threading.Event()
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame) -> None:  # noqa: ARG002
    self._local.set()

  def request(self) -> None:
    """Asks for a stop as SIGTERM would (tests, notebooks)."""
    self._local.set()

  def should_stop(self, step: int, *, sync: bool = True) -> bool:
    """True when any process was asked to stop; identical on all processes when `sync`."""
    if jax.process_count() == 1:
      return self._local.is_set()
    if not sync:
      return False
    try:
      preempted = multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # Preemption service not running (e.g. CPU clusters).
      preempted = False
    flags = multihost_utils.process_allgather(np.asarray(self._local.is_set(), np.int32))
    return bool(preempted or np.any(flags))

  def restore_handler(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
