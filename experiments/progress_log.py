"""Training progress as plain lines when stdout is not a terminal.

tqdm hides its bar when stdout is redirected (`make demo > log`), so a run would print nothing
for minutes. `ProgressLog.update` then prints one line per logged step instead: step, loss,
steps/s since the previous line (so compilation counts only in the first) and the ETA at that rate.
"""

import sys
import time

import jax


class ProgressLog:
  def __init__(self, total_steps, start_step=0, stream=None, clock=time.monotonic):
    self._stream = sys.stdout if stream is None else stream
    self._enabled = jax.process_index() == 0 and not _is_terminal(self._stream)
    self._total, self._clock = total_steps, clock
    self._last_step, self._last_time = start_step, clock()

  def update(self, step, loss):
    """Prints the line of `step` (nothing on a terminal, where the tqdm bar shows it)."""
    if not self._enabled:
      return
    now = self._clock()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    print(format_line(step, self._total, loss, rate), file=self._stream, flush=True)


def format_line(step, total, loss, steps_per_second):
  """ "step 120/1000  loss 0.5321  3.45 steps/s  ETA 4m15s"."""
  eta = (total - step) / steps_per_second if steps_per_second > 0 else float("inf")
  return (
    f"step {step}/{total}  loss {loss:.4g}  {steps_per_second:.3g} steps/s  ETA {_duration(eta)}"
  )


def _duration(seconds):
  if seconds == float("inf"):
    return "?"
  seconds = round(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _is_terminal(stream):
  isatty = getattr(stream, "isatty", None)
  return bool(isatty and isatty())
