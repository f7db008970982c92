"""The peer side of `python -m benchmarks.model_bench`: one training step in mambapy.

Runs in the benchmark's separate peer environment (torch 2.13.0 CPU, mambapy 1.2.0), never in
the project's: `python benchmarks/peer_mambapy.py '{"d_model": 16, ...}'` prints one JSON line
with the median step time and the process's peak resident memory. Never imported.
"""

import json
import resource
import statistics
import sys
import time

import torch
from mambapy.mamba import Mamba, MambaConfig


def main(spec):
  torch.manual_seed(0)
  config = MambaConfig(
    d_model=spec["d_model"],
    n_layers=spec["n_layers"],
    d_state=spec["d_state"],
    expand_factor=spec["expand"],
    dt_rank=spec["dt_rank"],
    d_conv=spec["d_conv"],
    pscan=True,
  )
  model = Mamba(config)
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  x = torch.randn(spec["batch"], spec["length"], spec["d_model"])
  target = torch.randn_like(x)

  def train_step():
    optimizer.zero_grad(set_to_none=True)
    loss = torch.mean((model(x) - target) ** 2)
    loss.backward()
    optimizer.step()
    return float(loss)

  train_step()  # warm-up
  times = []
  for _ in range(spec["repeats"]):
    start = time.perf_counter()
    train_step()
    times.append(time.perf_counter() - start)
  peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(
    json.dumps(
      {
        "step_seconds": statistics.median(times),
        "peak_rss_mib": peak_mib,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
      }
    )
  )


if __name__ == "__main__":
  main(json.loads(sys.argv[1]))
