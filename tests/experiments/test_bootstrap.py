"""Bootstrap bands: containment, determinism, width as for a mean, narrowing with more prompts."""

import numpy as np
import pytest

from experiments.bootstrap import bootstrap_band, nested_bootstrap_band, seed_band


def _errors(prompts, positions=5, seed=0):
  return np.random.default_rng(seed).exponential(1.0, (prompts, positions))


def test_band_contains_mean_and_is_deterministic():
  errors = _errors(200)
  mean, lo, hi = bootstrap_band(errors, seed=3)
  assert mean.shape == lo.shape == hi.shape == (5,)
  np.testing.assert_allclose(mean, errors.mean(0))
  assert np.all(lo < mean) and np.all(mean < hi)
  again = bootstrap_band(errors, seed=3)
  for a, b in zip((mean, lo, hi), again):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(bootstrap_band(errors, seed=4)[1], lo)


def test_width_matches_normal_theory_and_narrows_with_more_prompts():
  few, many = _errors(100, seed=1), _errors(1600, seed=2)
  width_few = np.subtract(*bootstrap_band(few)[2:0:-1])
  width_many = np.subtract(*bootstrap_band(many)[2:0:-1])
  # 90% band of a mean: 2 * 1.645 * std / sqrt(prompts); 16x the prompts -> 4x narrower.
  np.testing.assert_allclose(width_many, 2 * 1.645 * many.std(0) / np.sqrt(1600), rtol=0.15)
  np.testing.assert_allclose(width_few.mean() / width_many.mean(), 4.0, rtol=0.25)


def test_level_and_shape_checks():
  errors = _errors(300)
  _, lo50, hi50 = bootstrap_band(errors, level=0.5)
  _, lo90, hi90 = bootstrap_band(errors, level=0.9)
  assert np.all(hi50 - lo50 < hi90 - lo90)
  with pytest.raises(ValueError):
    bootstrap_band(errors[0])
  with pytest.raises(ValueError):
    bootstrap_band(errors, level=1.0)


def test_nested_band_holds_the_spread_between_seeds():
  """Three seeds whose curves differ by offsets far above the prompt noise: the nested band
  spans the offsets (the pooled prompt band would not), its mean is the seeds' mean, and one
  seed gives a band as wide as bootstrap_band's."""
  seeds = [_errors(400, seed=s) + offset for s, offset in enumerate((0.0, 1.0, 2.0))]
  mean, lo, hi = nested_bootstrap_band(seeds, seed=1)
  np.testing.assert_allclose(mean, np.mean([e.mean(0) for e in seeds], axis=0))
  assert np.all(lo < mean) and np.all(mean < hi)
  assert np.all(hi - lo > 1.0)
  pooled = bootstrap_band(np.concatenate(seeds), seed=1)
  assert np.all(pooled[2] - pooled[1] < 0.3)
  one = nested_bootstrap_band(seeds[:1], seed=2)
  width_one, width_flat = one[2] - one[1], np.subtract(*bootstrap_band(seeds[0], seed=2)[2:0:-1])
  np.testing.assert_allclose(width_one, width_flat, rtol=0.2)
  again = nested_bootstrap_band(seeds, seed=1)
  np.testing.assert_array_equal(again[1], lo)
  with pytest.raises(ValueError, match="equal positions"):
    nested_bootstrap_band([_errors(10, 5), _errors(10, 4)])


def test_seed_band_is_the_band_of_the_seeds_means():
  mean, lo, hi = seed_band([1.0, 2.0, 6.0], level=0.9, seed=0)
  expected = bootstrap_band(np.array([[1.0], [2.0], [6.0]]), seed=0, level=0.9)
  assert (mean, lo, hi) == tuple(float(x[0]) for x in expected)
  assert mean == 3.0 and lo < mean < hi
  assert seed_band([0.5]) == (0.5, 0.5, 0.5)  # one seed: a zero-width band
