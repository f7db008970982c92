"""MambaModel and MambaLM: the 130M parameter count, shapes, init, padding, training, bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mamba_jax.config import MambaConfig
from mamba_jax.models import MambaLM, MambaModel, count_parameters
from mamba_jax.optim import weight_decay_mask
from tests.mamba_jax.helpers import assert_close, tiny_config


def test_130m_configuration_has_mamba_ssm_parameter_count():
  config = MambaConfig(d_model=768, n_layers=24, vocab_size=50280)
  model = nnx.eval_shape(lambda: MambaLM(config, rngs=nnx.Rngs(0)))
  assert count_parameters(model) == 129_135_360
  assert model.embedding.embedding.shape == (50280, 768)
  untied = nnx.eval_shape(
    lambda: MambaLM(
      MambaConfig(d_model=768, n_layers=24, vocab_size=50280, tie_embeddings=False),
      rngs=nnx.Rngs(0),
    )
  )
  assert count_parameters(untied) == 129_135_360 + 50280 * 768


def test_lm_shapes_padded_vocab_and_embedding_init():
  config = tiny_config(d_model=64, n_layers=1, vocab_size=1001)
  model = MambaLM(config, rngs=nnx.Rngs(0))
  embedding = np.asarray(model.embedding.embedding[...])
  assert embedding.shape == (1008, 64)
  assert abs(embedding.std() - 0.02) < 5e-4 and abs(embedding.mean()) < 5e-4
  logits = model(jnp.array([[1, 2, 3], [4, 5, 1000]]))
  assert logits.shape == (2, 3, 1008) and logits.dtype == jnp.float32
  with pytest.raises(ValueError, match="vocab_size"):
    MambaLM(tiny_config(), rngs=nnx.Rngs(0))


def test_tied_head_is_the_embedding():
  model = MambaLM(tiny_config(vocab_size=16), rngs=nnx.Rngs(0))
  tokens = jnp.array([[3, 1, 4, 1, 5]])
  hidden = model.backbone(model.embed(tokens))
  assert_close(model(tokens), hidden @ model.embedding.embedding[...].T, rtol=1e-6, atol=1e-6)


def test_continuous_model_shapes_and_residual_streams():
  model = MambaModel(tiny_config(n_layers=3), 5, 2, rngs=nnx.Rngs(0))
  inputs = jnp.ones((4, 9, 5))
  assert model(inputs).shape == (4, 9, 2)
  hidden, residuals = model.backbone(model.embed(inputs), return_residuals=True)
  assert len(residuals) == 4 and all(r.shape == (4, 9, 8) for r in residuals)
  np.testing.assert_array_equal(model.read_out(hidden), model(inputs))
  outputs, streams = model(inputs, return_residuals=True)
  np.testing.assert_array_equal(outputs, model(inputs))
  for stream, residual in zip(streams, residuals):
    np.testing.assert_array_equal(stream, residual)
  np.testing.assert_array_equal(model.read_out_residual(streams[-1]), outputs)


@pytest.mark.parametrize("discretization", ["fixed", "length_adaptive"])
@pytest.mark.parametrize("kind", ["continuous", "tokens"])
def test_padding_changes_nothing_at_valid_positions(kind, discretization):
  config = tiny_config(
    discretization=discretization, length_ref=8.0, vocab_size=20, dt_min=0.05, dt_max=0.5
  )
  if kind == "continuous":
    model = MambaModel(config, 3, 2, rngs=nnx.Rngs(0))
    inputs = jax.random.normal(jax.random.key(0), (3, 12, 3))
    junk = 50.0 * jax.random.normal(jax.random.key(1), inputs.shape)
  else:
    model = MambaLM(config, rngs=nnx.Rngs(0))
    inputs = jax.random.randint(jax.random.key(0), (3, 12), 0, 20)
    junk = jax.random.randint(jax.random.key(1), inputs.shape, 0, 20)
  if discretization == "length_adaptive":
    for layer in model.backbone.layers:
      layer.mixer.discretization.alpha[...] = jnp.full((16,), 0.8)
  lengths = jnp.array([12, 7, 1])
  positions = jnp.arange(12)[None, :]
  valid = (positions < lengths[:, None]).reshape(3, 12, *([1] * (inputs.ndim - 2)))
  padded = jnp.where(valid, inputs, junk)
  out = model(padded, lengths)
  for b, length in enumerate([12, 7, 1]):
    alone = model(inputs[b : b + 1, :length])[0]
    assert_close(out[b, :length], alone)


def _running_mean_task(key, batch=16, length=12):
  x = jax.random.normal(key, (batch, length, 2))
  y = jnp.cumsum(x, axis=1) / jnp.arange(1, length + 1)[None, :, None]
  return x, y


def _train(model, steps, learning_rate, key):
  optimizer = nnx.Optimizer(
    model, optax.adamw(learning_rate, weight_decay=0.01, mask=weight_decay_mask), wrt=nnx.Param
  )

  @nnx.jit
  def train_step(model, optimizer, x, y):
    def loss_fn(model):
      return jnp.mean((model(x).astype(jnp.float32) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = []
  for i in range(steps):
    x, y = _running_mean_task(jax.random.fold_in(key, i))
    losses.append(float(train_step(model, optimizer, x, y)))
  return np.array(losses)


def test_a_few_optax_steps_reduce_the_loss():
  model = MambaModel(tiny_config(), 2, 2, rngs=nnx.Rngs(0))
  losses = _train(model, steps=40, learning_rate=1e-2, key=jax.random.key(7))
  assert losses[-5:].mean() < 0.5 * losses[:5].mean(), losses


def test_bfloat16_compute_with_float32_params_trains_without_nan():
  config = tiny_config(d_model=8, dtype="bfloat16", param_dtype="float32")
  model = MambaModel(config, 2, 2, rngs=nnx.Rngs(0))
  assert model(jnp.ones((1, 4, 2))).dtype == jnp.bfloat16
  losses = _train(model, steps=300, learning_rate=3e-3, key=jax.random.key(8))
  assert np.isfinite(losses).all()
  assert losses[-20:].mean() < 0.7 * losses[:20].mean()
  params = jax.tree.leaves(nnx.as_pure(nnx.state(model, nnx.Param)))
  assert all(p.dtype == jnp.float32 and np.isfinite(np.asarray(p)).all() for p in params)


def test_remat_gives_the_same_loss_and_gradients():
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 7, 3))
  grads = []
  for remat in (False, True):
    model = MambaModel(tiny_config(remat=remat), 3, 2, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    loss = lambda p, graphdef=graphdef: jnp.sum(nnx.merge(graphdef, p)(x) ** 2)
    grads.append(jax.jit(jax.value_and_grad(loss))(params))
  assert_close(grads[0][0], grads[1][0])
  jax.tree_util.tree_map(assert_close, grads[0][1], grads[1][1])
