"""Multi-host start-up through JAX's own multi-controller runtime (`jax.distributed`).

On Cloud TPU pods (and SLURM / Open MPI clusters) `jax.distributed.initialize()` detects the
coordinator, process count and id by itself; elsewhere they are given explicitly. Every process then
runs the same program over the global mesh. Must run before anything touches a JAX device.
"""
from __future__ import annotations

import logging
import os

import jax

# Environment variables that mean "this process is one of several in a cluster JAX can detect".
_CLUSTER_MARKERS = ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS")


def _detected_cluster() -> bool:
  if any(os.environ.get(name) for name in _CLUSTER_MARKERS):
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts or not hosts
  if int(os.environ.get("SLURM_NTASKS", "1")) > 1 or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return True
  return False


def initialize(mode: str = "auto", coordinator_address: str = "", num_processes: int = 0,
               process_id: int = -1, heartbeat_seconds: int = 100) -> bool:
  """Joins the multi-controller runtime; returns True when this run spans several processes.

  mode: "auto" (explicit flags if given, else auto-detect a TPU pod / SLURM / MPI cluster),
  "on" (always call `jax.distributed.initialize`), "off" (single process).
  `heartbeat_seconds`: how long a silent peer is waited for before the run is ended.
  """
  if heartbeat_seconds < 1:
    raise ValueError(f"--heartbeat_seconds={heartbeat_seconds}: must be >= 1")
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"--distributed={mode!r}: expected 'auto', 'on' or 'off'")
  if mode == "off":
    return False
  explicit = bool(coordinator_address)
  if explicit and (num_processes <= 0 or process_id < 0):
    raise ValueError("--coordinator_address needs --num_processes (> 0) and --process_id (>= 0)")
  if mode == "auto" and not explicit and not _detected_cluster():
    return False
  if explicit:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               heartbeat_timeout_seconds=heartbeat_seconds)
  else:
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_seconds)
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return jax.process_count() > 1
