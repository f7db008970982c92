"""Config value checks and big_vision-style config arguments."""

import pytest

from experiments import config_values


def test_positive_ints_take_tuples_only():
  assert config_values.positive_ints((1, 2, 4), "config.eval.lengths") == [1, 2, 4]
  for bad in ("1,2", (0, 1), (1, "2"), (True,), ()):
    with pytest.raises(ValueError, match=r"config\.eval\.lengths = .*tuple of positive"):
      config_values.positive_ints(bad, "config.eval.lengths")
  assert config_values.positive_ints((), "f", allow_empty=True) == []


def test_distinct_and_length_range():
  with pytest.raises(ValueError, match="config.sweep.lams = \\(0, 0\\); expected distinct"):
    config_values.distinct([0, 0], "config.sweep.lams")
  assert config_values.length_range(2, 4, "config.sequence.train_length") == (2, 4)
  with pytest.raises(ValueError, match="config.sequence.train_length_min = 5"):
    config_values.length_range(5, 4, "config.sequence.train_length")


def test_config_arguments():
  defaults = dict(function_class="linear_regression", variant="paper")
  assert config_values.config_arguments(None, **defaults) == defaults
  assert config_values.config_arguments("variant=cpu, function_class=relu_2nn", **defaults) == {
    "function_class": "relu_2nn",
    "variant": "cpu",
  }
  for bad in ("cpu", "task=relu_2nn"):
    with pytest.raises(ValueError, match="key one of"):
      config_values.config_arguments(bad, **defaults)
