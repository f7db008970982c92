"""Percentile-bootstrap bands for mean error curves (study B's 90% bands, as Garg et al.).

Prompts are resampled with replacement, the same resample for every position, so a band shows
the uncertainty from the finite set of evaluation prompts. A resample is drawn as multinomial
counts over prompts: (resamples, prompts) weights instead of (resamples, prompts, positions) data.
With several training seeds, nested_bootstrap_band resamples the seeds too.
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


def nested_bootstrap_band(errors_by_seed, seed=0, level=0.9, resamples=1000):
  """A band over training seeds and prompts: errors_by_seed is one (prompts, positions) array
  per training seed (prompt counts may differ). -> mean, lo, hi, each (positions,).

  The mean is the average of the seeds' mean curves. A resample draws seeds with replacement,
  then each drawn seed's prompts with replacement, so the band holds both the variation between
  training runs and the finite evaluation set; one seed gives bootstrap_band's band.
  """
  if not errors_by_seed:
    raise ValueError("Need the errors of at least one seed.")
  arrays = [np.asarray(e, np.float64) for e in errors_by_seed]
  if any(a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != arrays[0].shape[1] for a in arrays):
    raise ValueError(
      f"Expected (prompts, positions) arrays with equal positions, got {[a.shape for a in arrays]}."
    )
  if not 0 < level < 1:
    raise ValueError(f"level must lie in (0, 1), got {level}.")
  rng = np.random.default_rng(seed)
  per_seed = []  # (resamples, positions): each seed's prompt-resampled means
  for errors in arrays:
    prompts = errors.shape[0]
    counts = rng.multinomial(prompts, np.full(prompts, 1.0 / prompts), size=resamples)
    per_seed.append(counts @ errors / prompts)
  per_seed = np.stack(per_seed)  # (seeds, resamples, positions)
  seeds = len(arrays)
  drawn = rng.integers(0, seeds, size=(resamples, seeds))
  means = per_seed[drawn, np.arange(resamples)[:, None]].mean(axis=1)  # (resamples, positions)
  lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
  return np.mean([a.mean(axis=0) for a in arrays], axis=0), lo, hi


def seed_band(values, level=0.9, seed=0, resamples=1000):
  """One number per training seed -> (mean, lo, hi) floats: the mean over seeds and a `level`
  percentile-bootstrap band of it, the seeds resampled (bootstrap_band on a (seeds, 1) array; a
  single seed gives a zero-width band). Sweeps summarise a metric over seeds with it."""
  mean, lo, hi = bootstrap_band(
    np.asarray(values, np.float64)[:, None], seed=seed, level=level, resamples=resamples
  )
  return float(mean[0]), float(lo[0]), float(hi[0])
