"""Progress lines for a training run whose stdout is not a terminal."""

import io

from experiments import progress_log


class Terminal(io.StringIO):
  def isatty(self):
    return True


def test_the_line_has_step_loss_rate_and_eta():
  line = progress_log.format_line(120, 1000, 0.532149, 4.0)
  assert line == "step 120/1000  loss 0.5321  4 steps/s  ETA 3m40s"
  assert progress_log.format_line(1, 100_001, 1.0, 10.0).endswith("ETA 2h46m")
  assert progress_log.format_line(5, 10, 1.0, 0.0).endswith("ETA ?")


def test_lines_only_off_a_terminal_with_the_rate_since_the_last():
  times = iter([0.0, 30.0, 32.0])  # construction (compiling comes next), then two updates
  stream = io.StringIO()
  log = progress_log.ProgressLog(100, start_step=40, stream=stream, clock=lambda: next(times))
  log.update(50, 2.0)
  log.update(60, 1.5)
  assert stream.getvalue().splitlines() == [
    "step 50/100  loss 2  0.333 steps/s  ETA 2m30s",
    "step 60/100  loss 1.5  5 steps/s  ETA 0m08s",
  ]
  terminal = Terminal()
  progress_log.ProgressLog(100, stream=terminal).update(10, 1.0)
  assert terminal.getvalue() == ""
