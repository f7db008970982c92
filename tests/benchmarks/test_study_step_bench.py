"""The study step benchmark runs on a tiny study B config and prints one row per model and one
for the models side by side."""

import os
import subprocess
import sys

from tests.experiments.test_train import ROOT


def test_prints_a_row_per_model_and_the_side_by_side_step():
  config = os.path.join(ROOT, "experiments", "studies", "icl", "configs", "icl.py")
  command = [
    sys.executable,
    "-m",
    "benchmarks.study_step_bench",
    f"--config={config}:variant=cpu",
    "--config.models=('mamba','transformer')",
    "--config.model.mamba.n_layers=1",
    "--config.model.mamba.d_model=8",
    "--config.model.transformer.n_layers=1",
    "--config.model.transformer.d_model=8",
    "--config.batch_size=8",
    "--steps=3",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  names = [line.split()[0] for line in lines[1:4]]
  assert names == ["mamba", "transformer", "mamba+transformer"]
  for line in lines[1:4]:
    step_ms = float(line.split()[2])
    assert step_ms > 0
  assert "3 steps each" in lines[4]
  assert "mamba 2000, transformer 12000" in lines[4]  # each projected over its own budget
