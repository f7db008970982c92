"""S4D's FFT kernel (Grazzi et al.'s S4): the convolution kernel against a NumPy float64
evaluation, the layer against the complex recurrence it convolves (values and gradients),
options, dropout and parameter counts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.baselines import S4DModel
from mamba_jax.baselines.s4d_kernel import causal_convolution, s4d_kernel
from tests.mamba_jax.helpers import assert_close

D_MODEL, D_STATE = 6, 8


def _model(init="lin", n_groups=None, norm="post_layer", dropout=0.0, n_layers=1, seed=0):
  return S4DModel(
    3,
    2,
    d_model=D_MODEL,
    n_layers=n_layers,
    d_state=D_STATE,
    n_groups=n_groups,
    kernel="fft",
    init=init,
    norm=norm,
    dropout=dropout,
    dt_min=0.01,
    dt_max=0.5,
    rngs=nnx.Rngs(seed),
  )


def _perturbed(layer, seed):
  """The layer's SSM parameters moved off their structured init, so every entry matters."""
  keys = iter(jax.random.split(jax.random.key(seed), 4))
  for name in ("A_log", "A_imag", "ssm_C", "D"):
    param = getattr(layer, name)
    if param is not None:
      param[...] = param[...] + 0.3 * jax.random.normal(next(keys), param.shape)
  return layer


