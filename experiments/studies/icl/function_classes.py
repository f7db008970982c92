"""Study B's function classes for in-context regression (docs/design.md section 6B; Garg et al.
2022, Grazzi et al. 2024).

A prompt holds n points x_1..x_n in R^d and y_i = f(x_i) for one function f drawn per prompt.
Every random choice is a pure function of (key, global example index, point number):
  example key ek = fold_in(key, example_index); point i's input uses fold_in(fold_in(ek, 0), i),
  f uses fold_in(ek, 1), the label noise of point i fold_in(fold_in(ek, 2), i).
So batches do not depend on the host layout, and a prompt of n points is the first n points of
any longer prompt with the same key and index (extrapolation reads prefixes of one prompt).

Two evaluation classes follow the paper's code in drawing something per batch of PAPER_BATCH
prompts (their batch size); here such a "paper batch" is the examples whose index // PAPER_BATCH
agree, so it too is independent of the host layout:
- skewed covariance: one random rotation per paper batch (their SkewedGaussianSampler draws a
  new one after every batch), from fold_in(fold_in(key, first example of the group), 3);
- noisy linear regression: the noisy labels are rescaled so that their standard deviation over
  the paper batch (all its prompts and points, torch's unbiased std) is sqrt(d_active), as their
  eval.py's renormalize_ys (d_active = d at evaluation). Its labels are therefore a prefix of a
  longer prompt's only up to that scale, and a batch must hold whole paper batches (evaluation
  batches are multiples of PAPER_BATCH; a partial group is normalised over what it has).

Conventions follow Garg et al.'s code, which Grazzi et al. reuse:
- Curriculum: inputs are drawn in R^d and coordinates >= d_active are set to zero; the function
  is drawn over all d coordinates (tree split coordinates may fall on inactive, zero
  coordinates early in training), except the sparse support, which is drawn among the active
  coordinates (Garg et al.'s valid_coords = the curriculum's dimension).
- Error normalisation: squared error divided by the active dimension for the dense tasks
  (linear, noisy, skewed linear, ReLU nets), whose outputs have variance d_active; by k = 3 for
  sparse linear regression (variance k once d_active = d); by 1 for trees (leaf values N(0, 1)).
  Garg et al. divide by n_dims at evaluation, where d_active = d, so the two agree there; with the
  active dimension, predicting zero also scores ~1 at every curriculum stage of the dense tasks.
"""

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_DIM = 20
SPARSITY = 3
RELU_HIDDEN = 100
TREE_DEPTH = 4
NOISE_STD = 1.0
PAPER_BATCH = 64  # prompts per batch in the paper's code: a skew rotation and a noisy-label scale


# Functions: draw(key, d, d_active) -> parameter dict, apply(params, xs (n, d)) -> ys (n,).
# d_active (traced) is the curriculum's active dimension; only the sparse support uses it.


def draw_linear(key, d, d_active=None):
  del d_active
  return {"w": jax.random.normal(key, (d,))}


def draw_sparse_linear(key, d, d_active=None, sparsity=SPARSITY):
  """w ~ N(0, I) with all but `sparsity` coordinates set to 0, the support uniform without
  replacement among the active coordinates (needs d_active >= sparsity).

  The support is the first `sparsity` active entries of one random permutation of range(d): a
  uniform subset of the active ones, and exactly permutation[:sparsity] when d_active = d.
  """
  w_key, support_key = jax.random.split(key)
  permutation = jax.random.permutation(support_key, d)
  if d_active is not None:
    inactive_last = jnp.argsort(permutation >= d_active, stable=True)
    permutation = permutation[inactive_last]
  support = permutation[:sparsity]
  mask = jnp.zeros((d,), bool).at[support].set(True)
  return {"w": jnp.where(mask, jax.random.normal(w_key, (d,)), 0.0)}


def apply_linear(params, xs):
  return xs @ params["w"]


def draw_relu_2nn(key, d, d_active=None, hidden=RELU_HIDDEN):
  del d_active
  w1_key, w2_key = jax.random.split(key)
  return {"w1": jax.random.normal(w1_key, (d, hidden)), "w2": jax.random.normal(w2_key, (hidden,))}


def apply_relu_2nn(params, xs):
  """sqrt(2 / hidden) relu(x W1) W2: He scaling, so Var(y) = d_active like linear regression."""
  hidden = params["w2"].shape[0]
  return math.sqrt(2 / hidden) * jax.nn.relu(xs @ params["w1"]) @ params["w2"]


def draw_decision_tree(key, d, d_active=None, depth=TREE_DEPTH):
  """A complete binary tree: a split coordinate per internal node (heap order), N(0, 1) leaves."""
  del d_active
  coordinate_key, leaf_key = jax.random.split(key)
  return {
    "coordinates": jax.random.randint(coordinate_key, (2**depth - 1,), 0, d),
    "leaves": jax.random.normal(leaf_key, (2**depth,)),
  }


