"""Run logs: TensorBoard event files (tensorboardX), a JSONL file and a tqdm progress bar.

Only the first process writes; every process may call. On resume the JSONL keeps the rows up to
the restored step and drops the ones a killed run wrote after its last checkpoint.
"""

import json
import os

import jax
import numpy as np
import tqdm
from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
  def __init__(self, workdir, total_steps, start_step=0):
    self._enabled = jax.process_index() == 0
    self._path = os.path.join(workdir, METRICS_FILE)
    if not self._enabled:
      return
    _truncate_jsonl(self._path, start_step)
    self._jsonl = open(self._path, "a")
    self._tensorboard = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"))
    self._bar = tqdm.tqdm(
      total=total_steps, initial=start_step, dynamic_ncols=True, disable=None, desc="train"
    )

  def write(self, step, metrics, prefix=""):
    """Logs scalars at `step`: one JSONL row {"step": step, ...} and TensorBoard scalars, every
    one given (a NaN too: what is not worth logging is the caller's to leave out)."""
    if not self._enabled:
      return
    scalars = {f"{prefix}{key}": float(np.asarray(value)) for key, value in metrics.items()}
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()
    for key, value in scalars.items():
      self._tensorboard.add_scalar(key, value, int(step))

  def progress(self, step, **postfix):
    if self._enabled:
      self._bar.update(step - self._bar.n)
      if postfix:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

  def close(self):
    if self._enabled:
      self._bar.close()
      self._jsonl.close()
      self._tensorboard.close()


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _truncate_jsonl(path, start_step):
  if not os.path.exists(path):
    return
  rows = [row for row in read_jsonl(path) if row.get("step", 0) <= start_step]
  with open(path, "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