def _numpy_parameters(layer):
  """float64 per-channel dt, A (complex) and C (complex, B folded in), and whether A is
  complex (then only one of each conjugate pair is stored)."""
  dt = np.exp(np.asarray(layer.log_dt[...], np.float64))
  A = -np.exp(np.asarray(layer.A_log[...], np.float64)).astype(np.complex128)
  C = np.asarray(layer.ssm_C[...], np.float64)
  paired = layer.A_imag is not None
  if paired:
    A = A + 1j * np.asarray(layer.A_imag[...], np.float64)
    C = C[..., 0] + 1j * C[..., 1]
  C = np.repeat(C, D_MODEL // C.shape[0], axis=0).astype(np.complex128)
  return dt, A, C, paired


@pytest.mark.parametrize("init", ["lin", "real"])
def test_kernel_matches_a_direct_numpy_evaluation(init):
  """K_l = (2 if pairs) Re sum_n C_n (exp(dt A_n) - 1) / A_n exp(dt A_n)^l, float64 loops."""
  layer = _perturbed(_model(init).layers[0], 1)
  dt, A, C, paired = _numpy_parameters(layer)
  length = 40
  expected = np.zeros((D_MODEL, length))
  for h in range(D_MODEL):
    for n in range(A.shape[1]):
      dtA = dt[h] * A[h, n]
      for step in range(length):
        term = C[h, n] * (np.exp(dtA) - 1) / A[h, n] * np.exp(dtA) ** step
        expected[h, step] += (2 if paired else 1) * term.real
  C_arg = jnp.asarray(C, jnp.complex64) if paired else jnp.asarray(C.real, jnp.float32)
  A_imag = layer.A_imag[...] if paired else None
  kernel = s4d_kernel(layer.log_dt[...], layer.A_log[...], A_imag, C_arg, length)
  assert kernel.dtype == jnp.float32 and kernel.shape == (D_MODEL, length)
  assert_close(kernel, expected)


def _numpy_recurrence(layer, u, lengths):
  """The zero-order-hold complex recurrence x_t = exp(dt A) x_{t-1} + (exp(dt A) - 1) / A u_t,
  y_t = (2 if pairs) Re(C x_t) + D u_t, in float64; 0 at t >= lengths."""
  dt, A, C, paired = _numpy_parameters(layer)
  D = np.asarray(layer.D[...], np.float64)
  u = np.asarray(u, np.float64)
  batch, length, _ = u.shape
  dtA = dt[:, None] * A
  y = np.zeros_like(u)
  for b in range(batch):
    x = np.zeros_like(A)
    for t in range(lengths[b]):
      x = np.exp(dtA) * x + (np.exp(dtA) - 1) / A * u[b, t][:, None]
      y[b, t] = (2 if paired else 1) * np.sum(C * x, axis=-1).real + D * u[b, t]
  return y


@pytest.mark.parametrize("init,n_groups", [("lin", None), ("real", None), ("lin", 2)])
def test_fft_convolution_is_the_complex_recurrence(init, n_groups):
  layer = _perturbed(_model(init, n_groups).layers[0], 2)
  u = jax.random.normal(jax.random.key(3), (3, 33, D_MODEL))
  lengths = np.array([33, 20, 1])
  y = layer.ssm(u, jnp.asarray(lengths))
  assert y.shape == u.shape
  assert_close(y, _numpy_recurrence(layer, u, lengths))


def _scan_reference(log_dt, A_log, A_imag, C, D, u):
  """The slow reference: the complex recurrence step by step (jax.lax.scan), float32."""
  dt = jnp.exp(log_dt)[:, None]
  A = jax.lax.complex(-jnp.exp(A_log), A_imag)
  C = jax.lax.complex(C[..., 0], C[..., 1])
  C = jnp.repeat(C, D_MODEL // C.shape[0], axis=0)
  decay, gain = jnp.exp(dt * A), (jnp.exp(dt * A) - 1) / A

  def step(x, u_t):  # u_t (batch, channels)
    x = decay * x + gain * u_t[..., None]
    return x, 2 * jnp.real(jnp.sum(C * x, axis=-1)) + D * u_t

  x0 = jnp.zeros((u.shape[0],) + A.shape, jnp.complex64)
  return jnp.swapaxes(jax.lax.scan(step, x0, jnp.swapaxes(u, 0, 1))[1], 0, 1)


def test_values_and_gradients_match_the_slow_recurrence():
  """Outputs and the vjp cotangent of the input and of every SSM parameter, float32 tolerances
  (docs/design.md section 2.7); the slow reference itself against the float64 loop."""
  layer = _perturbed(_model("lin", 3).layers[0], 4)
  names = ("log_dt", "A_log", "A_imag", "ssm_C", "D")
  params = tuple(getattr(layer, name)[...] for name in names)
  u = jax.random.normal(jax.random.key(5), (2, 48, D_MODEL))

  graphdef, state = nnx.split(layer)
  pure = nnx.to_pure_dict(state)

  def fast(u, *params):
    return nnx.merge(graphdef, nnx.State(dict(pure, **dict(zip(names, params))))).ssm(u)

  slow = lambda u, *params: _scan_reference(*params, u)  # noqa: E731
  y_fast, vjp_fast = jax.vjp(fast, u, *params)
  y_slow, vjp_slow = jax.vjp(slow, u, *params)
  assert_close(y_slow, _numpy_recurrence(layer, u, [48, 48]))
  assert_close(y_fast, y_slow)
  cotangent = jax.random.normal(jax.random.key(6), y_fast.shape)
  for name, g_fast, g_slow in zip(("u",) + names, vjp_fast(cotangent), vjp_slow(cotangent)):
    assert np.abs(np.asarray(g_slow)).max() > 0, name
    assert_close(g_fast, g_slow)


def test_causal_and_time_invariant():
  """Changing inputs after t leaves outputs up to t unchanged (up to the FFT's float32
  rounding, ~1e-7; a leak of the changed inputs would be of order 1); a delayed input gives the
  delayed output (a convolution)."""
  model = _model("lin", n_layers=2)
  x = jax.random.normal(jax.random.key(7), (2, 20, 3))
  out = model(x)
  changed = model(x.at[:, 12:].set(4.0))
  np.testing.assert_allclose(out[:, :12], changed[:, :12], rtol=0, atol=1e-5)
  assert np.abs(np.asarray(out[:, 12:] - changed[:, 12:])).max() > 1e-2
  layer = _perturbed(_model("lin").layers[0], 8)
  u = jax.random.normal(jax.random.key(9), (1, 24, D_MODEL))
  delayed = jnp.pad(u, ((0, 0), (5, 0), (0, 0)))[:, :24]
  assert_close(layer.ssm(delayed)[:, 5:], layer.ssm(u)[:, :19])


def test_causal_convolution_is_a_direct_sum():
  u = np.asarray(jax.random.normal(jax.random.key(10), (2, 17, 3)), np.float64)
  kernel = np.asarray(jax.random.normal(jax.random.key(11), (3, 17)), np.float64)
  expected = np.stack(
    [sum(kernel[:, t - s] * u[:, s] for s in range(t + 1)) for t in range(17)], axis=1
  )
  assert_close(causal_convolution(jnp.asarray(u), jnp.asarray(kernel)), expected)


def _count(model):
  return sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize(
  "init,norm,n_groups", [("lin", "post_layer", None), ("real", "pre_rms", 2), ("lin", "pre_rms", 3)]
)
def test_parameter_count(init, norm, n_groups):
  """Per layer: GLU projection 2H^2 + 2H, log_dt H, D H, A H N (S4D-Lin: Re and Im of N / 2
  modes; S4D-Real: N), C G N (real and imaginary parts, or N real), norm 2H (LayerNorm) or H
  (RMSNorm, plus one final RMSNorm)."""
  H, N, layers = D_MODEL, D_STATE, 2
  G = H if n_groups is None else n_groups
  norm_size = 2 * H if norm == "post_layer" else H
  layer = 2 * H * H + 2 * H + 2 * H + H * N + G * N + norm_size
  final = H if norm == "pre_rms" else 0
  expected = (3 * H + H) + layers * layer + final + (2 * H + 2)
  model = nnx.eval_shape(
    lambda: S4DModel(
      3,
      2,
      d_model=H,
      n_layers=layers,
      d_state=N,
      n_groups=n_groups,
      kernel="fft",
      init=init,
      norm=norm,
      rngs=nnx.Rngs(0),
    )
  )
  assert _count(model) == expected


def test_paper_initialisation():
  """S4D-Lin: A = -1/2 + i pi n for n < N / 2 in every channel, C ~ CN(0, 1), log_dt in
  [log dt_min, log dt_max]; S4D-Real: A = -(n + 1)."""
  lin, real = _model("lin").layers[0], _model("real").layers[0]
  modes = np.arange(D_STATE // 2)
  np.testing.assert_allclose(-np.exp(lin.A_log[...]), -0.5 * np.ones((D_MODEL, D_STATE // 2)))
  np.testing.assert_allclose(lin.A_imag[...], np.broadcast_to(math.pi * modes, (D_MODEL, 4)))
  np.testing.assert_allclose(-np.exp(real.A_log[...]), -np.broadcast_to(np.arange(1, 9), (6, 8)))
  assert real.A_imag is None and lin.ssm_C.shape == (D_MODEL, D_STATE // 2, 2)
  log_dt = np.asarray(lin.log_dt[...])
  assert np.all((log_dt >= math.log(0.01)) & (log_dt <= math.log(0.5)))


def test_dropout_is_off_without_a_key_and_drops_whole_channels_with_one():
  with_dropout, without = _model(dropout=0.5, n_layers=2), _model(dropout=0.0, n_layers=2)
  x = jax.random.normal(jax.random.key(12), (4, 10, 3))
  np.testing.assert_array_equal(with_dropout(x), without(x))  # dropout draws no parameters
  first = with_dropout(x, dropout_key=jax.random.key(1))
  assert not np.allclose(first, without(x))
  np.testing.assert_array_equal(first, with_dropout(x, dropout_key=jax.random.key(1)))
  assert not np.allclose(first, with_dropout(x, dropout_key=jax.random.key(2)))
  ones = jnp.ones((4, 10, D_MODEL))
  masked = np.asarray(
    with_dropout.layers[0].output_dropout(ones, deterministic=False, rngs=jax.random.key(3))
  )
  assert set(np.unique(masked)) == {0.0, 2.0}
  assert np.all(masked == masked[:, :1])  # one mask per (example, channel), for all positions


def test_invalid_options_are_refused():
  kw = dict(d_model=4, n_layers=1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="real-only"):
    S4DModel(1, 1, kernel="scan", init="lin", **kw)
  with pytest.raises(ValueError, match="even d_state"):
    S4DModel(1, 1, d_state=5, kernel="fft", init="lin", **kw)
  for bad in (dict(kernel="conv"), dict(init="hippo"), dict(norm="post_rms"), dict(dropout=1.0)):
    with pytest.raises(ValueError):
      S4DModel(1, 1, **bad, **kw)