def apply_decision_tree(params, xs):
  """Goes right at a node when x[coordinate] > 0 (Garg et al.'s threshold), left otherwise."""
  internal = params["coordinates"].shape[0]
  depth = int(round(math.log2(internal + 1)))
  node = jnp.zeros(xs.shape[0], jnp.int32)
  for _ in range(depth):
    coordinate = params["coordinates"][node]
    right = jnp.take_along_axis(xs, coordinate[:, None], axis=1)[:, 0] > 0
    node = 2 * node + 1 + right.astype(jnp.int32)
  return params["leaves"][node - internal]


def skewed_input_root(key, d):
  """R (d, d) with x = z R, z ~ N(0, I): Cov(x) = R^T R has eigenvalues proportional to 1/i^2.

  As the paper's sample_transformation: R = U diag(1/i) U^T rescaled so that trace(Cov) = d,
  with U a random rotation drawn from key (Haar: QR of a Gaussian matrix, signs fixed).
  """
  q, r = jnp.linalg.qr(jax.random.normal(key, (d, d)))
  u = q * jnp.sign(jnp.diag(r))
  scales = 1.0 / np.arange(1, d + 1)
  return (u * scales) @ u.T * math.sqrt(d / np.sum(scales**2))


def _normalise_per_paper_batch(ys, example_index, d_active):
  """ys (batch, n) * sqrt(d_active) / std over the rows of the same paper batch (see the module
  docstring): the paper's renormalize_ys."""
  group = example_index // PAPER_BATCH
  same = (group[:, None] == group[None, :]).astype(ys.dtype)
  count = same.sum(axis=1) * ys.shape[1]
  mean = same @ ys.sum(axis=1) / count
  squares = same @ jnp.sum(jnp.square(ys - mean[:, None]), axis=1)
  std = jnp.sqrt(squares / jnp.maximum(count - 1, 1))
  return ys * jnp.sqrt(d_active.astype(ys.dtype)) / std[:, None]


@dataclasses.dataclass(frozen=True)
class FunctionClass:
  """A function class: how to draw f, apply it, and scale its squared error."""

  name: str
  draw: Callable
  apply: Callable
  error_scale: Callable  # d_active -> the divisor of the squared error.
  points: tuple  # The paper's point curriculum (start, end, increment).
  noise_std: float = 0.0
  skewed_inputs: bool = False
  evaluation_only: bool = False


def _active_dimension(d_active):
  return d_active


_LR_POINTS = (11, 41, 2)
_WIDE_POINTS = (26, 101, 5)

_FC = FunctionClass
FUNCTION_CLASSES = {
  fc.name: fc
  for fc in (
    _FC("linear_regression", draw_linear, apply_linear, _active_dimension, _LR_POINTS),
    _FC(
      "sparse_linear_regression", draw_sparse_linear, apply_linear, lambda _: SPARSITY, _LR_POINTS
    ),
    _FC("relu_2nn", draw_relu_2nn, apply_relu_2nn, _active_dimension, _WIDE_POINTS),
    _FC("decision_tree", draw_decision_tree, apply_decision_tree, lambda _: 1, _WIDE_POINTS),
    _FC(
      "noisy_linear_regression",
      draw_linear,
      apply_linear,
      _active_dimension,
      _LR_POINTS,
      noise_std=NOISE_STD,
      evaluation_only=True,
    ),
    _FC(
      "skewed_linear_regression",
      draw_linear,
      apply_linear,
      _active_dimension,
      _LR_POINTS,
      skewed_inputs=True,  # A training class too (Grazzi et al. train on it).
    ),
  )
}


def get_function_class(name):
  if name not in FUNCTION_CLASSES:
    raise ValueError(
      f"Unknown function class {name!r}; expected one of {sorted(FUNCTION_CLASSES)}."
    )
  return FUNCTION_CLASSES[name]


def draw_inputs(key, n_points, d, d_active, root=None):
  """(n_points, d) inputs, point i from fold_in(key, i); coordinates >= d_active are zero."""

  def one(i):
    return jax.random.normal(jax.random.fold_in(key, i), (d,))

  xs = jax.vmap(one)(jnp.arange(n_points, dtype=jnp.uint32))
  if root is not None:
    xs = xs @ root
  return jnp.where(jnp.arange(d) < d_active, xs, 0.0)


