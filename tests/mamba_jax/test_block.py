"""MambaBlock and ResidualBlock: mamba_ssm's shapes and init, the forward against a float64
re-derivation of mamba_ssm's `Mamba.forward`, and interchangeable scan implementations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.block import MambaBlock, ResidualBlock, scan_options
from mamba_jax_kernels.selective_scan import PallasOptions, XlaOptions
from tests.mamba_jax.helpers import assert_close, tiny_config


def _np(variable):
  return np.asarray(variable[...], np.float64)


def _softplus(x):
  return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def _silu(x):
  return x / (1 + np.exp(-x))


def mamba_forward_float64(block, hidden):
  """mamba_ssm's Mamba.forward (slow path, one example) in numpy float64, step by step; with
  d_conv = 0 the same with the conv removed."""
  c = block.config
  xz = hidden @ _np(block.in_proj.kernel)
  x, z = xz[:, : c.d_inner], xz[:, c.d_inner :]
  length = x.shape[0]
  if c.d_conv == 0:  # no conv: the SSM reads silu(x)
    conv = x
  else:
    weight, bias = _np(block.conv1d.weight), _np(block.conv1d.bias)
    conv = np.stack(
      [
        bias
        + sum(
          weight[:, k] * x[t - c.d_conv + 1 + k]
          for k in range(c.d_conv)
          if t - c.d_conv + 1 + k >= 0
        )
        for t in range(length)
      ]
    )
  u = _silu(conv)
  x_dbl = u @ _np(block.x_proj.kernel)
  r = c.resolved_dt_rank
  dt, B, C = x_dbl[:, :r], x_dbl[:, r : r + c.d_state], x_dbl[:, r + c.d_state :]
  delta = _softplus(dt @ _np(block.dt_proj.kernel) + _np(block.dt_bias))
  A = -np.exp(_np(block.A_log))
  h = np.zeros((c.d_inner, c.d_state))
  ys = []
  for t in range(length):
    h = np.exp(delta[t][:, None] * A) * h + (delta[t] * u[t])[:, None] * B[t][None, :]
    ys.append(h @ C[t] + _np(block.D) * u[t])
  y = np.stack(ys) * _silu(z)
  return y @ _np(block.out_proj.kernel)


def test_parameter_shapes_match_mamba_ssm():
  config = tiny_config(d_model=32, d_state=16, d_conv=4)  # d_inner 64, dt_rank 2
  block = MambaBlock(config, rngs=nnx.Rngs(0))
  shapes = {
    jax.tree_util.keystr(path): leaf.shape
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.as_pure(nnx.state(block, nnx.Param)))
  }
  assert shapes == {  # mamba_ssm's shapes, Linear weights transposed to Flax's (in, out)
    "['A_log']": (64, 16),
    "['D']": (64,),
    "['conv1d']['bias']": (64,),
    "['conv1d']['weight']": (64, 4),
    "['dt_bias']": (64,),
    "['dt_proj']['kernel']": (2, 64),
    "['in_proj']['kernel']": (32, 128),
    "['out_proj']['kernel']": (64, 32),
    "['x_proj']['kernel']": (64, 2 + 2 * 16),
  }


def test_initialisation_statistics():
  config = tiny_config(d_model=256, n_layers=4, d_state=16)  # d_inner 512, dt_rank 16
  block = MambaBlock(config, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(
    block.A_log[...], np.log(np.tile(np.arange(1, 17), (512, 1))), rtol=1e-7
  )
  np.testing.assert_array_equal(block.D[...], 1.0)
  dt = np.asarray(jax.nn.softplus(block.dt_bias[...]), np.float64)
  assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
  assert dt.min() < 1.5e-3 and dt.max() > 0.07  # the whole range is covered
  assert abs(np.mean(np.log(dt)) - math.log(1e-2)) < 0.2  # log-uniform: centred at sqrt(min*max)
  dt_weight = np.abs(_np(block.dt_proj.kernel))
  assert 0.98 * 16**-0.5 < dt_weight.max() <= 16**-0.5
  out_bound = 512**-0.5 / math.sqrt(4)  # rescale_prenorm_residual
  assert 0.98 * out_bound < np.abs(_np(block.out_proj.kernel)).max() <= out_bound


def test_dt_floor_and_scale():
  config = tiny_config(d_model=64, dt_min=1e-6, dt_max=2e-6, dt_init_floor=1e-4, dt_scale=2.0)
  block = MambaBlock(config, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(jax.nn.softplus(block.dt_bias[...]), 1e-4, rtol=1e-3)
  assert np.abs(_np(block.dt_proj.kernel)).max() <= 2.0 * 4**-0.5


def test_ssm_parameters_stay_float32_under_bfloat16_params():
  config = tiny_config(dtype="bfloat16", param_dtype="bfloat16")
  block = MambaBlock(config, rngs=nnx.Rngs(0))
  assert block.in_proj.kernel[...].dtype == jnp.bfloat16
  for name in ("A_log", "D", "dt_bias"):
    assert getattr(block, name)[...].dtype == jnp.float32, name
  out = block(jnp.ones((1, 5, 8)))
  assert out.dtype == jnp.bfloat16 and np.isfinite(np.asarray(out, np.float32)).all()


def test_forward_matches_float64_mamba_forward():
  config = tiny_config(dt_min=0.05, dt_max=0.5)  # larger steps, so the state matters
  block = MambaBlock(config, rngs=nnx.Rngs(1))
  hidden = jax.random.normal(jax.random.key(2), (2, 13, 8))
  out = block(hidden)
  for b in range(2):
    assert_close(out[b], mamba_forward_float64(block, np.asarray(hidden[b], np.float64)))


def test_residual_block_keeps_float32_residual():
  config = tiny_config(dtype="bfloat16")
  layer = ResidualBlock(config, rngs=nnx.Rngs(0))
  residual = jax.random.normal(jax.random.key(0), (2, 6, 8))
  out = layer(residual)
  assert out.dtype == jnp.float32
  expected = residual + layer.mixer(layer.norm(residual)).astype(jnp.float32)
  np.testing.assert_array_equal(out, expected)
  low = ResidualBlock(tiny_config(dtype="bfloat16", residual_in_fp32=False), rngs=nnx.Rngs(0))
  assert low(residual).dtype == jnp.bfloat16


# Pallas chunks of 8: the TPU kernel's chunks are multiples of 8 (sublane tiling).
SCAN_OPTIONS = {
  "reference": {},
  "xla": dict(scan_chunk_size=4),
  "pallas": dict(scan_interpret=True, scan_chunk_size=8),
}


@pytest.mark.parametrize("implementation", ["xla", "pallas"])
def test_scan_implementations_interchangeable(implementation):
  """Same block with another scan implementation: outputs and every gradient agree."""

  def block_for(name, **extra):
    config = tiny_config(
      dt_min=0.05, dt_max=0.5, scan_implementation=name, **SCAN_OPTIONS[name], **extra
    )
    return MambaBlock(config, rngs=nnx.Rngs(3))

  hidden = jax.random.normal(jax.random.key(4), (2, 10, 8))
  lengths = jnp.array([10, 7])
  target = jax.random.normal(jax.random.key(5), (2, 10, 8))

  def loss(block, hidden):
    return jnp.sum((block(hidden, lengths) - target) ** 2)

  # compiled: the eager block takes several times longer
  gradients = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))
  told_lengths = nnx.jit(lambda block, hidden: block(hidden, lengths, jnp.array([12.0, 5.0])))
  for extra in ({}, dict(discretization="length_adaptive", length_ref=8.0)):
    results = []
    for name in ("reference", implementation):
      block = block_for(name, **extra)
      if block.discretization.adaptive:
        block.discretization.alpha[...] = jnp.linspace(-1.0, 1.0, 16)
      value, (param_grads, input_grads) = gradients(block, hidden)
      results.append(
        (
          told_lengths(block, hidden),
          value,
          nnx.as_pure(param_grads),
          input_grads,
        )
      )
    (out_ref, value_ref, params_ref, input_ref), (out, value, params, inputs) = results
    assert_close(out, out_ref)
    assert_close(value, value_ref)
    assert_close(inputs, input_ref)
    jax.tree.map(assert_close, params, params_ref)
    assert np.abs(np.asarray(params_ref["A_log"])).max() > 0  # gradients reach the SSM


@pytest.mark.parametrize(
  "fields,expected",
  [
    (dict(scan_implementation="auto"), None),
    (dict(scan_implementation="reference"), None),
    (dict(scan_implementation="xla", scan_chunk_size=4), XlaOptions(chunk_size=4)),
    (
      dict(scan_implementation="pallas", scan_interpret=True, scan_chunk_size=8),
      PallasOptions(chunk_size=8, interpret=True),
    ),
  ],
)
def test_config_scan_fields_become_the_op_options(fields, expected):
  assert scan_options(tiny_config(**fields)) == expected


@pytest.mark.parametrize(
  "fields,message",
  [
    (dict(scan_implementation="auto", scan_chunk_size=4), "need a named implementation"),
    (dict(scan_implementation="reference", scan_chunk_size=4), "'reference' takes no options"),
    (dict(scan_implementation="xla", scan_interpret=True), "has no option 'interpret'"),
  ],
)
def test_scan_fields_the_implementation_lacks_fail_when_the_block_is_built(fields, message):
  with pytest.raises(ValueError, match=f"MambaConfig scan_implementation=.*{message}"):
    MambaBlock(tiny_config(**fields), rngs=nnx.Rngs(0))
