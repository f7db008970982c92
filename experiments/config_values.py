"""Checks of config values, each raising a ValueError that names the field and what it expects.

Lists in configs are tuples (`--config.eval.lengths='(1,2,4)'` on the command line); these
checks run when a study's task is built, before any training step.
"""


def positive_ints(value, field, *, allow_empty=False):
  """`value` as a list of positive integers; it must be a tuple (or list) of them."""
  ok = isinstance(value, (tuple, list)) and all(
    isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in value
  )
  if not ok or (not value and not allow_empty):
    raise ValueError(
      f"{field} = {value!r}; expected a tuple of positive integers, e.g. --{field}='(1,2,4)'"
    )
  return list(value)


def distinct(values, field):
  """`values` unchanged; ValueError naming `field` when one repeats."""
  if len(set(values)) != len(values):
    raise ValueError(f"{field} = {tuple(values)!r}; expected distinct values")
  return values


def length_range(minimum, maximum, field):
  """(minimum, maximum) with 1 <= minimum <= maximum, integers."""
  if not (isinstance(minimum, int) and isinstance(maximum, int) and 1 <= minimum <= maximum):
    raise ValueError(
      f"{field}_min = {minimum!r}, {field}_max = {maximum!r}; expected integers "
      f"with 1 <= min <= max"
    )
  return minimum, maximum


def config_arguments(arg, **defaults):
  """The `a=1,b=x` string after a config path (big_vision style) as a dict over `defaults`.

  `--config=path/to/config.py:function_class=relu_2nn,variant=cpu` calls get_config with that
  string; unknown keys raise, naming the known ones.
  """
  values = dict(defaults)
  for item in filter(None, (part.strip() for part in (arg or "").split(","))):
    key, sep, value = item.partition("=")
    if not sep or key.strip() not in defaults:
      raise ValueError(
        f"config argument {item!r}; expected key=value with key one of {sorted(defaults)}"
      )
    values[key.strip()] = value.strip()
  return values
