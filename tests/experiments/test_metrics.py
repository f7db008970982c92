"""Metric files: JSONL rows, TensorBoard events, truncation of stale rows on resume."""

import glob
import math
import os

from experiments import metrics


def test_rows_events_and_resume_truncation(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), total_steps=10)
  for step in (2, 4, 6):
    writer.write(step, {"loss": 1.0 / step})
  writer.close()
  rows = metrics.read_jsonl(tmp_path / metrics.METRICS_FILE)
  assert [r["step"] for r in rows] == [2, 4, 6] and rows[0]["loss"] == 0.5
  assert glob.glob(os.path.join(tmp_path, "tensorboard", "events.out.tfevents.*"))
  # A run killed after step 6 resumes from the checkpoint at step 4: row 6 is dropped.
  writer = metrics.MetricWriter(str(tmp_path), total_steps=10, start_step=4)
  writer.write(6, {"loss": 0.25})
  writer.close()
  rows = metrics.read_jsonl(tmp_path / metrics.METRICS_FILE)
  assert [(r["step"], r["loss"]) for r in rows] == [(2, 0.5), (4, 0.25), (6, 0.25)]


def test_a_nan_scalar_is_written_not_dropped(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), total_steps=10)
  writer.write(2, {"loss": 1.0, "alpha": float("nan")})
  writer.close()
  [row] = metrics.read_jsonl(tmp_path / metrics.METRICS_FILE)
  assert row["loss"] == 1.0 and math.isnan(row["alpha"])
