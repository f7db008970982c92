"""Lengths drawn per step and their buckets (studies A and B)."""

import pytest

from experiments.training_lengths import bucket_for, draw_length, length_buckets


def test_length_draw():
  draws = [draw_length(0, step, 3, 7) for step in range(300)]
  assert set(draws) == {3, 4, 5, 6, 7}
  assert draws == [draw_length(0, step, 3, 7) for step in range(300)]
  assert draws != [draw_length(1, step, 3, 7) for step in range(300)]
  assert draw_length(9, 12, 1, 1024) == draw_length(9, 12, 1, 1024)
  assert draw_length(0, 0, 5, 5) == 5
  with pytest.raises(ValueError, match="min_length <= max_length"):
    draw_length(0, 0, 8, 4)


def test_buckets_cover_the_range():
  assert length_buckets(1, 11, 1) == [11]
  assert length_buckets(4, 4, 3) == [4]
  buckets = length_buckets(1, 11, 3)
  assert buckets[-1] == 11 and len(buckets) <= 3 and buckets == sorted(set(buckets))
  assert length_buckets(4, 32, 4) == [4, 8, 16, 32]
  for length in range(1, 12):
    bucket = bucket_for(length, buckets)
    assert bucket >= length and all(b < length for b in buckets if b < bucket)
  with pytest.raises(ValueError, match="exceeds the largest bucket"):
    bucket_for(12, buckets)
