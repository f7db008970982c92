"""Study-B function classes: shapes, statistics, functions, determinism, curriculum, prompts,
errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import host_batch
from experiments.studies.icl import function_classes
from experiments.studies.icl.function_classes import (
  FUNCTION_CLASSES,
  curriculum_at,
  curriculum_value,
  default_curriculum,
  icl_batch,
  make_prompt,
  normalised_squared_error,
  read_predictions,
)

D, N, B = 20, 41, 512


@pytest.fixture(scope="module")
def batches():
  """One large batch per function class (B prompts of N points in R^D), shared by the statistics
  tests."""
  return {
    name: jax.tree.map(np.asarray, icl_batch(jax.random.key(0), name, N, batch_size=B))
    for name in FUNCTION_CLASSES
  }


def test_registry_names():
  assert set(FUNCTION_CLASSES) == {
    "linear_regression",
    "sparse_linear_regression",
    "relu_2nn",
    "decision_tree",
    "noisy_linear_regression",
    "skewed_linear_regression",
  }
  assert {n for n, t in FUNCTION_CLASSES.items() if t.evaluation_only} == {
    "noisy_linear_regression"
  }
  with pytest.raises(ValueError, match="Unknown function class"):
    icl_batch(jax.random.key(0), "quadratic", 5, batch_size=2)


def test_shapes_and_dtypes(batches):
  for name, batch in batches.items():
    assert batch["xs"].shape == (B, N, D), name
    assert batch["ys"].shape == (B, N), name
    assert batch["xs"].dtype == np.float32 and batch["ys"].dtype == np.float32, name
    assert np.all(np.isfinite(batch["ys"])), name


def test_inputs_are_standard_normal(batches):
  xs = batches["linear_regression"]["xs"]
  assert abs(xs.mean()) < 0.01
  np.testing.assert_allclose(xs.var(axis=(0, 1)), 1.0, atol=0.04)  # Per coordinate, 21k draws.
  cov = np.cov(xs.reshape(-1, D), rowvar=False)
  assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.04  # Independent coordinates.


def test_linear_regression_function(batches):
  batch = batches["linear_regression"]
  w = batch["function"]["w"]
  assert w.shape == (B, D)
  assert abs(w.mean()) < 0.03 and abs(w.var() - 1) < 0.05
  np.testing.assert_allclose(batch["ys"], np.einsum("bnd,bd->bn", batch["xs"], w), atol=1e-4)


def test_sparse_linear_regression_has_three_nonzeros(batches):
  batch = batches["sparse_linear_regression"]
  w = batch["function"]["w"]
  assert np.all(np.count_nonzero(w, axis=1) == 3)
  assert abs(w[w != 0].var() - 1) < 0.1
  counts = np.count_nonzero(w, axis=0)  # Support uniform over coordinates: ~B * 3 / D each.
  assert counts.min() > 40 and counts.max() < 120
  np.testing.assert_allclose(batch["ys"], np.einsum("bnd,bd->bn", batch["xs"], w), atol=1e-4)


def test_sparse_support_lies_among_the_active_dimensions():
  """As Garg et al. (valid_coords = the curriculum's dimension): never a coordinate >= d_active,
  and every active coordinate is used."""
  batch = icl_batch(jax.random.PRNGKey(3), "sparse_linear_regression", 4, batch_size=B, d_active=5)
  w = np.asarray(batch["function"]["w"])
  assert np.all(np.count_nonzero(w, axis=1) == 3)
  assert not np.any(w[:, 5:])
  counts = np.count_nonzero(w, axis=0)[:5]  # ~B * 3 / 5 = 307 each.
  assert counts.min() > 250 and counts.max() < 365


def test_sparse_support_at_full_dimension_is_the_unrestricted_draw():
  """d_active = d draws exactly permutation(d)[:3], the distribution of the draw without a
  curriculum."""
  keys = jax.random.split(jax.random.PRNGKey(4), 256)
  restricted = jax.vmap(lambda k: function_classes.draw_sparse_linear(k, D, jnp.int32(D)))(keys)
  unrestricted = jax.vmap(lambda k: function_classes.draw_sparse_linear(k, D))(keys)
  np.testing.assert_array_equal(restricted["w"], unrestricted["w"])
  supports = jax.vmap(lambda k: jax.random.permutation(jax.random.split(k)[1], D)[:3])(keys)
  np.testing.assert_array_equal(
    np.sort(np.nonzero(unrestricted["w"])[1].reshape(-1, 3)), np.sort(np.asarray(supports), axis=1)
  )


def test_relu_2nn_function_and_scale(batches):
  batch = batches["relu_2nn"]
  w1, w2 = batch["function"]["w1"], batch["function"]["w2"]
  assert w1.shape == (B, D, 100) and w2.shape == (B, 100)
  expected = np.sqrt(2 / 100) * np.einsum(
    "bnh,bh->bn", np.maximum(np.einsum("bnd,bdh->bnh", batch["xs"], w1), 0), w2
  )
  np.testing.assert_allclose(batch["ys"], expected, rtol=1e-4, atol=1e-3)
  # He scaling: Var(y) = d (the pre-activation variance), so y / sqrt(d) has variance ~1.
  assert abs(batch["ys"].var() / D - 1) < 0.15


def _tree_value(coordinates, leaves, x):
  node = 0
  while node < len(coordinates):
    node = 2 * node + (2 if x[coordinates[node]] > 0 else 1)
  return leaves[node - len(coordinates)]


def test_decision_tree_function(batches):
  batch = batches["decision_tree"]
  coordinates, leaves = batch["function"]["coordinates"], batch["function"]["leaves"]
  assert coordinates.shape == (B, 15) and leaves.shape == (B, 16)
  assert coordinates.min() == 0 and coordinates.max() == D - 1
  for b in range(B):
    assert len(np.unique(batch["ys"][b])) <= 16
    assert np.isin(batch["ys"][b], leaves[b]).all()
  for b in range(5):
    expected = [_tree_value(coordinates[b], leaves[b], x) for x in batch["xs"][b]]
    np.testing.assert_array_equal(batch["ys"][b], expected)
  assert abs(leaves.var() - 1) < 0.06 and abs(batch["ys"].var() - 1) < 0.15


def test_noisy_labels_are_renormalised_per_paper_batch(batches):
  """As the paper's renormalize_ys: within each batch of PAPER_BATCH prompts the noisy labels
  have standard deviation sqrt(d); under that scale they are x w plus unit noise."""
  batch = batches["noisy_linear_regression"]
  clean = np.einsum("bnd,bd->bn", batch["xs"], batch["function"]["w"])
  groups = B // function_classes.PAPER_BATCH
  ys = batch["ys"].reshape(groups, -1)
  clean = clean.reshape(groups, -1)
  np.testing.assert_allclose(ys.std(axis=1, ddof=1), np.sqrt(D), rtol=1e-4)
  scales = np.sum(ys * clean, axis=1) / np.sum(clean * clean, axis=1)
  noise = ys / scales[:, None] - clean
  assert abs(noise.mean()) < 0.02 and abs(noise.std() - 1) < 0.03
  assert np.ptp(scales) > 1e-3  # each paper batch has its own scale
  assert abs(scales.mean() - np.sqrt(D / (D + 1))) < 0.02


def test_skewed_inputs_rotate_per_paper_batch(batches):
  """x = z R_g: z the linear task's inputs, R_g one skewed root per batch of PAPER_BATCH
  prompts (the paper redraws its rotation per batch), with eigenvalues of R^T R ~ 1/i^2."""
  skewed = batches["skewed_linear_regression"]["xs"]
  plain = batches["linear_regression"]["xs"]
  key = jax.random.key(0)
  roots = []
  for group in (0, 1):
    first = group * function_classes.PAPER_BATCH
    root = np.asarray(
      function_classes.skewed_input_root(jax.random.fold_in(jax.random.fold_in(key, first), 3), D)
    )
    members = slice(first, first + function_classes.PAPER_BATCH)
    np.testing.assert_allclose(skewed[members], plain[members] @ root, rtol=1e-4, atol=1e-4)
    roots.append(root)
  covariance = roots[0].T @ roots[0]
  eigenvalues = np.sort(np.linalg.eigvalsh(covariance))[::-1]
  np.testing.assert_allclose(eigenvalues.sum(), D, rtol=1e-5)
  np.testing.assert_allclose(
    eigenvalues / eigenvalues[0], 1 / np.arange(1, D + 1) ** 2, rtol=1e-4, atol=1e-7
  )
  assert not np.allclose(roots[0], roots[1], atol=0.1)


def test_same_key_same_batch_and_other_key_differs():
  first = icl_batch(jax.random.key(3), "linear_regression", N, batch_size=B)
  again = icl_batch(jax.random.key(3), "linear_regression", N, batch_size=B)
  other = icl_batch(jax.random.key(4), "linear_regression", N, batch_size=B)
  np.testing.assert_array_equal(first["xs"], again["xs"])
  np.testing.assert_array_equal(first["ys"], again["ys"])
  assert not np.allclose(first["xs"], other["xs"])


@pytest.mark.parametrize("name", ["noisy_linear_regression", "skewed_linear_regression"])
def test_example_index_not_host_position_drives_randomness(name):
  """Hosts holding whole paper batches see the prompts of one host; a skewed prompt is the
  same wherever it sits (its rotation follows its index)."""
  key = jax.random.key(5)
  whole = icl_batch(key, name, N, example_index=host_batch.host_examples(3, B))
  parts = [
    icl_batch(key, name, N, example_index=host_batch.host_examples(3, B, p, 4)) for p in range(4)
  ]
  for field in ("xs", "ys"):
    np.testing.assert_array_equal(np.concatenate([p[field] for p in parts]), whole[field])
  if name == "skewed_linear_regression":
    single = icl_batch(key, name, N, example_index=[3 * B + 7])
    # Same draws; the rotation may round differently at another batch shape.
    np.testing.assert_allclose(single["ys"][0], whole["ys"][7], rtol=1e-5, atol=1e-5)


def test_shorter_prompt_is_a_prefix_of_longer():
  key = jax.random.key(6)
  long = icl_batch(key, "skewed_linear_regression", N, batch_size=B)
  short = icl_batch(key, "skewed_linear_regression", 11, batch_size=B)
  np.testing.assert_array_equal(short["xs"], long["xs"][:, :11])
  # Same draws; x @ w may round differently at another shape.
  np.testing.assert_allclose(short["ys"], long["ys"][:, :11], rtol=1e-5, atol=1e-5)


def test_curriculum_values():
  assert [curriculum_value(s, 5, 20, 1, 2000) for s in (0, 1999, 2000, 3999, 4000, 29_999)] == [
    5,
    5,
    6,
    6,
    7,
    19,
  ]
  assert curriculum_value(30_000, 5, 20, 1, 2000) == 20
  assert curriculum_value(10**7, 5, 20, 1, 2000) == 20
  linear = default_curriculum("linear_regression")
  assert curriculum_at(0, linear) == (5, 11)
  assert curriculum_at(2000, linear) == (6, 13)
  assert curriculum_at(15 * 2000 - 1, linear) == (19, 39)
  assert curriculum_at(15 * 2000, linear) == (20, 41)
  assert curriculum_at(500_000, linear) == (20, 41)
  trees = ml_collections.ConfigDict(default_curriculum("decision_tree"))  # Configs work too.
  assert curriculum_at(0, trees) == (5, 26)
  assert curriculum_at(4000, trees) == (7, 36)
  assert curriculum_at(10**6, trees) == (20, 101)
  assert default_curriculum("relu_2nn")["points"] == default_curriculum("decision_tree")["points"]
  assert default_curriculum("sparse_linear_regression")["points"] == linear["points"]
  with pytest.raises(ValueError):
    curriculum_value(0, 20, 5, 1, 2000)


def test_inactive_dimensions_are_zero():
  batch = icl_batch(jax.random.key(8), "linear_regression", N, batch_size=64, d_active=5)
  xs, w = np.asarray(batch["xs"]), np.asarray(batch["function"]["w"])
  assert np.all(xs[..., 5:] == 0)
  assert np.all(xs[..., :5] != 0)
  np.testing.assert_allclose(batch["ys"], np.einsum("bnd,bd->bn", xs[..., :5], w[:, :5]), atol=1e-4)
  # d_active is traced: any value, no recompilation, the same draws on the active coordinates.
  compiled = getattr(function_classes._batch, "_cache_size", lambda: None)()
  wider = icl_batch(jax.random.key(8), "linear_regression", N, batch_size=64, d_active=12)
  assert getattr(function_classes._batch, "_cache_size", lambda: None)() == compiled
  assert np.all(np.asarray(wider["xs"])[..., 12:] == 0)
  np.testing.assert_array_equal(np.asarray(wider["xs"])[..., :5], xs[..., :5])


def test_prompt_layout():
  xs = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4)
  ys = -1.0 - jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
  prompt = np.asarray(make_prompt(xs, ys))
  assert prompt.shape == (2, 6, 4)
  np.testing.assert_array_equal(prompt[:, 0::2], xs)
  np.testing.assert_array_equal(prompt[:, 1::2, 0], ys)
  np.testing.assert_array_equal(prompt[:, 1::2, 1:], 0.0)
  # The output at the token of x_i (position 2 i) is read as the prediction of y_i.
  outputs = jnp.broadcast_to(jnp.arange(6, dtype=jnp.float32), (2, 6))
  np.testing.assert_array_equal(read_predictions(outputs), [[0, 2, 4]] * 2)
  np.testing.assert_array_equal(read_predictions(outputs[..., None]), [[0, 2, 4]] * 2)


@pytest.mark.parametrize(
  "name, expected",
  [
    ("linear_regression", 1.0),
    ("sparse_linear_regression", 1.0),
    ("relu_2nn", 1.0),
    ("decision_tree", 1.0),
    ("skewed_linear_regression", 1.0),
    ("noisy_linear_regression", 1.0),  # renormalised to variance d
  ],
)
def test_predicting_zero_scores_one(batches, name, expected):
  batch = batches[name]
  errors = np.asarray(normalised_squared_error(np.zeros_like(batch["ys"]), batch["ys"], name, D))
  assert errors.shape == (B, N)
  # Per-prompt means vary with the drawn function; the mean over B prompts is within ~3 SE.
  prompt_means = errors.mean(axis=1)
  assert abs(prompt_means.mean() - expected) < 3 * prompt_means.std() / np.sqrt(B) + 0.01


def test_normalisation_uses_the_active_dimension():
  batch = icl_batch(jax.random.key(9), "linear_regression", N, batch_size=B, d_active=5)
  errors = normalised_squared_error(
    jnp.zeros_like(batch["ys"]), batch["ys"], "linear_regression", 5
  )
  assert abs(float(errors.mean()) - 1) < 0.1
  assert function_classes.error_scale("sparse_linear_regression", 5) == 3
  assert function_classes.error_scale("decision_tree", 5) == 1
  assert function_classes.error_scale("relu_2nn", 5) == 5