@functools.partial(jax.jit, static_argnames=("class_name", "n_points", "d"))
def _batch(key, example_index, d_active, class_name, n_points, d):
  fc = FUNCTION_CLASSES[class_name]

  def one(index):
    example_key = jax.random.fold_in(key, index)
    root = None
    if fc.skewed_inputs:
      group_key = jax.random.fold_in(key, index - index % PAPER_BATCH)
      root = skewed_input_root(jax.random.fold_in(group_key, 3), d)
    xs = draw_inputs(jax.random.fold_in(example_key, 0), n_points, d, d_active, root)
    params = fc.draw(jax.random.fold_in(example_key, 1), d, d_active)
    ys = fc.apply(params, xs)
    if fc.noise_std:
      noise_key = jax.random.fold_in(example_key, 2)
      noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(noise_key, i)))(
        jnp.arange(n_points, dtype=jnp.uint32)
      )
      ys = ys + fc.noise_std * noise
    return {"xs": xs, "ys": ys, "function": params}

  batch = jax.vmap(one)(example_index)
  if fc.noise_std:
    batch["ys"] = _normalise_per_paper_batch(batch["ys"], example_index, d_active)
  return batch


def icl_batch(
  key, class_name, n_points, *, batch_size=None, example_index=None, d=DEFAULT_DIM, d_active=None
):
  """One batch of prompts, generated on device.

  Args:
    key: the run's data key (the same for every step and host).
    class_name: a key of FUNCTION_CLASSES.
    n_points: points per prompt (static: one compilation per value).
    batch_size: with example_index None, the examples are arange(batch_size).
    example_index: (batch,) global stream positions of the examples (experiments.host_batch).
    d: input dimension (static). d_active: the curriculum's active dimension (traced; None = d).

  Returns:
    dict with xs (batch, n_points, d) float32, ys (batch, n_points) float32 and "function",
    the drawn parameters stacked over the batch (e.g. "w" (batch, d) for the linear tasks).
  """
  get_function_class(class_name)
  if example_index is None:
    if batch_size is None:
      raise ValueError("Pass batch_size or example_index.")
    example_index = jnp.arange(batch_size)
  example_index = jnp.asarray(example_index).astype(jnp.uint32)
  if batch_size is not None and example_index.shape != (batch_size,):
    raise ValueError(f"example_index has shape {example_index.shape}, batch_size {batch_size}.")
  d_active = d if d_active is None else d_active
  return _batch(key, example_index, jnp.asarray(d_active, jnp.int32), class_name, n_points, d)


# Curriculum (Garg et al.): a value starts at `start` and grows by `increment` every `interval`
# steps until `end`; step s (0-based) has seen s // interval updates.


def curriculum_value(step, start, end, increment, interval):
  if increment < 0 or interval <= 0 or start > end:
    raise ValueError(
      f"Need increment >= 0, interval > 0, start <= end; got {start}, {end}, "
      f"{increment}, {interval}."
    )
  return int(min(start + increment * (step // interval), end))


def curriculum_at(step, curriculum):
  """(d_active, n_points) at training step `step`.

  curriculum: mapping (dict or ConfigDict) with "dims" and "points", each a mapping with
  start, end, increment, interval.
  """

  def value(name):
    schedule = curriculum[name]
    return curriculum_value(
      step, schedule["start"], schedule["end"], schedule["increment"], schedule["interval"]
    )

  return value("dims"), value("points")


def horizon_points(config):
  """The training horizon: the largest number of points per prompt at the last training step."""
  return curriculum_at(max(config.num_train_steps - 1, 0), config.icl.curriculum)[1]


def default_curriculum(class_name, d=DEFAULT_DIM, interval=2000):
  """The paper's curriculum: dims 5 -> d (+1), points as the class's (start, end, increment)."""
  start, end, increment = get_function_class(class_name).points
  return {
    "dims": {"start": min(5, d), "end": d, "increment": 1, "interval": interval},
    "points": {"start": start, "end": end, "increment": increment, "interval": interval},
  }


# Prompts and errors.


def make_prompt(xs, ys):
  """xs (..., n, d), ys (..., n) -> (..., 2 n, d): x_1, y_1, x_2, y_2, ..., y in coordinate 0."""
  ys_wide = jnp.zeros_like(xs).at[..., 0].set(ys)
  stacked = jnp.stack([xs, ys_wide], axis=-2)
  return stacked.reshape(*xs.shape[:-2], 2 * xs.shape[-2], xs.shape[-1])


def read_predictions(outputs):
  """Model outputs (batch, 2 n) or (batch, 2 n, k) -> (batch, n): channel 0 at the x tokens.

  The output at the token of x_i has seen x_1, y_1, ..., x_i, so it predicts y_i.
  """
  if outputs.ndim == 3:
    outputs = outputs[..., 0]
  return outputs[:, ::2]


def error_scale(class_name, d_active):
  """The divisor of the squared error (see the module docstring)."""
  return get_function_class(class_name).error_scale(d_active)


def normalised_squared_error(predictions, ys, class_name, d_active):
  """(batch, n) squared error per position over the class's scale: predicting 0 scores ~1."""
  return jnp.square(predictions - ys) / error_scale(class_name, d_active)
