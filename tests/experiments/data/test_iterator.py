"""batches(): a pure function of (seed, step), resumable, split across hosts by slices."""

import itertools

import numpy as np
import pytest

from experiments.data.iterator import StepBatches, batches

SOURCE = [{"image": np.full((3, 3), i, np.float32), "label": np.int32(i % 10)} for i in range(37)]


def _take(n, *args, **kwargs):
  return list(itertools.islice(batches(*args, **kwargs), n))


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_same_seed_and_step_same_batch():
  first = _take(4, SOURCE, 8, seed=3)
  again = _take(4, SOURCE, 8, seed=3)
  assert all(_equal(a, b) for a, b in zip(first, again))
  other = _take(4, SOURCE, 8, seed=4)
  assert not all(_equal(a, b) for a, b in zip(first, other))


def test_resume_equals_continuing():
  continuous = _take(10, SOURCE, 8, seed=1)
  resumed = _take(4, SOURCE, 8, seed=1, start_step=6)
  assert all(_equal(a, b) for a, b in zip(continuous[6:], resumed))
  assert [b["index"][0] for b in resumed] == [48, 56, 64, 72]


def test_hosts_read_slices_of_the_global_batch():
  single = _take(5, SOURCE, 12, seed=0, start_step=2)
  hosts = [
    _take(5, SOURCE, 12, seed=0, start_step=2, process_index=p, process_count=3) for p in range(3)
  ]
  for step in range(5):
    assert hosts[0][step]["image"].shape == (4, 3, 3)
    joined = {k: np.concatenate([h[step][k] for h in hosts]) for k in single[step]}
    assert _equal(joined, single[step])


def test_indivisible_global_batch():
  with pytest.raises(ValueError, match="not divisible by the process count 3"):
    next(batches(SOURCE, 8, seed=0, process_count=3))


def test_epochs_are_permutations_reshuffled():
  # 37 examples: positions 0..36 are epoch 0, 37..73 epoch 1.
  stream = np.concatenate([b["image"][:, 0, 0] for b in _take(74, SOURCE, 1, seed=5)])
  epoch0, epoch1 = stream[:37], stream[37:]
  assert sorted(epoch0) == sorted(epoch1) == list(range(37))
  assert not np.array_equal(epoch0, np.arange(37)) and not np.array_equal(epoch0, epoch1)


def test_unshuffled_keeps_source_order():
  got = _take(3, SOURCE, 4, seed=0, shuffle=False)
  np.testing.assert_array_equal(got[2]["image"][:, 0, 0], [8, 9, 10, 11])
  np.testing.assert_array_equal(got[2]["label"], [8, 9, 0, 1])
  assert got[2]["label"].dtype == np.int32


def test_num_steps_bounds_the_iterator():
  assert len(list(batches(SOURCE, 4, seed=0, num_steps=3))) == 3


def test_step_batches_serve_any_step_in_or_out_of_order():
  continuous = _take(8, SOURCE, 8, seed=2, process_index=1, process_count=2)
  by_step = StepBatches(SOURCE, 8, seed=2, process_index=1, process_count=2)
  for step in (0, 1, 2, 6, 7, 3):
    assert _equal(by_step(step), continuous[step])
