"""Percentile-bootstrap bands for mean error curves (study B's 90% bands, as Garg et al.).

Prompts are resampled with replacement, the same resample for every position, so a band shows
the uncertainty from the finite set of evaluation prompts. A resample is drawn as multinomial
counts over prompts: (resamples, prompts) weights instead of (resamples, prompts, positions) data.
"""

import numpy as np


def bootstrap_band(errors, seed=0, level=0.9, resamples=1000):
  """errors (prompts, positions) -> mean, lo, hi, each (positions,).

  lo and hi are the (1 - level) / 2 and (1 + level) / 2 quantiles of the resampled means;
  deterministic given `seed`.
  """
  errors = np.asarray(errors, np.float64)
  if errors.ndim != 2 or errors.shape[0] < 1:
    raise ValueError(f"Expected errors (prompts, positions), got shape {errors.shape}.")
  if not 0 < level < 1:
    raise ValueError(f"level must lie in (0, 1), got {level}.")
  prompts = errors.shape[0]
  rng = np.random.default_rng(seed)
  counts = rng.multinomial(prompts, np.full(prompts, 1.0 / prompts), size=resamples)
  means = counts @ errors / prompts  # (resamples, positions)
  lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
  return errors.mean(axis=0), lo, hi
