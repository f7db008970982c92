"""SIGTERM (what a preempted TPU VM or a cluster scheduler sends) becomes a request to stop:
the training loop saves a checkpoint at the next step boundary and exits cleanly."""

import signal

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequest:
  """Context manager installing the handler; `requested()` agrees across hosts so that every
  process stops at the same step (a lone host leaving would deadlock the collectives)."""

  def __init__(self, signals=(signal.SIGTERM,)):
    self._signals = signals
    self._previous = {}
    self._flag = False

  def __enter__(self):
    for sig in self._signals:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum, frame):
    del signum, frame
    self._flag = True

  def requested(self):
    if jax.process_count() == 1:
      return self._flag
    flags = multihost_utils.process_allgather(np.asarray(self._flag, np.int32))
    return bool(np.any(flags))
