"""Bounds how long the trainer waits on anything that can hang: a data batch, a step (with its
collectives), a checkpoint save.

On a pod a hung worker is worse than a dead one: it holds the slice and its peers wait on it
forever. The trainer wraps each such wait in `Watchdog.waiting(what, seconds)`; a daemon thread
checks the clock, and when a wait runs past its limit it prints one line naming what was awaited
and ends the process with `cli.EXIT_STALLED` (`os._exit`: the main thread is stuck, so an exception
could not be delivered). Peers blocked in a collective with the dead process hit their own limits
and exit the same way.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Callable, Iterator

from diffcamera_jax.cli import EXIT_STALLED


class Watchdog:
  """One daemon thread watching the main thread's current wait (at most one at a time)."""

  def __init__(self, program: str = "train", poll_seconds: float = 0.5,
               on_expiry: Callable[[str], None] | None = None):
    self._program = program
    self._poll = poll_seconds
    self._on_expiry = on_expiry or self._exit
    self._lock = threading.Lock()
    self._current: tuple[str, float, float] | None = None  # (what, limit, deadline)
    self._closed = threading.Event()
    self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
    self._thread.start()

  @contextlib.contextmanager
  def waiting(self, what: str, seconds: float) -> Iterator[None]:
    """Runs the body under a deadline of `seconds` (<= 0: no limit)."""
    if seconds <= 0:
      yield
      return
    with self._lock:
      outer = self._current
      self._current = (what, seconds, time.monotonic() + seconds)
    try:
      yield
    finally:
      with self._lock:
        self._current = outer

  def close(self) -> None:
    self._closed.set()
    self._thread.join(timeout=5 * self._poll)

  def _watch(self) -> None:
    while not self._closed.wait(self._poll):
      with self._lock:
        current = self._current
      if current is not None and time.monotonic() > current[2]:
        what, limit, _ = current
        self._on_expiry(f"waited more than {limit:g} s for {what}; stopping this process "
                        "(config.train.watchdog_seconds)")
        return

  def _exit(self, message: str) -> None:
    logging.error("%s", message)
    print(f"{self._program}: error: {message}", file=sys.stderr, flush=True)
    os._exit(EXIT_STALLED)
