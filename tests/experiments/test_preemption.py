"""SIGTERM turns into a stop request; the previous handler comes back afterwards."""

import os
import signal

from experiments import preemption


def test_sigterm_sets_the_request_and_handler_is_restored():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.StopRequest() as stop:
    assert not stop.requested()
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested()
  assert signal.getsignal(signal.SIGTERM) is before
